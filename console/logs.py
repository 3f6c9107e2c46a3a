"""Structured logs: one JSON object per line, and nothing secret in any of them.

`LOG_FORMAT=json` (the default in production) writes each record as JSON with
its extras (request id, user, route, status, duration; job name, trigger);
`text` is for a terminal. Every record passes the redaction filter first:
API keys, webhook secrets, bearer tokens, OIDC `code`/`state`/`id_token`
values and card numbers are masked wherever they appear in the message or
its fields, whoever logged them (our code, the Stripe SDK, Authlib).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from console.cardnumbers import mask_pans

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

_SECRETS = [
    (re.compile(r"\b(sk|rk)_(live|test)_[A-Za-z0-9]{6,}"), r"\1_\2_[redacted]"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]{6,}"), "whsec_[redacted]"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 [redacted]"),
    (
        re.compile(
            r"(?i)\b(code|state|id_token|access_token|refresh_token|client_secret|"
            r"id_token_hint|nonce|csrf_token|password)=([^&\s\"']+)"
        ),
        r"\1=[redacted]",
    ),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"), "[jwt]"),
]


# Every pattern above needs one of these (a superset: `sk_`/`rk_` in any case,
# `whsec_`, `bearer`, `=` of `code=...`, `eyJ` of a JWT). One search in C rules
# the secrets out of most texts (paths, methods, ids), instead of five
# substitutions per field of every log record (issue 15: a sixth of a
# webhook delivery's CPU was this filter).
_MAYBE_SECRET = re.compile(r"(?i:[sr]k_|whsec_|bearer)|=|eyJ")


def redact(text: str) -> str:
    """Mask secrets and card numbers in free text."""
    if _MAYBE_SECRET.search(text):
        for pattern, replacement in _SECRETS:
            text = pattern.sub(replacement, text)
    return mask_pans(text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class RedactFilter(logging.Filter):
    """Redact the message and every extra field before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, _clean(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)


_configured: tuple[str, str] | None = None


def configure_logging(fmt: str, level: str = "INFO", *, stream: Any = None) -> None:
    """Install one handler on the root logger (idempotent per format and level)."""
    global _configured  # noqa: PLW0603  (logging is process-wide)
    if _configured == (fmt, level) and stream is None:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_console", False)]:
        root.removeHandler(old)
    handler._console = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty libraries: their INFO lines repeat what our own lines say, with URLs.
    for name in ("stripe", "alembic.runtime.plugins", "urllib3", "authlib"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _configured = (fmt, level)
