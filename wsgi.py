"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

import sys

from console import create_app
from console.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # One line that names what is missing, not a traceback.
    sys.exit(f"console: refusing to start: {exc}")
