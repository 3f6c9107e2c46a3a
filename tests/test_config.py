"""Configuration: production refuses to start without what it needs, in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from console import embedded_db
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


@pytest.mark.parametrize("mode", ["production", "demo", "test"])
def test_every_mode_refuses_a_database_that_is_not_postgresql(mode):
    with pytest.raises(ConfigError, match="PostgreSQL"):
        load_settings({**PROD, "CONSOLE_ENV": mode, "DATABASE_URL": "sqlite:///x.db"})


def test_production_refuses_short_secrets():
    with pytest.raises(ConfigError, match="shorter"):
        load_settings({**PROD, "SECRET_KEY": "short"})


@pytest.mark.slow
def test_demo_without_database_url_runs_the_embedded_postgresql(tmp_path):
    """No DATABASE_URL in demo mode: a private PostgreSQL server under instance/."""
    try:
        settings = load_settings({"CONSOLE_ENV": "demo"}, str(tmp_path))
        assert settings.secret_key and not settings.is_production
        assert settings.database_url.startswith("postgresql+psycopg://")
        engine = create_engine(settings.database_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar() == "console"
            assert conn.execute(text("SHOW server_version_num")).scalar() >= "150000"
        engine.dispose()
        # A second start attaches to the running server instead of starting another.
        assert load_settings({"CONSOLE_ENV": "demo"}, str(tmp_path)).database_url == (
            settings.database_url
        )
    finally:
        assert embedded_db.stop(embedded_db.server_dir(tmp_path))
    assert not embedded_db.is_running(embedded_db.server_dir(tmp_path))


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
