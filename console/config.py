"""Configuration from the environment, validated once at start-up.

The names are a contract (DESIGN.md "Interfaces"): other tooling sets them.
`CONSOLE_ENV=production` (the default) is strict; `demo` and `test` relax
only what a laptop needs (the embedded PostgreSQL server under `instance/`, a
generated secret, plain-http cookies). There is no other database engine.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENVIRONMENTS = ("production", "demo", "test")
ROLES = ("support", "admin", "auditor")


class ConfigError(RuntimeError):
    """The configuration cannot run; the message names what is missing."""


def parse_role_map(raw: str) -> dict[str, str]:
    """Parse `group=role,group=role` into a mapping, rejecting unknown roles."""
    mapping: dict[str, str] = {}
    for raw_part in raw.split(","):
        part = raw_part.strip()
        if not part:
            continue
        group, sep, role = part.partition("=")
        group, role = group.strip(), role.strip()
        if not sep or not group or role not in ROLES:
            raise ConfigError(
                f"ROLE_MAP entry {part!r} is not group=role with role one of {', '.join(ROLES)}"
            )
        mapping[group] = role
    return mapping


def parse_job_schedules(raw: str) -> dict[str, str]:
    """Parse `job=cron;job=off` (semicolons: cron expressions contain commas)."""
    schedules: dict[str, str] = {}
    for raw_part in raw.split(";"):
        part = raw_part.strip()
        if not part:
            continue
        name, sep, cron = part.partition("=")
        name, cron = name.strip(), " ".join(cron.split())
        if not sep or not name or not cron:
            raise ConfigError(f"JOB_SCHEDULES entry {part!r} is not job=cron or job=off")
        if cron != "off":
            from croniter import croniter

            if not croniter.is_valid(cron):
                raise ConfigError(f"JOB_SCHEDULES: {cron!r} for {name} is not a cron expression")
        schedules[name] = cron
    return schedules


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {raw!r}")
    return value


def _sqlalchemy_url(url: str) -> str:
    """postgres:// and postgresql:// as SQLAlchemy's psycopg 3 URL."""
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from the environment."""

    env: str
    database_url: str
    secret_key: str
    stripe_api_key: str
    stripe_webhook_secret: str
    stripe_api_base: str | None
    oidc_issuer: str
    oidc_client_id: str
    oidc_client_secret: str
    oidc_groups_claim: str
    role_map: dict[str, str]
    audit_signing_key: str | None
    proxy_fix_hops: int = 0
    session_idle_minutes: int = 15
    session_absolute_hours: int = 12
    step_up_seconds: int = 300
    audit_retention_days: int = 400
    stripe_timeout_seconds: float = 10.0
    stripe_max_requests_per_second: float = 20.0
    log_format: str = "json"
    """LOG_FORMAT: `json` (one object per line, the production default) or `text`."""
    sentry_dsn: str | None = None
    job_stalled_seconds: int = 30
    """A worker silent this long is taken as dead; its jobs go back in the queue."""
    job_schedules: dict[str, str] = field(default_factory=dict)
    """JOB_SCHEDULES overrides: job name -> cron expression, or "off"."""
    supplier_api_base: str | None = None
    supplier_api_key: str | None = None
    supplier_timeout_seconds: float = 10.0
    metrics_token: str = ""
    metrics_allow_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    database_migration_url: str | None = None
    audit_checkpoint_dir: str = "instance/audit-checkpoints"
    audit_checkpoint_every: int = 1000
    stripe_max_attempts: int = 3
    stripe_call_deadline_seconds: float = 25.0
    worker_timeout_seconds: int = 30
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def owner_database_url(self) -> str:
        """Where migrations and the retention purge connect: the owner of the tables."""
        return self.database_migration_url or self.database_url


def load_settings(
    environ: Mapping[str, str] | None = None, instance_path: str | None = None
) -> Settings:
    """Read and validate settings; raise ConfigError with a one-line reason."""
    env = dict(os.environ if environ is None else environ)
    mode = env.get("CONSOLE_ENV", "production").strip() or "production"
    if mode not in ENVIRONMENTS:
        raise ConfigError(f"CONSOLE_ENV must be one of {', '.join(ENVIRONMENTS)}, got {mode!r}")
    strict = mode == "production"

    database_url = env.get("DATABASE_URL", "").strip()
    if not database_url:
        if strict:
            raise ConfigError("DATABASE_URL is not set (production needs PostgreSQL)")
        from console.embedded_db import default_url

        database_url = default_url(Path(instance_path or "instance"))
    database_url = _sqlalchemy_url(database_url)
    migration_url = _sqlalchemy_url(env.get("DATABASE_MIGRATION_URL", "").strip()) or None
    for name, url in (("DATABASE_URL", database_url), ("DATABASE_MIGRATION_URL", migration_url)):
        if url is not None and not url.startswith("postgresql"):
            raise ConfigError(
                f"{name} must be a PostgreSQL URL (postgresql://...): the console relies on "
                "row locks with NOWAIT/SKIP LOCKED, append-only triggers and partial indexes"
            )

    secret_key = env.get("SECRET_KEY", "")
    if not secret_key:
        if strict:
            raise ConfigError("SECRET_KEY is not set")
        secret_key = secrets.token_urlsafe(32)
    elif strict and len(secret_key) < 32:
        raise ConfigError("SECRET_KEY is shorter than 32 characters")

    oidc = {
        name: env.get(name, "").strip()
        for name in ("OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET")
    }
    if strict:
        for name, value in oidc.items():
            if not value:
                raise ConfigError(f"{name} is not set")

    role_map_raw = env.get("ROLE_MAP", "")
    if strict and not role_map_raw.strip():
        raise ConfigError("ROLE_MAP is not set (e.g. ops-support=support,ops-admins=admin)")
    role_map = parse_role_map(
        role_map_raw or "ops-support=support,ops-admins=admin,ops-audit=auditor"
    )

    stripe_key = env.get("STRIPE_API_KEY", "").strip()
    if strict and not stripe_key:
        raise ConfigError("STRIPE_API_KEY is not set")
    webhook_secret = env.get("STRIPE_WEBHOOK_SECRET", "").strip()
    if strict and not webhook_secret:
        raise ConfigError("STRIPE_WEBHOOK_SECRET is not set")

    signing_key = env.get("AUDIT_SIGNING_KEY", "").strip() or None
    if signing_key and not Path(signing_key).is_file():
        raise ConfigError(f"AUDIT_SIGNING_KEY points at {signing_key}, which is not a file")

    metrics_token = env.get("METRICS_TOKEN", "").strip()
    if strict and metrics_token and len(metrics_token) < 24:
        raise ConfigError("METRICS_TOKEN is shorter than 24 characters")
    cidrs_raw = env.get("METRICS_ALLOW_CIDRS")
    if cidrs_raw is None and not strict:
        cidrs_raw = "127.0.0.1/32,::1/128"  # demo and tests: this machine only
    metrics_allow_cidrs = parse_cidrs(cidrs_raw or "")
    stripe_timeout = float(_int(env, "STRIPE_TIMEOUT_SECONDS", 10))
    deadline = float(_int(env, "STRIPE_CALL_DEADLINE_SECONDS", 25))
    worker_timeout = _int(env, "WORKER_TIMEOUT_SECONDS", 30)
    if not 0 < stripe_timeout <= deadline < worker_timeout:
        raise ConfigError(
            "Stripe calls must give up before the web worker is killed: need "
            f"STRIPE_TIMEOUT_SECONDS ({stripe_timeout:g}) <= STRIPE_CALL_DEADLINE_SECONDS "
            f"({deadline:g}) < WORKER_TIMEOUT_SECONDS ({worker_timeout})"
        )
    checkpoint_dir = env.get("AUDIT_CHECKPOINT_DIR", "").strip() or str(
        Path(instance_path or "instance") / "audit-checkpoints"
    )

    return Settings(
        env=mode,
        database_url=database_url,
        secret_key=secret_key,
        stripe_api_key=stripe_key or "sk_test_local_double",
        stripe_webhook_secret=webhook_secret or "whsec_local_double",
        stripe_api_base=env.get("STRIPE_API_BASE", "").strip() or None,
        oidc_issuer=oidc["OIDC_ISSUER"].rstrip("/"),
        oidc_client_id=oidc["OIDC_CLIENT_ID"],
        oidc_client_secret=oidc["OIDC_CLIENT_SECRET"],
        oidc_groups_claim=env.get("OIDC_GROUPS_CLAIM", "groups").strip() or "groups",
        role_map=role_map,
        audit_signing_key=signing_key,
        proxy_fix_hops=_int(env, "PROXY_FIX_HOPS", 0),
        session_idle_minutes=_int(env, "SESSION_IDLE_MINUTES", 15),
        session_absolute_hours=_int(env, "SESSION_ABSOLUTE_HOURS", 12),
        step_up_seconds=_int(env, "STEP_UP_SECONDS", 300),
        audit_retention_days=_int(env, "AUDIT_RETENTION_DAYS", 400),
        stripe_timeout_seconds=stripe_timeout,
        # Stripe test mode allows 25 requests/s; stay under it by default.
        stripe_max_requests_per_second=float(_int(env, "STRIPE_MAX_REQUESTS_PER_SECOND", 20)),
        log_format=_choice(env, "LOG_FORMAT", ("json", "text"), "json" if strict else "text"),
        sentry_dsn=env.get("SENTRY_DSN", "").strip() or None,
        job_stalled_seconds=_int(env, "JOB_STALLED_SECONDS", 30),
        job_schedules=parse_job_schedules(env.get("JOB_SCHEDULES", "")),
        # Optional: without a base URL, forwarding and the sync say the supplier is not set up.
        supplier_api_base=env.get("SUPPLIER_API_BASE", "").strip().rstrip("/") or None,
        supplier_api_key=env.get("SUPPLIER_API_KEY", "").strip() or None,
        supplier_timeout_seconds=_float(env, "SUPPLIER_TIMEOUT_SECONDS", 10.0),
        metrics_token=metrics_token,
        metrics_allow_cidrs=metrics_allow_cidrs,
        database_migration_url=migration_url,
        audit_checkpoint_dir=checkpoint_dir,
        audit_checkpoint_every=_int(env, "AUDIT_CHECKPOINT_EVERY", 1000),
        stripe_max_attempts=max(1, _int(env, "STRIPE_MAX_ATTEMPTS", 3)),
        stripe_call_deadline_seconds=deadline,
        worker_timeout_seconds=worker_timeout,
    )


def parse_cidrs(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """`10.0.0.0/8, 192.168.1.5` -> networks; a bad entry is a ConfigError naming it."""
    networks = []
    for raw_part in raw.split(","):
        part = raw_part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(
                f"METRICS_ALLOW_CIDRS entry {part!r} is not a network (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(networks)
