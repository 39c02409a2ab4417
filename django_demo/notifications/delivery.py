"""What the notification tasks share: how a failed attempt is told apart (worth
trying again or not), how long to wait before the next one, and the one loop
that decides between sending again, giving up, and reporting (chapter 07's rules:
retry what can succeed later, never what will fail the same way again).

Each channel (mail.py, dingtalk.py, webhooks.py) turns what went wrong into a
``TemporaryFailure`` (a server down, a timeout, SMTP 4xx, HTTP 5xx, DingTalk's
"too fast" and "busy" errcodes: later may work) or a ``PermanentFailure`` (SMTP
5xx, HTTP 4xx, DingTalk's other errcodes, a missing setting: the same request
fails the same way again). ``attempt()`` runs
one attempt inside a task and does the rest.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from celery.utils.log import get_task_logger
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

logger = get_task_logger(__name__)


class DeliveryError(Exception):
    """One attempt failed. ``what`` says what failed (English, for logs and the task's
    result), ``detail`` the server's own answer or the error ("550 5.1.1 No such user
    here"), ``reason`` the same for a person reading the page (Chinese)."""

    def __init__(self, what: str, detail: str, reason: str):
        super().__init__(f"{what}: {detail}")
        self.what, self.detail, self.reason = what, detail, reason


class TemporaryFailure(DeliveryError):
    """May succeed later: retried, with a growing wait, up to NOTIFY_MAX_RETRIES times.
    ``at_least``: the shortest wait that makes sense (seconds), when the receiver said how
    long it needs (DingTalk's rate limit: 10 minutes); the retry waits max(backoff, at_least)."""

    def __init__(self, what: str, detail: str, reason: str, at_least: float = 0):
        super().__init__(what, detail, reason)
        self.at_least = at_least


class PermanentFailure(DeliveryError):
    """Will fail the same way again: never retried."""


class NotificationFailed(Exception):
    """The task's own failure: the last attempt's error, in words a person reads
    (the task ends in FAILURE with this message in its result)."""


def backoff(retries: int) -> float:
    """Seconds to wait before retry number ``retries + 1``: NOTIFY_RETRY_DELAY, then
    twice as long each time, never more than NOTIFY_RETRY_MAX_DELAY (Celery's own
    get_exponential_backoff_interval, the one its ``retry_backoff`` option uses,
    chapter 07). With NOTIFY_RETRY_JITTER (the default) the wait is a random one
    between half of that and all of it ("equal jitter"), so that many notifications
    that failed together do not all come back at the same moment. Not Celery's "full
    jitter" (between 0 and the wait): a retry drawn at 0 s can run and succeed before
    the attempt that sent it has stored its RETRY state, and the result backend of
    this project (django-db) then keeps that RETRY over the SUCCESS for good -- unlike
    Celery's Redis backend, django-celery-results does not protect a stored SUCCESS.
    Chapter 09 turns the jitter off so that its log shows the schedule as configured."""
    wait = get_exponential_backoff_interval(settings.NOTIFY_RETRY_DELAY, retries, settings.NOTIFY_RETRY_MAX_DELAY)
    return random.uniform(wait / 2, wait) if settings.NOTIFY_RETRY_JITTER else wait


@dataclass(frozen=True)
class Verdict:
    """What became of one attempt, as attempt() reports it to ``record``."""

    outcome: str           # "sent", "retry" or "failed"
    attempt: int           # 1, 2, ...
    attempts: int          # 1 + NOTIFY_MAX_RETRIES: the most there can be
    detail: str            # what happened (the server's answer, the error)
    reason: str = ""       # for a person (Chinese): why it failed, or what to know about it
    countdown: float = 0   # "retry": seconds until the next attempt


def attempt(task, label: str, send: Callable[[], str], record: Callable[[Verdict], None] | None = None) -> str:
    """Run one attempt, ``send()``, inside the bound task ``task``, and decide what follows.

    ``send()`` returns a short description of what was delivered, or raises a
    DeliveryError. Sent: the description is returned. A TemporaryFailure with
    retries left: ``task.retry()`` after backoff() seconds (raises Retry). A
    PermanentFailure, or a TemporaryFailure on the last attempt: NotificationFailed.
    Anything else (a bug, the database) is recorded as a failure too, and raised as it is.
    Exactly one log line per attempt, starting with ``label`` (e.g. "notification
    UUID via email"), and ``record(verdict)`` before the task moves on (the row)."""
    number, most = task.request.retries + 1, settings.NOTIFY_MAX_RETRIES + 1
    try:
        done = send()
    except TemporaryFailure as exc:
        if number < most:
            countdown = max(backoff(task.request.retries), exc.at_least)
            logger.warning("%s: attempt %d of %d failed, retry in %g s: %s", label, number, most, countdown, exc)
            if record:
                record(Verdict("retry", number, most, exc.detail, f"{exc.reason}（{countdown:g} 秒后重试）",
                               countdown))
            raise task.retry(countdown=countdown, max_retries=settings.NOTIFY_MAX_RETRIES) from None
        message = f"{exc.what} after {number} attempts: {exc.detail}"
        logger.error("%s: attempt %d of %d failed, giving up: %s", label, number, most, message)
        if record:
            record(Verdict("failed", number, most, exc.detail, f"{exc.reason}（共尝试 {number} 次，不再重试）"))
        raise NotificationFailed(message) from None
    except PermanentFailure as exc:
        logger.error("%s: attempt %d of %d failed for good (not retried): %s", label, number, most, exc)
        if record:
            record(Verdict("failed", number, most, exc.detail, f"{exc.reason}（不会重试：再试也一样）"))
        raise NotificationFailed(str(exc)) from None
    except Exception as exc:
        # A bug or a surprise (the database, Redis): the row must not stay "pending" for
        # ever. The traceback goes to the worker's log; the task fails with the exception.
        logger.exception("%s: attempt %d of %d failed unexpectedly", label, number, most)
        if record:
            record(Verdict("failed", number, most, f"{type(exc).__name__}: {exc}",
                           f"发送时出了意料之外的错误（{type(exc).__name__}），详情在 worker 的日志里"))
        raise
    logger.info("%s: attempt %d of %d: %s", label, number, most, done)
    if record:
        record(Verdict("sent", number, most, done))
    return done
