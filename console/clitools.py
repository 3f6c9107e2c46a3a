"""What every command shares: terminal-safe output, who ran it, and running a job.

- `echo` and `CommandError`: everything the CLI prints passes through
  `terminal_safe`, so an event id, a Stripe error or a reason typed by
  someone else can never move the cursor, recolour or retitle the operator's
  terminal (ANSI/OSC escape sequences, carriage returns, other controls).
- `cli_actor`: the operating-system user, as the audit log's actor.
- `run_job_command`: every scheduled job's command (`payouts auto-release`,
  `invoices retry-stuck`, ...) runs the body the job engine runs, under the
  same lock and run record (`ops.jobs.execute`). A second copy started
  meanwhile says it skipped and exits 0 (cron and the engine may overlap).
"""

from __future__ import annotations

import getpass
import re
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from console.ops.jobs import JobReport

# C0 controls but newline and tab, DEL and the C1 controls (0x9b is a one-byte CSI).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(message: Any) -> str:
    """The message with every control character shown as a visible escape (`\\x1b`)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", str(message))


def echo(message: Any = "", *, err: bool = False, file: IO[Any] | None = None) -> None:
    """`click.echo` for text that may hold someone else's data."""
    click.echo(terminal_safe(message), err=err, file=file)


class CommandError(click.ClickException):
    """A one-line failure (exit 1, no traceback), printed terminal-safe."""

    def format_message(self) -> str:
        return terminal_safe(self.message)


def cli_actor() -> dict[str, object]:
    """Who ran a command: the operating-system user, marked as the CLI."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return {"sub": f"cli:{user}", "email": None, "roles": ["cli"]}


def run_job_command(name: str, *, dry_run: bool = False) -> JobReport | None:
    """Run job `name` once from the CLI, print its lines and summary; None if it skipped."""
    from console import db
    from console.ops.jobs import JobSkipped, execute

    s = db.session()
    try:
        report = execute(s, name, trigger=str(cli_actor()["sub"]), dry_run=dry_run)
    except JobSkipped as exc:
        echo(f"{exc}; nothing was done (normal when cron and the job workers overlap)")
        return None
    for line in report.lines:
        echo(line)
    echo(report.summary(dry_run=dry_run))
    if report.errors and report.last_error:
        echo(f"last error: {report.last_error}", err=True)
    return report
