"""Gunicorn settings for the console: `gunicorn -c gunicorn.conf.py wsgi:app`.

Access logs never carry the OIDC `code` or `state`: the query string of
/auth/callback is dropped from every atom that holds it (request line, path
and query, referrer), and `code=`/`state=` parameters of any other URL in a
logged field are replaced. Each line carries the request id the console
answered with, so a log line and an audit entry can be matched.

Stdlib and gunicorn only: this file is read by the master before the app.
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

CALLBACK_PATH = "/auth/callback"
_SECRET_PARAM = re.compile(r"(?i)(?:^|(?<=[?&;]))(code|state|id_token|access_token)=[^&;#\s\"]*")
_URL_ATOMS = ("r", "U", "q", "f", "{referer}i")

# Workers, timeouts and the bind are set by the deployment (or the command line).
accesslog = "-"
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" rid=%({x-request-id}o)s %(M)sms'
)


def scrub(value: Any) -> Any:
    """One logged field without OIDC secrets."""
    if not isinstance(value, str) or not value:
        return value
    if CALLBACK_PATH in value:
        # Drop the whole query of the callback: code, state, iss, session_state...
        value = re.sub(rf"({re.escape(CALLBACK_PATH)})\?[^\s\"]*", r"\1?[query removed]", value)
    return _SECRET_PARAM.sub(lambda m: f"{m[1]}=[removed]", value)


class ScrubbingLogger(Logger):
    """Gunicorn's logger with OIDC secrets removed from the access-log atoms."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> Any:
        atoms = super().atoms(resp, req, environ, request_time)
        if environ.get("PATH_INFO") == CALLBACK_PATH:
            atoms["q"] = "[query removed]"
        for key in _URL_ATOMS:
            if key in atoms:
                atoms[key] = scrub(atoms[key])
        return atoms


logger_class = ScrubbingLogger
