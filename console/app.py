"""The app factory and the extensions every blueprint shares."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, g, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from console.config import ConfigError, Settings, load_settings
from console.db import Database
from console.extensions import ROOT, csrf, htmx

__all__ = ["ROOT", "ConfigError", "create_app"]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the console; `config` overrides environment variables (tests)."""
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(ROOT / "instance"),
    )
    import os

    environ = dict(os.environ)
    overrides = dict(config or {})
    environ.update({k: str(v) for k, v in overrides.items() if k.isupper() and v is not None})
    settings: Settings = load_settings(environ, app.instance_path)
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="console_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        REMEMBER_COOKIE_NAME="console_remember",
        PERMANENT_SESSION_LIFETIME=settings.session_absolute_hours * 3600,
        # The cookie lives as long as the sign-in may (set at sign-in, the absolute limit);
        # idle and absolute expiry are the server-side session's. Re-signing and re-sending
        # an unchanged cookie on every response was a tenth of an empty page (issue 15).
        SESSION_REFRESH_EACH_REQUEST=False,
        WTF_CSRF_TIME_LIMIT=None,  # the session bounds the token's life
        WTF_CSRF_SSL_STRICT=settings.is_production,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        PREFERRED_URL_SCHEME="https" if settings.is_production else "http",
        # Operations switches (environment, read at start-up).
        INVOICE_TARGET=environ.get("INVOICE_TARGET", "stripe"),
        INVOICE_RETRY_BASE_SECONDS=int(environ.get("INVOICE_RETRY_BASE_SECONDS", "60")),
        INVOICE_RETRY_CAP_SECONDS=int(environ.get("INVOICE_RETRY_CAP_SECONDS", "21600")),
        INVOICE_MAX_ATTEMPTS=int(environ.get("INVOICE_MAX_ATTEMPTS", "6")),
        PAYOUT_AUTO_RELEASE_LIMIT=int(environ.get("PAYOUT_AUTO_RELEASE_LIMIT", "50000")),
        # The shop connection (console/integrations): ingest API and outbound events.
        API_RATE_LIMIT=environ.get("API_RATE_LIMIT", "1200/minute"),
        API_MAX_BODY_BYTES=int(environ.get("API_MAX_BODY_BYTES", str(4 * 1024 * 1024))),
        RATELIMIT_STORAGE_URI=environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        WEBHOOK_TIMEOUT_SECONDS=float(environ.get("WEBHOOK_TIMEOUT_SECONDS", "10")),
        WEBHOOK_RETRY_BASE_SECONDS=int(environ.get("WEBHOOK_RETRY_BASE_SECONDS", "30")),
        WEBHOOK_RETRY_CAP_SECONDS=int(environ.get("WEBHOOK_RETRY_CAP_SECONDS", "21600")),
        WEBHOOK_RETRY_WINDOW_SECONDS=int(environ.get("WEBHOOK_RETRY_WINDOW_SECONDS", "259200")),
        WEBHOOK_ALLOW_PRIVATE_URLS=environ.get("WEBHOOK_ALLOW_PRIVATE_URLS", "")
        or ("" if settings.is_production else "1"),
    )
    from console.payments.intake import WebhookIntake

    app.wsgi_app = WebhookIntake(app, app.wsgi_app)  # type: ignore[method-assign]
    if settings.proxy_fix_hops:
        h = settings.proxy_fix_hops
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=h, x_proto=h, x_host=h, x_port=h
        )
    from console.logs import configure_logging

    configure_logging(settings.log_format)
    if settings.sentry_dsn:
        _init_sentry(settings)

    database = Database(settings.database_url)
    database.init_app(app)
    csrf.init_app(app)
    htmx.init_app(app)

    from console import models  # noqa: F401  (complete metadata)
    from console.security.auth import init_auth

    init_auth(app)
    _register_blueprints(app)
    _register_request_hooks(app)

    from console.params import init_params

    init_params(app)

    from console.errors import register_error_handlers
    from console.ops.metrics import init_metrics
    from console.templating import init_templating

    register_error_handlers(app)
    init_templating(app)
    init_metrics(app)

    from console.cli import register_cli

    register_cli(app)
    return app


def _register_blueprints(app: Flask) -> None:
    from console.actions.views import bp as actions_bp
    from console.audit.views import bp as audit_bp
    from console.coupons.views import bp as coupons_bp
    from console.dashboard import bp as dashboard_bp
    from console.integrations.api import init_api
    from console.integrations.views import bp as integrations_bp
    from console.inventory.views import bp as inventory_bp
    from console.invoices.views import bp as invoices_bp
    from console.ops.views import bp as ops_bp
    from console.orders.views import bp as orders_bp
    from console.payments.views import bp as webhook_pages_bp
    from console.payments.webhooks import bp as webhooks_bp
    from console.payouts.views import bp as payouts_bp
    from console.reconciliation.views import bp as reconciliation_bp
    from console.suppliers.views import bp as suppliers_bp

    for bp in (
        dashboard_bp,
        actions_bp,
        audit_bp,
        ops_bp,
        orders_bp,
        inventory_bp,
        coupons_bp,
        suppliers_bp,
        webhooks_bp,
        webhook_pages_bp,
        invoices_bp,
        payouts_bp,
        reconciliation_bp,
        integrations_bp,
    ):
        app.register_blueprint(bp)
    init_api(app)

    # Declarations register themselves on import: actions, webhook handlers, jobs.
    from console.audit import jobs as _audit_jobs  # noqa: F401
    from console.coupons import actions as _coupon_actions  # noqa: F401
    from console.coupons import jobs as _coupon_jobs  # noqa: F401
    from console.integrations import actions as _integration_actions  # noqa: F401
    from console.integrations import jobs as _integration_jobs  # noqa: F401
    from console.inventory import actions as _inventory_actions  # noqa: F401
    from console.invoices import actions as _invoice_actions  # noqa: F401
    from console.invoices import jobs as _invoice_jobs  # noqa: F401
    from console.ops import actions as _ops_actions  # noqa: F401
    from console.orders import actions as _order_actions  # noqa: F401
    from console.orders import services as _order_services  # noqa: F401
    from console.payments import actions as _payment_actions  # noqa: F401
    from console.payouts import actions as _payout_actions  # noqa: F401
    from console.payouts import jobs as _payout_jobs  # noqa: F401
    from console.payouts import release as _payout_release  # noqa: F401
    from console.payouts import services as _payout_services  # noqa: F401
    from console.reconciliation import actions as _reconciliation_actions  # noqa: F401
    from console.reconciliation import jobs as _reconciliation_jobs  # noqa: F401
    from console.suppliers import actions as _supplier_actions  # noqa: F401
    from console.suppliers import jobs as _supplier_jobs  # noqa: F401


def _init_sentry(settings: Settings) -> None:
    """Errors to Sentry when SENTRY_DSN is set; no personal data, no request bodies."""
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.env,
        integrations=[FlaskIntegration()],
        send_default_pii=False,
        max_request_body_size="never",
        traces_sample_rate=0.0,
    )


def _register_request_hooks(app: Flask) -> None:
    settings: Settings = app.config["SETTINGS"]
    access = logging.getLogger("console.access")
    # Sign-out is a form POST answered with a redirect to the IdP's end_session
    # endpoint; CSP's form-action governs that redirect too.
    issuer = urlsplit(settings.oidc_issuer) if settings.oidc_issuer else None
    idp_origin = f" {issuer.scheme}://{issuer.netloc}" if issuer and issuer.netloc else ""

    @app.before_request
    def _request_id() -> None:
        # A client's X-Request-Id is taken only from a trusted proxy in front
        # (PROXY_FIX_HOPS > 0): otherwise anyone could plant ids in the audit log.
        incoming = request.headers.get("X-Request-Id", "") if settings.proxy_fix_hops else ""
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex

    @app.after_request
    def _security_headers(resp: Response) -> Response:
        h = resp.headers
        h.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'; form-action 'self'{idp_origin}; frame-ancestors 'none'; "
            "base-uri 'none'; "
            "object-src 'none'",
        )
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        h["X-Request-Id"] = g.get("request_id", "")
        if settings.is_production:
            h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if not request.path.startswith("/static/"):
            h.setdefault("Cache-Control", "no-store")
        return resp

    @app.after_request
    def _access_log(resp: Response) -> Response:
        """One JSON line per request: who, which route, the status and the time taken."""
        if request.path.startswith("/static/"):
            return resp
        started = g.get("request_started")
        # The user this request already loaded (flask-login keeps it in g); a
        # request that never needed one (a Stripe webhook, /healthz) has none,
        # and is not made to parse a session for the log line.
        user = getattr(g.get("_login_user"), "email", None)
        access.info(
            "%s %s %s",
            request.method,
            request.path,
            resp.status_code,
            extra={
                "request_id": g.get("request_id"),
                "method": request.method,
                "route": request.url_rule.rule if request.url_rule else None,
                "path": request.path,  # never the query string (OIDC code and state)
                "status": resp.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2)
                if started
                else None,
                "user": user or None,
            },
        )
        return resp
