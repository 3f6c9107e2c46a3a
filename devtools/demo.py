"""Run the demo: migrated and seeded SQLite, local Stripe double, local IdP, console.

Started by `bin/demo`. Everything binds to 127.0.0.1. Ctrl-C stops it all.
Set STRIPE_API_KEY to a Stripe *test-mode* key to use Stripe itself instead of
the local double (a live key is refused).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"
VENV_BIN = Path(sys.executable).parent


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pick_port(preferred: int) -> int:
    for port in range(preferred, preferred + 50):
        if port_free(port):
            return port
    raise SystemExit(f"no free port near {preferred}")


def persistent_secret(name: str) -> str:
    path = INSTANCE / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def run(cmd: list[str], env: dict[str, str]) -> None:
    shown = ["flask", *cmd[1:]] if cmd[0].endswith("flask") else cmd
    print(f"==> {' '.join(shown)}", flush=True)
    subprocess.run(cmd, env=env, cwd=ROOT, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5000, help="console port (default 5000)")
    parser.add_argument("--idp-port", type=int, default=5556)
    parser.add_argument("--stripe-port", type=int, default=12111)
    parser.add_argument("--orders", type=int, default=3000, help="healthy demo orders")
    parser.add_argument("--reset", action="store_true", help="start from an empty database")
    args = parser.parse_args()

    INSTANCE.mkdir(exist_ok=True)
    db_file = INSTANCE / "demo.sqlite3"
    if args.reset and db_file.exists():
        db_file.unlink()
    console_port = pick_port(args.port)
    idp_port = pick_port(args.idp_port)
    base_url = f"http://127.0.0.1:{console_port}"
    client_secret = persistent_secret("demo_oidc_client_secret")

    env = dict(os.environ)
    env.update(
        CONSOLE_ENV="demo",
        DATABASE_URL=env.get("DATABASE_URL") or f"sqlite:///{db_file}",
        SECRET_KEY=env.get("SECRET_KEY") or persistent_secret("demo_secret_key"),
        OIDC_ISSUER=f"http://127.0.0.1:{idp_port}",
        OIDC_CLIENT_ID="console-demo",
        OIDC_CLIENT_SECRET=client_secret,
        ROLE_MAP=env.get("ROLE_MAP") or "ops-support=support,ops-admins=admin,ops-audit=auditor",
        STRIPE_WEBHOOK_SECRET=env.get("STRIPE_WEBHOOK_SECRET") or "whsec_demo_local",
    )

    stripe_double = None
    api_key = env.get("STRIPE_API_KEY", "")
    if api_key.startswith(("sk_live", "rk_live")):
        raise SystemExit("STRIPE_API_KEY is a live key: the demo only runs against test mode")
    if not api_key:
        from devtools.stripe_double import StripeDouble

        stripe_double = StripeDouble.start(port=pick_port(args.stripe_port))
        env.update(STRIPE_API_KEY="sk_test_demo_local", STRIPE_API_BASE=stripe_double.url)
        # The local double has no rate limit: do not slow the demo set-up down.
        env.setdefault("STRIPE_MAX_REQUESTS_PER_SECOND", "0")
        print(f"==> local Stripe double at {stripe_double.url}", flush=True)
    else:
        print("==> using Stripe test mode (STRIPE_API_KEY is set)", flush=True)

    flask = [str(VENV_BIN / "flask"), "--app", "wsgi"]
    run([*flask, "db", "upgrade"], env)
    run([*flask, "demo", "seed", "--orders", str(args.orders)], env)
    stripe_sync = subprocess.run(
        [*flask, "demo", "stripe-sync"],
        check=False,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if stripe_sync.returncode == 0:
        print(stripe_sync.stdout.strip(), flush=True)
    elif "No such command" not in stripe_sync.stderr:
        print(stripe_sync.stderr.strip(), file=sys.stderr, flush=True)

    from devtools.idp import DemoIdP

    idp = DemoIdP.start(
        port=idp_port,
        client_id="console-demo",
        client_secret=client_secret,
        redirect_uri=f"{base_url}/auth/callback",
        post_logout_redirect_uri=f"{base_url}/login",
    )
    print(f"==> demo identity provider at {idp.issuer}", flush=True)

    server = subprocess.Popen(
        [
            str(VENV_BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{console_port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--access-logfile",
            "-",
            "wsgi:app",
        ],
        env=env,
        cwd=ROOT,
    )
    for _ in range(100):
        if not port_free(console_port):
            break
        time.sleep(0.1)
    # ---------------------------------------------------------------- the reference shop
    # issue 14 (shop-api): examples/shop beside the console, connected with one API key and
    # one endpoint, seeded *through the API*; its events are delivered every few seconds
    # until the job engine schedules `integrations deliver`. Self-contained: the lead may
    # move this block as a whole.
    shop = start_reference_shop(env, base_url, console_port, reset=args.reset)
    # ---------------------------------------------------------------- end of the shop block
    print(
        "\n"
        f"  Payments console: {base_url}/\n"
        "  Sign in at the demo identity provider with one of (any password):\n"
        "    support@example.test   support\n"
        "    admin@example.test     admin\n"
        "    admin2@example.test    second admin (four-eyes approvals)\n"
        "    auditor@example.test   auditor\n"
        "    nogroup@example.test   no console role (sees the 403 page)\n"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )
    if shop is not None:
        print(f"  Reference shop: {shop.url}/ (its orders; events from the console arrive here)\n")

    def stop(*_: object) -> None:
        server.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        server.wait(timeout=10)
        return 0
    finally:
        if shop is not None:
            shop.stop()
        idp.stop()
        if stripe_double is not None:
            stripe_double.stop()


# -------------------------------------------------------------------- reference shop helpers


def shop_database_url(console_database_url: str) -> str:
    """The shop's own database on the console's PostgreSQL server (database `shop`)."""
    explicit = os.environ.get("SHOP_DATABASE_URL")
    if explicit:
        return explicit
    from urllib.parse import urlsplit, urlunsplit

    url = console_database_url.replace("postgresql+psycopg://", "postgresql://")
    if not url.startswith(("postgresql://", "postgres://")):
        return "postgresql://postgres@127.0.0.1:5432/shop"
    return urlunsplit(urlsplit(url)._replace(path="/shop"))


def start_reference_shop(env: dict[str, str], base_url: str, console_port: int, *, reset: bool):
    """Connect examples/shop to the console, seed the console through it, deliver its events."""
    import json
    import threading

    from examples.shop.__main__ import seed_records
    from examples.shop.app import ReferenceShop

    flask = [str(VENV_BIN / "flask"), "--app", "wsgi"]
    shop_port = pick_port(console_port + 100)
    shop_url = f"http://127.0.0.1:{shop_port}"
    connected = subprocess.run(
        [*flask, "integrations", "connect", "--shop", "Reference tea shop", "--json",
         "--key-name", "reference shop (demo)", "--url", f"{shop_url}/webhooks/console"],
        env=env, cwd=ROOT, check=False, capture_output=True, text=True,
    )  # fmt: skip
    if connected.returncode != 0:
        print(f"==> reference shop not started: {connected.stderr.strip()}", file=sys.stderr)
        return None
    creds = json.loads(connected.stdout.strip().splitlines()[-1])
    try:
        shop = ReferenceShop.start(
            database_url=shop_database_url(env["DATABASE_URL"]),
            console_url=base_url,
            api_key=creds["api_key"],
            webhook_secret=creds["webhook_secret"],
            port=shop_port,
        )
    except Exception as exc:  # the console demo still runs without the shop
        print(f"==> reference shop not started: {exc}", file=sys.stderr)
        return None
    if reset:
        with shop.store.connect() as conn:
            conn.execute("TRUNCATE shop_records, shop_console_events, shop_record_sequences")
    seed_records(shop.store)
    summary = shop.push()
    print(f"==> reference shop at {shop.url}, pushed through /api/v1: {summary}", flush=True)

    def deliver_forever() -> None:
        while True:
            subprocess.run([*flask, "integrations", "deliver"], env=env, cwd=ROOT, check=False,
                           capture_output=True)  # fmt: skip
            time.sleep(5)

    threading.Thread(target=deliver_forever, name="deliver", daemon=True).start()
    return shop


if __name__ == "__main__":
    sys.exit(main())
