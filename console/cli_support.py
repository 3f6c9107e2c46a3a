"""What the command-line commands share: who ran them, and running a declared job.

Every scheduled job's command (`payouts auto-release`, `invoices retry-stuck`,
...) goes through `run_job_command`: the job body the engine runs, under the
same lock and run record. A second copy started meanwhile says it skipped
and exits 0 (no traceback): cron and the engine may overlap.
"""

from __future__ import annotations

import getpass

import click


def cli_actor() -> dict[str, object]:
    """Who ran a command: the operating-system user, marked as the CLI."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return {"sub": f"cli:{user}", "email": None, "roles": ["cli"]}


def run_job_command(name: str, *, dry_run: bool = False) -> None:
    """Run job `name` once from the CLI and print its lines and summary."""
    from console import db
    from console.ops.jobs import JobSkipped, execute

    s = db.session()
    try:
        report = execute(s, name, trigger=str(cli_actor()["sub"]), dry_run=dry_run)
    except JobSkipped as exc:
        click.echo(str(exc))
        return
    for line in report.lines:
        click.echo(line)
    click.echo(report.summary(dry_run=dry_run))
    if report.errors and report.last_error:
        click.echo(f"last error: {report.last_error}", err=True)
