"""The standalone app's periodic tasks (chapter 06): a schedule for celery beat.

Beat reads ``app.conf.beat_schedule`` and, whenever an entry is due, *sends*
its task to the broker like ``delay()`` would; a worker runs it. Both are
started with this module, so both know the schedule and the ``tick`` task:

    celery -A demo_tasks.periodic beat --loglevel=info
    celery -A demo_tasks.periodic worker --loglevel=info

(``-A demo_tasks.periodic`` finds the ``app`` below: this chapter's own app,
so its schedule and time zone never change another chapter's app.)
"""

import json
import os
import time

import redis
from celery import Celery
from celery.schedules import crontab

# As in tasks.py: the article's server unless REDIS_URL names another. (Not
# imported from tasks.py: @app.task tasks are shared with every app in the
# process, and this chapter's worker should list only its own task.)
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1")

#: The Redis list where every run of ``tick`` leaves a record.
TICKS_KEY = "demo:ticks"

# No result backend: tick's record in Redis is its result (ignore_result below).
# set_as_current=False: a Django project's @shared_task tasks use the "current"
# app; importing this chapter beside the project (chapter 06 does) must not
# make them use this app instead. (beat and the worker make it current in
# their own processes.)
app = Celery("demo_tasks.periodic", broker=REDIS_URL, set_as_current=False)

# Keep retrying the broker connection while the worker starts (Celery 5 warns otherwise).
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-connection-retry-on-startup
app.conf.broker_connection_retry_on_startup = True

# Cron-style entries are evaluated in this time zone (Celery's default is UTC).
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#timezone
app.conf.timezone = "Asia/Shanghai"

# https://docs.celeryq.dev/en/stable/userguide/periodic-tasks.html#entries
app.conf.beat_schedule = {
    # An interval: every second, counted from when beat starts.
    "tick-every-second": {
        "task": "demo_tasks.periodic.tick",
        "schedule": 1.0,
        "args": ("every-second",),
        # A run that waited longer than this in the queue (no worker running)
        # is dropped instead of executed late: the next one is coming anyway.
        "options": {"expires": 10},
    },
    # A crontab: at second 0 of every minute (minute="*"), on the wall clock.
    "tick-every-minute": {
        "task": "demo_tasks.periodic.tick",
        "schedule": crontab(minute="*"),
        "args": ("every-minute",),
    },
}

_client = None


def ticks_client() -> redis.Redis:
    """A Redis client for the app's broker (one per process, made on first use)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(app.conf.broker_url, decode_responses=True)
    return _client


@app.task(ignore_result=True)
def tick(label: str) -> int:
    """Record one run: append {"label", "at"} to the list TICKS_KEY.

    Returns how many records the list now holds. The record itself is the
    result, so nothing is stored in the result backend (ignore_result)."""
    return ticks_client().rpush(TICKS_KEY, json.dumps({"label": label, "at": time.time()}))


def read_ticks(client: redis.Redis | None = None) -> list[dict]:
    """Every record ``tick`` has left so far, oldest first."""
    client = client or ticks_client()
    return [json.loads(item) for item in client.lrange(TICKS_KEY, 0, -1)]
