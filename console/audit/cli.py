"""`flask --app wsgi audit export|verify|checkpoint|purge`."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy.orm import Session

from console.clitools import CommandError, echo, run_job_command

audit_cli = AppGroup("audit", help="Export, verify and purge the audit log.")
MIN_RETENTION_DAYS = 365


@audit_cli.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--since", help="UTC date or time, inclusive (e.g. 2026-11-01)")
@click.option("--until", help="UTC date or time, exclusive")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
def export_cmd(fmt: str, since: str | None, until: str | None, out_dir: Path) -> None:
    """Write a signed bundle of the selection to OUT (data, manifest, signature, key)."""
    from console import db
    from console.audit.export import ExportError, demo_key_note, load_signing_key, write_bundle
    from console.audit.service import record
    from console.audit.views import filtered
    from console.clitools import cli_actor
    from console.params import BadParameter

    args = {k: v for k, v in (("since", since), ("until", until)) if v}
    try:
        stmt, used, errors = filtered(args)
    except BadParameter as exc:
        raise CommandError(str(exc.description)) from exc
    if errors:
        raise CommandError(" ".join(errors))
    try:
        key = load_signing_key(current_app.config["SETTINGS"], current_app.instance_path)
    except ExportError as exc:
        raise CommandError(str(exc)) from exc
    note = demo_key_note(current_app.config["SETTINGS"], current_app.instance_path)
    if note:
        echo(note, err=True)
    s = db.session()
    actor = cli_actor()
    bundle = write_bundle(s, stmt, out_dir=out_dir, fmt=fmt, filters=used, exporter=actor, key=key)
    m = bundle.manifest
    record(
        s,
        action="audit:log:export",
        outcome="success",
        actor=actor,
        target_type="audit_log",
        target_id=f"{m['first_seq']}..{m['last_seq']}",
        params={"format": fmt, **used},
        details={"count": m["count"], "data_sha256": m["data_sha256"]},
    )
    s.commit()
    echo(
        f"exported {m['count']} entries (seq {m['first_seq']}..{m['last_seq']}) to {out_dir}; "
        f"verify with: python3 console/audit/verify.py {out_dir} "
        f"--fingerprint {m['public_key_sha256']} "
        f"--checkpoints {current_app.config['SETTINGS'].audit_checkpoint_dir}"
    )


@audit_cli.command("verify")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Ed25519 public key (PEM) you keep apart from the exports",
)
@click.option("--fingerprint", help="SHA-256 of the signing key you pinned")
@click.option(
    "--checkpoints",
    "checkpoints",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="signed checkpoints (directory, file or application log); repeatable",
)
def verify_cmd(
    bundle: Path, public_key: Path | None, fingerprint: str | None, checkpoints: tuple[Path, ...]
) -> None:
    """Verify a bundle offline (exit 0 valid, 1 with the first bad sequence number).

    The key is one you hold: --public-key FILE (not the bundle's own copy) or
    --fingerprint of the key (then the bundle's copy is used if it matches).
    """
    from console.audit.verify import main

    argv = [str(bundle)]
    if public_key is not None:
        argv += ["--public-key", str(public_key)]
    if fingerprint:
        argv += ["--fingerprint", fingerprint]
    for source in checkpoints:
        argv += ["--checkpoints", str(source)]
    raise SystemExit(main(argv))


@audit_cli.command("checkpoint")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="where to write it (default: AUDIT_CHECKPOINT_DIR)",
)
def checkpoint_cmd(directory: Path | None) -> None:
    """Sign a checkpoint of the newest entry and store it outside the database (hourly).

    Refuses (exit 1, nothing written) when the newest stored checkpoint no
    longer matches the database: history was truncated or rewritten.
    """
    from console import db
    from console.audit.checkpoints import CheckpointError, write_checkpoint
    from console.audit.export import ExportError

    if directory is None:
        # The hourly job itself: its lock and run record (see /ops/jobs).
        report = run_job_command("audit-checkpoint")
        if report is not None and report.errors:
            raise CommandError(report.last_error or "the checkpoint was refused")
        return
    try:
        checkpoint = write_checkpoint(db.session(), directory=directory)
    except (CheckpointError, ExportError) as exc:
        raise CommandError(str(exc)) from exc
    echo(f"checkpoint seq={checkpoint.seq} hash={checkpoint.hash} written to {checkpoint.path}")


@audit_cli.command("purge")
@click.option("--before", help="UTC date; entries older are removed (default: retention)")
@click.option("--yes", is_flag=True, help="Do it (without it, only say what would go)")
def purge_cmd(before: str | None, yes: bool) -> None:
    """Remove entries past retention, keeping a signed checkpoint of what went.

    Runs as the owner (DATABASE_MIGRATION_URL): the application role may not
    delete audit rows at all.
    """
    from console import db
    from console.db import utcnow
    from console.params import BadParameter, parse_time

    settings = current_app.config["SETTINGS"]
    now = utcnow()

    try:
        cutoff = (
            parse_time(before) if before else now - timedelta(days=settings.audit_retention_days)
        )
    except BadParameter as exc:
        raise CommandError(str(exc.description)) from exc
    if cutoff is None:
        raise CommandError(f"--before {before!r} is not a date")
    if cutoff > now - timedelta(days=MIN_RETENTION_DAYS):
        raise CommandError(
            f"refusing to purge entries younger than {MIN_RETENTION_DAYS} days "
            f"(cutoff {cutoff:%Y-%m-%d} is too recent)"
        )
    # Only the owner may delete audit rows (and only past 365 days, by the trigger).
    owner = owner_session()
    s = owner if owner is not None else db.session()
    try:
        _purge(s, settings, cutoff, now, yes)
    finally:
        if owner is not None:
            owner.close()


def _purge(s: Session, settings: Any, cutoff: datetime, now: datetime, yes: bool) -> None:
    from sqlalchemy import delete, func, select, text

    from console.audit.chain import canonical_json
    from console.audit.export import load_signing_key, sign_statement
    from console.audit.models import AuditCheckpoint, AuditEntry
    from console.audit.service import record
    from console.clitools import cli_actor

    last = s.execute(
        select(AuditEntry.seq, AuditEntry.hash)
        .where(AuditEntry.ts < cutoff)
        .order_by(AuditEntry.seq.desc())
        .limit(1)
    ).first()
    if last is None:
        echo(f"nothing older than {cutoff:%Y-%m-%d}")
        return
    through_seq, through_hash = last
    count = s.scalar(select(func.count()).where(AuditEntry.seq <= through_seq)) or 0
    if not yes:
        echo(f"would purge {count} entries through seq {through_seq}; add --yes to do it")
        return
    statement = canonical_json(
        {
            "purged_through_seq": through_seq,
            "purged_through_hash": through_hash,
            "purged_count": count,
            "cutoff": cutoff.isoformat(),
            "at": now.isoformat(),
        }
    )
    key = load_signing_key(settings, current_app.instance_path)
    s.execute(text("SET LOCAL console.audit_purge = 'on'"))
    s.execute(delete(AuditEntry).where(AuditEntry.seq <= through_seq))
    s.add(
        AuditCheckpoint(
            created_at=now,
            purged_through_seq=through_seq,
            purged_through_hash=through_hash,
            purged_count=count,
            statement=statement,
            signature=sign_statement(key, statement),
        )
    )
    record(
        s,
        action="audit:log:purge",
        outcome="success",
        actor=cli_actor(),
        target_type="audit_log",
        target_id=f"..{through_seq}",
        details={"purged_count": count, "cutoff": cutoff.isoformat()},
    )
    s.commit()
    echo(f"purged {count} entries through seq {through_seq}; checkpoint signed")


def owner_session() -> Session | None:
    """A session as the owner (DATABASE_MIGRATION_URL), or None when there is one role."""
    from sqlalchemy import create_engine, pool

    settings = current_app.config["SETTINGS"]
    if not settings.database_migration_url:
        return None
    engine = create_engine(settings.database_migration_url, poolclass=pool.NullPool)
    return Session(engine, expire_on_commit=False)
