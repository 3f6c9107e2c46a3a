"""The two database roles: the migration owner and the application role.

The owner (`DATABASE_MIGRATION_URL`) owns every table, runs migrations and
the retention purge. The application (`DATABASE_URL`) connects as a role
that may read and write the queues' tables but, on the audit tables, only
read and append: no UPDATE, DELETE or TRUNCATE, no ALTER (it owns nothing),
no direct write to the chain head (an entry is accepted only at the head,
and the head moves only by that append; see migration 0005).

`create_app_role(owner_url, name)` creates the role if needed and applies the
grants; `grant_app_role` re-applies them (idempotent), which `db upgrade`
does after every migration so new tables are covered.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

AUDIT_TABLES = ("audit_entries", "audit_chain_head", "audit_checkpoints")
READ_ONLY_TABLES = ("alembic_version",)
APPEND_FUNCTIONS = ("audit_chain_head_lock()",)


class RoleError(RuntimeError):
    """The role cannot be set up safely; the message says why."""


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg://`) as libpq understands it."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def url_for_role(url: str, name: str, password: str | None = None) -> str:
    """The same server and database as `url`, as the role `name`."""
    parsed = make_url(url).set(username=name, password=password)
    return parsed.render_as_string(hide_password=False)


def role_of(url: str) -> str | None:
    return make_url(url).username


def grant_statements(role: str, owner: str, database: str) -> list[sql.Composed]:
    r = sql.Identifier(role)
    audit = sql.SQL(", ").join(sql.Identifier(t) for t in AUDIT_TABLES)
    statements: list[sql.Composed] = [
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), r),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r),
        # The queues' tables: read and write rows; no TRUNCATE, no DDL.
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(
            r
        ),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(r),
        # Audit tables: read, and append entries through the chain.
        sql.SQL("REVOKE ALL ON {} FROM {}").format(audit, r),
        sql.SQL("GRANT SELECT ON {} TO {}").format(audit, r),
        sql.SQL("GRANT INSERT ON audit_entries TO {}").format(r),
        sql.SQL("REVOKE ALL ON alembic_version FROM {}").format(r),
        sql.SQL("GRANT SELECT ON alembic_version TO {}").format(r),
    ]
    statements += [
        sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(sql.SQL(fn), r)
        for fn in APPEND_FUNCTIONS
    ]
    # Tables a later migration creates: rows only (the audit grants are re-applied above
    # by every `db upgrade`).
    statements += [
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
        ).format(sql.Identifier(owner), r),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
            "GRANT USAGE, SELECT ON SEQUENCES TO {}"
        ).format(sql.Identifier(owner), r),
    ]
    return statements


def _check_safe(conn: psycopg.Connection[tuple[object, ...]], role: str) -> None:
    row = conn.execute(
        "SELECT rolsuper, rolbypassrls, pg_has_role(%s, current_user, 'MEMBER'), "
        "current_user FROM pg_roles WHERE rolname = %s",
        (role, role),
    ).fetchone()
    if row is None:
        raise RoleError(f"role {role} does not exist")
    superuser, bypass_rls, member_of_owner, owner = row
    if role == owner:
        raise RoleError(
            f"{role} is the role running the migrations: the application needs a role of its own"
        )
    if superuser or bypass_rls:
        raise RoleError(f"role {role} is a superuser: it would bypass every grant")
    if member_of_owner:
        raise RoleError(f"role {role} is a member of {owner}: it would inherit the owner's rights")


def grant_app_role(owner_url: str, role: str) -> list[str]:
    """(Re-)apply the application role's grants as the owner; return the statements run."""
    with psycopg.connect(libpq_url(owner_url), autocommit=True) as conn:
        _check_safe(conn, role)
        database, owner = conn.execute("SELECT current_database(), current_user").fetchone() or (
            "",
            "",
        )
        done = []
        with conn.transaction():
            for statement in grant_statements(role, str(owner), str(database)):
                conn.execute(statement)
                done.append(statement.as_string(conn))
        return done


def create_app_role(owner_url: str, role: str, password: str | None = None) -> list[str]:
    """Create the application role (LOGIN, nothing else) if missing, then grant it."""
    with psycopg.connect(libpq_url(owner_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if exists is None:
            statement = sql.SQL(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                "NOBYPASSRLS NOINHERIT"
            ).format(sql.Identifier(role))
            if password:
                statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
            conn.execute(statement)
        elif password:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
    return grant_app_role(owner_url, role)


def privileges(url: str, tables: Iterable[str] = AUDIT_TABLES) -> dict[str, list[str]]:
    """What the role of `url` may do to each table (for `db roles` and the tests)."""
    checks = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
    with psycopg.connect(libpq_url(url)) as conn:
        result: dict[str, list[str]] = {}
        for table in tables:
            owner = conn.execute(
                "SELECT pg_get_userbyid(relowner) = current_user FROM pg_class "
                "WHERE oid = %s::regclass",
                (table,),
            ).fetchone()
            granted = [
                p
                for p in checks
                if (conn.execute("SELECT has_table_privilege(%s, %s)", (table, p)).fetchone())
                == (True,)
            ]
            if owner == (True,):
                granted.append("OWNER")
            result[table] = granted
        return result
