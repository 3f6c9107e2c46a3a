"""The reference shop (examples/shop) as a real peer: its own database, its own server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from examples.shop.app import ReferenceShop


@pytest.fixture(scope="session")
def shop_db_url(pg_admin_url: str) -> Iterator[str]:
    """The shop's own database on the test server (the machine's or the embedded one)."""
    from urllib.parse import urlsplit, urlunsplit

    name = f"shop_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    yield urlunsplit(urlsplit(pg_admin_url)._replace(path=f"/{name}"))
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def shop(shop_db_url: str) -> Iterator[ReferenceShop]:
    """A running reference shop with empty tables (it pushes nowhere unless told)."""
    started = ReferenceShop.start(
        database_url=shop_db_url, console_url="http://127.0.0.1:9", api_key="csk_unset_x"
    )
    with started.store.connect() as conn:
        conn.execute("TRUNCATE shop_records, shop_console_events, shop_record_sequences")
    yield started
    started.stop()
