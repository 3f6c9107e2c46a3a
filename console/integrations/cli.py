"""`ingest load FILE --kind KIND` (backfill) and `integrations deliver` (outbound events)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click
from flask.cli import AppGroup

from console.clitools import CommandError, echo

ingest_cli = AppGroup("ingest", help="Backfill the shop's records (the ingest API's upserts).")
integrations_cli = AppGroup("integrations", help="Outbound events to the shop.")


def _parse_csv_value(value: str) -> Any:
    """CSV cells: empty is absent; JSON for lists/objects/numbers/booleans; text otherwise."""
    if value == "":
        return None
    if value[0] in "[{" or value in ("true", "false", "null"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    try:
        return int(value)
    except ValueError:
        return value


def read_records(handle: TextIO, fmt: str) -> Iterator[tuple[int, Any]]:
    """Yield (line or row number, raw record), streaming: never the whole file in memory."""
    if fmt == "jsonl":
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as exc:
                yield number, _Unreadable(f"not JSON: {exc}")
        return
    reader = csv.DictReader(handle)
    for number, row in enumerate(reader, start=2):
        record: dict[str, Any] = {}
        for name, value in row.items():
            if name is None:
                continue
            parsed = _parse_csv_value(value or "")
            if parsed is None:
                continue
            if "." in name:  # seller.email -> {"seller": {"email": ...}}
                head, tail = name.split(".", 1)
                record.setdefault(head, {})[tail] = parsed
            else:
                record[name] = parsed
        yield number, record


class _Unreadable:
    def __init__(self, why: str) -> None:
        self.why = why


@ingest_cli.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", required=True, help="orders, invoices, payouts, ... (the API paths)")
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "csv"]), default="auto")
@click.option("--batch-size", type=click.IntRange(1, 500), default=500)
@click.option("--key-prefix", default=None, help="Attribute the writes to this API key.")
@click.option(
    "--progress-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the resume point is kept (default FILE.progress.json).",
)
@click.option("--restart", is_flag=True, help="Ignore the progress file; start at the top.")
def load_cmd(  # noqa: PLR0917  (click passes each option)
    file: Path,
    kind: str,
    fmt: str,
    batch_size: int,
    key_prefix: str | None,
    progress_file: Path | None,
    restart: bool,
) -> None:
    """Backfill FILE (JSON Lines or CSV) through the same upserts as the API.

    Streamed and committed batch by batch; the progress file records the
    last committed line, so running the command again resumes after it (and
    upserts are idempotent, so a repeated batch changes nothing).
    """

    from console import db
    from console.integrations.ingest import KINDS, counts, upsert_records
    from console.integrations.keys import api_actor  # noqa: F401  (documents the actor)

    if kind not in KINDS:
        raise click.UsageError(f"--kind must be one of {', '.join(KINDS)}")
    spec = KINDS[kind]
    if fmt == "auto":
        fmt = "csv" if file.suffix.lower() == ".csv" else "jsonl"
    progress_path = progress_file or file.with_name(file.name + ".progress.json")
    start_after = 0
    if progress_path.exists() and not restart:
        try:
            start_after = int(json.loads(progress_path.read_text())["last_line"])
        except (ValueError, KeyError, TypeError):
            raise CommandError(f"{progress_path} is unreadable; use --restart") from None
        echo(f"resuming after line {start_after} ({progress_path})")

    s = db.session()
    key = _loader_key(s, key_prefix)
    totals = dict.fromkeys(("created", "updated", "unchanged", "stale", "invalid"), 0)
    batch: list[tuple[int, Any]] = []

    def flush() -> None:
        if not batch:
            return
        good = [(n, r) for n, r in batch if not isinstance(r, _Unreadable)]
        for n, r in batch:
            if isinstance(r, _Unreadable):
                totals["invalid"] += 1
                echo(f"line {n}: invalid: {r.why}", err=True)
        if good:
            results = upsert_records(s, spec, [r for _, r in good], key)
            for (n, _), result in zip(good, results, strict=True):
                if result.result in ("invalid", "stale"):
                    why = "; ".join(f"{e.field}: {e.message}" for e in result.errors) or (
                        "; ".join(result.warnings)
                    )
                    echo(f"line {n}: {result.id or '?'}: {result.result}: {why}", err=True)
            for name, value in counts(results).items():
                totals[name] += value
        progress_path.write_text(json.dumps({"file": str(file), "last_line": batch[-1][0]}))
        batch.clear()

    with file.open(newline="", encoding="utf-8") as handle:
        for number, raw in read_records(handle, fmt):
            if number <= start_after:
                continue
            batch.append((number, raw))
            if len(batch) >= batch_size:
                flush()
        flush()
    echo(" ".join(f"{k}={v}" for k, v in totals.items()))
    if totals["invalid"] or totals["stale"]:
        echo("some records were refused (listed above); fix them and run again", err=True)


def _loader_key(s: Any, key_prefix: str | None) -> Any:
    """The key the backfill is attributed to: a named one, or a CLI pseudo-key (not stored)."""
    from sqlalchemy import select

    from console.clitools import cli_actor
    from console.integrations.keys import SCOPES
    from console.integrations.models import ApiKey

    if key_prefix:
        key = s.scalar(select(ApiKey).where(ApiKey.prefix == key_prefix))
        if key is None:
            raise CommandError(f"no API key csk_{key_prefix}_...")
        s.rollback()
        return key
    actor = cli_actor()
    return ApiKey(
        name="backfill",
        shop=str(actor["sub"]),
        prefix=f"cli-{actor['sub']}"[:32],
        secret_hash="",
        scopes=list(SCOPES),
        created_by_sub=str(actor["sub"]),
    )


@integrations_cli.command("deliver")
@click.option("--dry-run", is_flag=True)
def deliver_cmd(dry_run: bool) -> None:
    """Send due events to the shop's endpoints (the job workers do it every minute too)."""
    from console.clitools import run_job_command

    run_job_command("integrations-deliver", dry_run=dry_run)


@integrations_cli.command("connect")
@click.option(
    "--shop", "shop_name", required=True, help="The shop's name (shown on /integrations)."
)
@click.option("--url", required=True, help="The shop's webhook receiver URL.")
@click.option("--key-name", default="storefront", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the key and secret as JSON.")
def connect_cmd(shop_name: str, url: str, key_name: str, as_json: bool) -> None:
    """Connect a shop: one API key (all record kinds) and one endpoint, printed once.

    The same as an admin's 'Create API key' and 'Add endpoint' on /integrations,
    audited as the person at the command line.
    """
    from flask import current_app

    from console import db
    from console.audit.service import record
    from console.clitools import cli_actor
    from console.integrations import delivery as dl
    from console.integrations.keys import SCOPES, issue_key
    from console.integrations.models import WebhookEndpoint

    why = dl.check_url(url, allow_private=bool(current_app.config["WEBHOOK_ALLOW_PRIVATE_URLS"]))
    if why:
        raise CommandError(f"that URL cannot receive events: {why}")
    s = db.session()
    actor = cli_actor()
    issued = issue_key(
        s, name=key_name, shop=shop_name, scopes=list(SCOPES), actor_sub=str(actor["sub"])
    )
    secret = dl.new_secret()
    endpoint = WebhookEndpoint(
        url=url,
        description=f"{shop_name} (connect)",
        secret_enc=dl.seal(secret),
        created_by_sub=str(actor["sub"]),
    )
    s.add(endpoint)
    s.flush()
    for action, target_type, target_id, details in (
        (
            "integrations:key:create",
            "integrations",
            "shop",
            {"key_id": issued.key.id, "prefix": issued.key.prefix},
        ),
        (
            "integrations:endpoint:create",
            "integrations",
            "shop",
            {"endpoint_id": endpoint.id, "url": url},
        ),
    ):
        record(
            s,
            action=action,
            outcome="success",
            actor=actor,
            target_type=target_type,
            target_id=target_id,
            reason=f"connected {shop_name} from the command line",
            details=details,
        )
    s.commit()
    if as_json:
        echo(
            json.dumps(
                {"api_key": issued.token, "webhook_secret": secret, "endpoint_id": endpoint.id}
            )
        )
        return
    echo(f"API key (shown once): {issued.token}")
    echo(f"Endpoint #{endpoint.id} {url}, signing secret (shown once): {secret}")
