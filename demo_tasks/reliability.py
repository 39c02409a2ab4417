"""Chapter 12's app: one task that writes down every start and every finish.

``work(seconds)`` stands for any real task (a charge, an e-mail, a report): it
records its start in a ledger, works for ``seconds``, and records its finish.
The ledger lives on the Redis the task's messages travel through, keyed by the
task's own id, so after a fault the chapter counts, for every task it sent,
how often it started and how often it finished: once, twice, or never (lost).

The settings that decide what a fault does are not written here: each worker
of the chapter gets them on its command line, after ``--`` (Celery reads
``section.name=value`` there as the setting ``section_name``)::

    celery -A demo_tasks.reliability worker --loglevel=INFO -- task.acks_late=true

is the same as ``app.conf.task_acks_late = True`` (in Django settings,
``CELERY_TASK_ACKS_LATE = True``), so each run shows what it changed.

What the app does set: Redis's visibility timeout and its sweep, shortened so
that a message a dead worker held comes back in seconds instead of an hour
(https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout).
"""

from __future__ import annotations

import json
import os
import time

import psutil
import redis
from celery import Celery
from celery.utils.log import get_task_logger

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1")

app = Celery("demo_tasks.reliability", broker=REDIS_URL, backend=REDIS_URL, set_as_current=False)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-connection-retry-on-startup
app.conf.broker_connection_retry_on_startup = True
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-track-started
app.conf.task_track_started = True
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-expires
app.conf.result_expires = 3600

#: How long a message may stay taken but unacknowledged before a worker puts it
#: back in the queue (kombu's default: 3600 s). Longer than any task of the chapter
#: waits and runs on a living worker (else it would run twice, chapter 07), short
#: enough that a dead worker's messages come back within seconds.
VISIBILITY_TIMEOUT = 10
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-transport-options
app.conf.broker_transport_options = {
    "visibility_timeout": VISIBILITY_TIMEOUT,
    "unacked_restore_interval": 1,   # default 10 s between two sweeps of the unacked messages
    "unacked_restore_throttle": 1,   # default 10: only every 10th sweep looks (about 100 s)
    "unacked_mutex_expire": 10,      # default 300 s: a sweep's lock, held by a killed worker, expires
}

logger = get_task_logger(__name__)

#: The ledger: hash id -> starts, hash id -> finishes, and a list of every step.
STARTED_KEY = "ledger:started"
FINISHED_KEY = "ledger:finished"
STEPS_KEY = "ledger:steps"
#: The ledger of leak(): one record per run, {"id", "pid", "rss_mb", "t"}.
MEMORY_KEY = "ledger:memory"


@app.task(bind=True)
def work(self, seconds: float) -> float:
    """Record the start, work ``seconds``, record the finish; return ``seconds``."""
    ledger = _redis()
    _record(ledger, self.request.id, "started", STARTED_KEY)
    logger.info("working %.1f s", seconds)
    time.sleep(seconds)  # the work: a call, a file, a query
    _record(ledger, self.request.id, "finished", FINISHED_KEY)
    return seconds


@app.task(bind=True)
def hold(self, key: str, timeout: float, at_least: float = 0.0) -> float:
    """A long task whose end the caller decides: work until something is pushed onto the
    list ``key`` (at most ``timeout`` s) and for ``at_least`` seconds in all; record the
    start and the finish like work()."""
    ledger = _redis()
    _record(ledger, self.request.id, "started", STARTED_KEY)
    started = time.monotonic()
    # A client of its own that waits as long as the BLPOP may (redis-py's default socket
    # timeout, 5 s, would end the wait early with a TimeoutError).
    waiter = redis.Redis.from_url(app.conf.broker_url, socket_timeout=timeout + 5)
    waiter.blpop([key], timeout=timeout)
    waiter.close()
    time.sleep(max(0.0, at_least - (time.monotonic() - started)))
    _record(ledger, self.request.id, "finished", FINISHED_KEY)
    return time.monotonic() - started


def _record(ledger: redis.Redis, task_id: str, what: str, counter: str) -> None:
    """The step and its count in one MULTI/EXEC: a reader never sees one without the other."""
    with ledger.pipeline() as pipe:  # a transaction
        pipe.rpush(STEPS_KEY, json.dumps({"id": task_id, "step": what, "pid": os.getpid(), "t": time.time()}))
        pipe.hincrby(counter, task_id, 1)
        pipe.execute()


def _redis() -> redis.Redis:
    return redis.Redis.from_url(app.conf.broker_url, decode_responses=True)


#: What leak() keeps, for as long as its process lives: an unbounded cache, a growing global.
_KEPT: list[bytes] = []


@app.task(bind=True)
def leak(self, mb: int) -> float:
    """Keep ``mb`` MB more in this process for good; record its resident memory (RSS) in
    the ledger and return it, in MB."""
    _KEPT.append(b"\x01" * (mb * 1024 * 1024))  # filled, so the pages are really resident
    rss = psutil.Process().memory_info().rss / 2**20
    ledger = _redis()
    ledger.rpush(MEMORY_KEY, json.dumps({"id": self.request.id, "pid": os.getpid(), "rss_mb": rss,
                                         "t": time.time()}))
    return rss
