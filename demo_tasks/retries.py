"""Chapter 07's app: tasks that fail, retry, run out of time, or are called badly.

Most tasks here call the course's flaky service (``services/flaky_service.py``,
started by ``launcher.start_flaky_service()``): a small HTTP server that fails
on purpose -- 503, a request that hangs past the client's timeout, or a slow
answer -- decided by a seeded hash of (task id, attempt), so a given call
fails the same way on every run. Start a worker for this module with::

    celery -A demo_tasks.retries worker --loglevel=info

(``-A demo_tasks.retries`` finds the ``app`` below: this chapter's own app.)
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import redis
import requests
from celery import Celery, Task
from celery.contrib import rdb
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded
from celery.signals import task_failure
from celery.utils.log import get_task_logger

# As in tasks.py: the article's server unless REDIS_URL names another.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1")

# set_as_current=False: importing this module beside another app (a notebook
# that also uses Django, a test) must not change which app @shared_task uses.
app = Celery("demo_tasks.retries", broker=REDIS_URL, backend=REDIS_URL, set_as_current=False)

# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-connection-retry-on-startup
app.conf.broker_connection_retry_on_startup = True
# STARTED is recorded only when asked for: without it a running task shows PENDING.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-track-started
app.conf.task_track_started = True
# Results expire after an hour (Redis deletes them itself): enough for a chapter.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-expires
app.conf.result_expires = 3600

logger = get_task_logger(__name__)

#: How long a task waits for the flaky service before it gives up on a call.
CALL_TIMEOUT = 1.0
#: The Redis list where the task_failure handler leaves a record of every failure.
FAILURES_KEY = "demo:failures"
#: The Redis list where the error callback (link_error) leaves its records.
ERRBACKS_KEY = "demo:errbacks"


# --- Calling the flaky service --------------------------------------------------

class ServiceError(Exception):
    """The service did not give us an answer we can use."""


class ServiceUnavailable(ServiceError):
    """HTTP 503: the service is overloaded or restarting. Worth trying again later."""


class ServiceTimeout(ServiceError):
    """No answer within CALL_TIMEOUT seconds. Worth trying again later."""


class ClientError(ServiceError):
    """HTTP 4xx: our request is wrong (a missing item, bad input). Trying again gives the same answer."""


def call_service(url: str, call: str, attempt: int, timeout: float = CALL_TIMEOUT,
                 idempotency_key: str | None = None) -> dict:
    """One call: GET url?task=CALL&attempt=N. Returns the service's JSON, or raises
    one of the ServiceError classes (the caller decides which to retry).
    ``call``: the id the service decides its answer by (and records as "task"); a task
    passes its own id, or the logical call's id when it was given one.
    ``idempotency_key``: sent as the Idempotency-Key header; the service does the
    work once per key and answers later calls with the same key from its record."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    try:
        reply = requests.get(url, params={"task": call, "attempt": attempt}, headers=headers,
                             timeout=timeout)
    except requests.Timeout as exc:
        raise ServiceTimeout(f"no answer from {url} within {timeout:g} s") from exc
    except requests.ConnectionError as exc:
        raise ServiceUnavailable(f"cannot connect to {url}") from exc
    if reply.status_code == 503:
        raise ServiceUnavailable(f"{url} answered 503")
    if 400 <= reply.status_code < 500:
        raise ClientError(f"{url} answered {reply.status_code}")
    reply.raise_for_status()
    return reply.json()


# --- Without and with retries -----------------------------------------------------

# ``call`` below: the logical call's id, which decides the flaky service's answers, so the
# chapter can send the same calls again under new task ids. A task id is used once: a
# process that reuses one can be handed the result Celery buffered for the earlier task.

@app.task(bind=True)
def fetch_once(self, url: str, call: str | None = None) -> dict:
    """One call, no retry: any failure of the service is the task's failure."""
    return call_service(url, call or self.request.id, self.request.retries)


#: The retry policy of fetch_with_retries, shown by the chapter.
RETRY_POLICY = {
    # Retry only what may succeed later: 503 and timeouts, not a 4xx.
    "autoretry_for": (ServiceUnavailable, ServiceTimeout),
    # Wait 1, 2, 4, ... seconds before retry 1, 2, 3, ...: 2 ** self.request.retries,
    # which counts from 0 (celery/app/autoretry.py) ...
    "retry_backoff": True,
    # ... but never more than 8 seconds ...
    "retry_backoff_max": 8,
    # ... exactly (jitter off here, so the chapter can draw Celery's schedule;
    # leave it on, the default, in production: see the chapter) ...
    "retry_jitter": False,
    # ... and give up after 3 retries (4 attempts): the last error is the task's.
    "max_retries": 3,
}


@app.task(bind=True, **RETRY_POLICY)
def fetch_with_retries(self, url: str, call: str | None = None) -> dict:
    """The same call, retried by Celery on 503 and timeouts (RETRY_POLICY)."""
    return call_service(url, call or self.request.id, self.request.retries)


@app.task(bind=True, max_retries=3)
def fetch_manual_retry(self, url: str, countdown: float = 0.5, call: str | None = None) -> dict:
    """Retrying by hand: self.retry() decides when, and which errors, itself."""
    try:
        return call_service(url, call or self.request.id, self.request.retries)
    except (ServiceUnavailable, ServiceTimeout) as exc:
        logger.warning("attempt %d failed (%s); retrying in %g s", self.request.retries, exc, countdown)
        # raise: retry() raises Retry, which tells the worker this run is not a failure.
        # After max_retries, it raises exc instead: the task fails with the service's error.
        raise self.retry(exc=exc, countdown=countdown) from exc


# --- Idempotent calls, and retry options beyond autoretry_for ---------------------------

@app.task(bind=True, **RETRY_POLICY)
def fetch_idempotent(self, url: str, call: str | None = None) -> dict:
    """fetch_with_retries, made idempotent: every attempt sends the same key, so a retry
    after a timeout cannot make the service do it twice. The key is ``call``, the logical
    call's id (an order number, say), or else the task's id (a retry keeps its id)."""
    call = call or self.request.id
    return call_service(url, call, self.request.retries, idempotency_key=call)


class RetryLoggingTask(Task):
    """A base class whose on_retry runs in the worker each time a task of it asks for a retry."""

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        logger.warning("on_retry: %s[%s] will retry after %r", self.name, task_id, exc)


@app.task(bind=True, base=RetryLoggingTask,
          # Every ServiceError is retried ...
          autoretry_for=(ServiceError,),
          # ... except a ClientError (a 4xx), although it is a ServiceError too.
          dont_autoretry_for=(ClientError,),
          # The arguments of the retry() autoretry calls: at most 2 retries, 0.2 s apart.
          retry_kwargs={"max_retries": 2, "countdown": 0.2})
def fetch_by_family(self, url: str, call: str | None = None) -> dict:
    """Retry a whole family of errors but one (dont_autoretry_for), with retry_kwargs and on_retry."""
    return call_service(url, call or self.request.id, self.request.retries)


@app.task(bind=True, autoretry_for=(Exception,), max_retries=None, default_retry_delay=0.2)
def fetch_report(self, url: str) -> dict:
    """A colleague's task with a bug to find (chapter 07, exercise 3): every error is retried,
    forever, 0.2 s apart -- a 404 too."""
    return call_service(url, self.request.id, self.request.retries)


# --- Failing tasks -------------------------------------------------------------------

@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def divide(x: float, y: float) -> float:
    """Fails when y == 0: ZeroDivisionError is stored as the result."""
    return x / y


@app.task
def sleep(seconds: float) -> float:
    """Takes its time: for get(timeout=...), revoke and expires."""
    time.sleep(seconds)
    return seconds


# --- Time limits ------------------------------------------------------------------------

@app.task(bind=True, soft_time_limit=1)
def soft_limited(self, seconds: float) -> str:
    """Works for `seconds`; after 1 s the worker raises SoftTimeLimitExceeded
    inside it, and the task cleans up its half-written file before it gives up."""
    partial = Path(tempfile.gettempdir()) / f"soft-limited-{self.request.id}.part"
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with partial.open("a") as f:
                f.write("a line of a long export\n")
            time.sleep(0.05)
    except SoftTimeLimitExceeded:
        partial.unlink(missing_ok=True)
        logger.warning("soft time limit: removed %s", partial.name)
        return f"stopped after the soft limit, {partial.name} removed: {not partial.exists()}"
    partial.unlink(missing_ok=True)
    return f"done in {seconds:g} s"


@app.task(time_limit=1)
def hard_limited(seconds: float) -> str:
    """After 1 s the pool process running it is killed (SIGKILL): no cleanup runs."""
    time.sleep(seconds)
    return f"done in {seconds:g} s"


# --- Debugging a task where it runs --------------------------------------------------

@app.task
def debug_me(order_id: int) -> int:
    """Stops at a breakpoint inside the worker: the worker's log says where to connect."""
    total = order_id * 3
    # Logs "Remote Debugger:6902: Ready to connect: telnet 127.0.0.1 6902" (a free port from 6900 up), then waits.
    rdb.set_trace()
    return total


# --- Ignore, Reject, a base class, error callbacks, the task_failure signal -----------

@app.task(bind=True)
def ignored(self) -> None:
    """Ignore: the worker stores no state for this run: the result keeps its last one
    (STARTED here, where task_track_started is on; PENDING without it)."""
    raise Ignore()


@app.task(bind=True, acks_late=True)
def rejected(self, requeue: bool = False) -> None:
    """Reject: the message is handed back to the broker; requeue=True puts it back in
    the queue, where the same worker takes it again: a loop, if the cause stays."""
    raise Reject("this message cannot be processed", requeue=requeue)


class ReportingTask(Task):
    """A base class: on_failure runs in the worker after any failure of a task that uses it."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        logger.error("ReportingTask.on_failure: %s[%s] failed: %r", self.name, task_id, exc)


@app.task(base=ReportingTask)
def parse_amount(text: str) -> float:
    """A validation error: bad input, retrying will not help."""
    return float(text)


@app.task
def record_error(request, exc, traceback) -> None:
    """An error callback (link_error): Celery calls it with the failed task's
    request, exception and traceback text, in the worker."""
    _redis().rpush(ERRBACKS_KEY, json.dumps({"task": request.task, "id": request.id,
                                             "error": f"{type(exc).__name__}: {exc}"}))


@task_failure.connect
def remember_failure(sender=None, task_id=None, exception=None, **_):
    """The task_failure signal: one place, in the worker, that sees every failure of
    every task (where a team's own error reporting can hook in; the old raven client
    did; Sentry's SDK wraps the task call instead, by patching celery.app.trace.build_tracer)."""
    if sender is not None and sender.app is app:
        _redis().rpush(FAILURES_KEY, json.dumps({"task": sender.name, "id": task_id,
                                                 "error": type(exception).__name__}))


def _redis() -> redis.Redis:
    return redis.Redis.from_url(app.conf.broker_url, decode_responses=True)


def read_records(key: str) -> list[dict]:
    """The records the signal handler (FAILURES_KEY) or the error callback (ERRBACKS_KEY) left."""
    return [json.loads(item) for item in _redis().lrange(key, 0, -1)]
