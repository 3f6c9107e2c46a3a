"""Configuration: production refuses to start without what it needs, in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from console.config import ConfigError, load_settings, parse_role_map

ROOT = Path(__file__).resolve().parent.parent
PROD = {
    "CONSOLE_ENV": "production",
    "DATABASE_URL": "postgresql://console@db/console",
    "SECRET_KEY": "x" * 40,
    "OIDC_ISSUER": "https://idp.example.com",
    "OIDC_CLIENT_ID": "console",
    "OIDC_CLIENT_SECRET": "s3cret",
    "ROLE_MAP": "ops-support=support,ops-admins=admin,ops-audit=auditor",
    "STRIPE_API_KEY": "sk_live_x",
    "STRIPE_WEBHOOK_SECRET": "whsec_x",
}


def test_complete_production_settings_load():
    settings = load_settings(PROD)
    assert settings.is_production and settings.database_url.startswith("postgresql+psycopg://")
    assert settings.role_map["ops-admins"] == "admin"


@pytest.mark.parametrize(
    "missing",
    [
        "DATABASE_URL",
        "SECRET_KEY",
        "OIDC_ISSUER",
        "OIDC_CLIENT_ID",
        "OIDC_CLIENT_SECRET",
        "ROLE_MAP",
        "STRIPE_API_KEY",
        "STRIPE_WEBHOOK_SECRET",
    ],
)
def test_production_names_the_missing_variable(missing):
    env = {k: v for k, v in PROD.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        load_settings(env)


def test_production_refuses_sqlite_and_short_secrets():
    with pytest.raises(ConfigError, match="SQLite"):
        load_settings({**PROD, "DATABASE_URL": "sqlite:///x.db"})
    with pytest.raises(ConfigError, match="shorter"):
        load_settings({**PROD, "SECRET_KEY": "short"})


def test_demo_relaxes_only_what_a_laptop_needs(tmp_path):
    settings = load_settings({"CONSOLE_ENV": "demo"}, str(tmp_path))
    assert settings.is_sqlite and settings.secret_key and not settings.is_production


@pytest.mark.parametrize("raw", ["ops=root", "nonsense", "ops-admins=admin,=support"])
def test_bad_role_map_is_refused(raw):
    with pytest.raises(ConfigError, match="ROLE_MAP"):
        parse_role_map(raw)


def test_unknown_environment_is_refused():
    with pytest.raises(ConfigError, match="CONSOLE_ENV"):
        load_settings({"CONSOLE_ENV": "staging"})


def test_wsgi_refuses_to_start_with_one_line():
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OIDC_", "DATABASE_", "SECRET"))
    }
    env.update(CONSOLE_ENV="production")
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "console: refusing to start: DATABASE_URL is not set (production needs PostgreSQL)"
    ]
