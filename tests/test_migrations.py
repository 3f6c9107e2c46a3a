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
