"""A small reference storefront back end that connects to the console.

It keeps its own records in its own PostgreSQL database, pushes them to the
console's ingest API (`/api/v1`, a Bearer API key) and applies the console's
events to them, verifying each signature with the `standardwebhooks`
library. `python -m examples.shop --help` runs it; `ReferenceShop` starts it
in-process (tests, `bin/demo`).
"""

from examples.shop.app import ReferenceShop, create_shop_app

__all__ = ["ReferenceShop", "create_shop_app"]
