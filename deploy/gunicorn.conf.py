"""gunicorn settings for the console: `gunicorn -c deploy/gunicorn.conf.py wsgi:app`.

The worker timeout is the one number the console's own limits are set
against: `WORKER_TIMEOUT_SECONDS` is read here and by the console's
configuration, which refuses to start unless a Stripe call gives up
(`STRIPE_CALL_DEADLINE_SECONDS`, all retries included) before the worker
would be killed. A request then ends with a clear 502 and its audit entry,
never with a worker killed in the middle of a money movement.
"""

import os

timeout = int(os.environ.get("WORKER_TIMEOUT_SECONDS", "30"))
graceful_timeout = timeout
bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
