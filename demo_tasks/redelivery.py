"""Chapter 07's second, small app: a countdown longer than Redis's visibility timeout runs twice.

On Redis, a message a worker has taken but not acknowledged sits in the
``unacked`` hash. A task with a countdown (or an ETA) is taken at once and held
by the worker, unacknowledged, until its time comes. Every worker sweeps that
hash and puts back into the queue each message held longer than
``visibility_timeout`` (kombu.transport.redis, ``QoS.restore_visible``): the
held task is delivered a second time, and both copies run at the countdown.

kombu 5.7's defaults: ``visibility_timeout`` 3600 s, and the sweep runs every
``unacked_restore_interval`` (10 s) but scans only on every
``unacked_restore_throttle``-th (10th) run: about every 100 s. This app shortens
all three so the duplicate shows in seconds; nothing else in the course uses
them. Its own ``unacked*`` keys keep its sweep away from the unacknowledged
messages of the chapter's main app (demo_tasks.retries) on the same database.

    celery -A demo_tasks.redelivery worker --loglevel=info -Q ch07-visibility
"""

from __future__ import annotations

import json
import os
import time

import redis
from celery import Celery
from celery.utils.log import get_task_logger

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1")
QUEUE = "ch07-visibility"
#: Every run of remember_run appends {"id", "pid", "t"} here.
RUNS_KEY = "demo:visibility:runs"

# No result backend: the runs are counted from RUNS_KEY and the worker's log.
app = Celery("demo_tasks.redelivery", broker=REDIS_URL, set_as_current=False)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-connection-retry-on-startup
app.conf.broker_connection_retry_on_startup = True
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-default-queue
app.conf.task_default_queue = QUEUE
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-transport-options
# https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout
app.conf.broker_transport_options = {
    "visibility_timeout": 4,          # default 3600 s: held longer than this = "lost", put back
    "unacked_restore_interval": 1,    # default 10 s between sweeps
    "unacked_restore_throttle": 1,    # default 10: only every 10th sweep scans (10 x 10 = about 100 s)
    # Keys of its own (defaults "unacked", "unacked_index", "unacked_mutex"): this sweep sees only
    # this app's messages, not the main app's on the same database.
    "unacked_key": "ch07-visibility-unacked",
    "unacked_index_key": "ch07-visibility-unacked_index",
    "unacked_mutex_key": "ch07-visibility-unacked_mutex",
}

logger = get_task_logger(__name__)


@app.task(bind=True)
def remember_run(self) -> None:
    """Appends one record per run to RUNS_KEY ({"id", "pid", "t"}) and logs a line."""
    _redis().rpush(RUNS_KEY, json.dumps({"id": self.request.id, "pid": os.getpid(), "t": time.time()}))
    logger.info("ran %s", self.request.id)


def _redis() -> redis.Redis:
    return redis.Redis.from_url(app.conf.broker_url, decode_responses=True)


def runs(task_id: str | None = None) -> list[dict]:
    """The records remember_run left (only those of ``task_id`` when given)."""
    records = [json.loads(item) for item in _redis().lrange(RUNS_KEY, 0, -1)]
    return [r for r in records if task_id is None or r["id"] == task_id]
