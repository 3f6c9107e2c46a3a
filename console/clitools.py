"""What every command shares: terminal-safe output and one run of a cron job at a time.

- `echo` and `CommandError`: everything the CLI prints passes through
  `terminal_safe`, so an event id, a Stripe error or a reason typed by
  someone else can never move the cursor, recolour or retitle the operator's
  terminal (ANSI/OSC escape sequences, carriage returns, other controls).
- `cron_job`: a command that cron may start twice at once takes a
  PostgreSQL advisory lock named after its job; the second copy says it
  skipped and exits 0, instead of racing the first one into a traceback.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import click
from sqlalchemy import text

F = TypeVar("F", bound=Callable[..., Any])

# C0 controls but newline and tab, DEL and the C1 controls (0x9b is a one-byte CSI).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
LOCK_NAMESPACE = 0x636F6E73  # "cons": keeps our advisory locks apart from other users'


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


def _lock_key(name: str) -> int:
    value = zlib.crc32(name.encode())
    return value - 2**32 if value >= 2**31 else value


@contextmanager
def advisory_lock(name: str) -> Iterator[bool]:
    """Hold a session-level advisory lock named `name` on a connection of its own.

    Yields whether this process got it (without waiting). The lock ends with
    the connection, so a killed process never leaves it behind.
    """
    from console.db import get_db

    engine = get_db().engine
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        got = bool(
            conn.scalar(
                text("SELECT pg_try_advisory_lock(:ns, :key)"),
                {"ns": LOCK_NAMESPACE, "key": _lock_key(name)},
            )
        )
        try:
            yield got
        finally:
            if got:
                conn.execute(
                    text("SELECT pg_advisory_unlock(:ns, :key)"),
                    {"ns": LOCK_NAMESPACE, "key": _lock_key(name)},
                )


def cron_job(job: str) -> Callable[[F], F]:
    """Run the command only if no other copy of `job` is running; else say it skipped.

    A `--dry-run` changes nothing and runs without the lock.
    """

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("dry_run"):
                return fn(*args, **kwargs)
            with advisory_lock(f"job:{job}") as got:
                if not got:
                    echo(
                        f"skipped: another copy of {job} is running; "
                        "nothing was done (this is normal when cron overlaps)"
                    )
                    return None
                return fn(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator
