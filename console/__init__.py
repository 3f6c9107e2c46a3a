"""Payments operations console.

`create_app` is imported lazily so that light modules of this package (the
stand-alone audit verifier) can run without Flask installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["create_app"]


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the console; `config` overrides environment variables (tests)."""
    from console.app import create_app as _create_app

    return _create_app(config)
