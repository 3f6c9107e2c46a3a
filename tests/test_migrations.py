"""The migrations build the schema the models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from console.models import Base


def _ours(name: str | None, type_: str, _parent: object) -> bool:
    # procrastinate's tables (the job engine's own schema, from its migrations) are
    # not the console's models.
    return not (type_ == "table" and name is not None and name.startswith("procrastinate_"))


def test_the_migrated_schema_is_the_models_schema(pg_database) -> None:
    # An index or column declared on a model without its migration (or the reverse)
    # would exist in tests built from the models but not in a migrated database.
    engine = create_engine(pg_database.owner_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": _ours}
            )
            diff = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_0012_measures_the_disorder_of_the_entries_already_there(pg_admin_url) -> None:
    # Entries appended under 0011 with clocks out of order: the upgrade computes the
    # head's max_ts and max_disorder from them, the downgrade restores 0005's trigger,
    # and upgrading again gives the same figures.
    import uuid
    from datetime import timedelta

    import psycopg
    import pytest
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.orm import Session

    from console.audit import chain
    from console.cli import alembic_config
    from console.db import utcnow

    name = f"console_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_admin_url).set(drivername="postgresql+psycopg", database=name)
    url_text = url.render_as_string(hide_password=False)
    engine = create_engine(url_text)
    try:
        command.upgrade(alembic_config(url_text), "0011")
        base = utcnow()
        minutes = [0, 5, 2, 9, 1, 12]  # 5 -> 2: 3 min early; 9 -> 1: 8 min early
        with Session(engine) as s, pytest.MonkeyPatch.context() as mp:
            for m in minutes:
                mp.setattr(chain, "utcnow", lambda m=m: base + timedelta(minutes=m))
                chain.append(s, action="tests:migration", outcome="success", actor=None)
            s.commit()

        def head() -> tuple[object, object]:
            with engine.connect() as conn:
                row = conn.execute(text("SELECT max_ts, max_disorder FROM audit_chain_head")).one()
                return row[0], row[1]

        command.upgrade(alembic_config(url_text), "0012")
        assert head() == (base + timedelta(minutes=12), timedelta(minutes=8))
        # The trigger keeps them from here: 4 min is 8 early again, 20 is the new latest.
        with Session(engine) as s, pytest.MonkeyPatch.context() as mp:
            for m in (4, 20, 3):
                mp.setattr(chain, "utcnow", lambda m=m: base + timedelta(minutes=m))
                chain.append(s, action="tests:migration", outcome="success", actor=None)
            s.commit()
        assert head() == (base + timedelta(minutes=20), timedelta(minutes=17))
        command.downgrade(alembic_config(url_text), "0011")
        command.upgrade(alembic_config(url_text), "0012")
        assert head() == (base + timedelta(minutes=20), timedelta(minutes=17))
    finally:
        engine.dispose()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
