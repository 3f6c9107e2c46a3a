"""The Flask extensions every blueprint shares, created once and bound by the app factory.

Blueprints import them from here, never from `console.app`, so no module of a
queue depends on the factory that assembles them.
"""

from __future__ import annotations

from pathlib import Path

from flask_htmx import HTMX
from flask_wtf.csrf import CSRFProtect

ROOT = Path(__file__).resolve().parent.parent

csrf = CSRFProtect()
htmx = HTMX()
