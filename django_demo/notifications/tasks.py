"""The notification tasks: one notification, one message, by mail, to a DingTalk
group or to the internal webhook. Each takes the notification's id (ids, not
objects, travel in messages), makes one attempt, and leaves the retrying to
delivery.attempt(): retry what may pass, with a growing wait, up to
NOTIFY_MAX_RETRIES times; never what will fail the same way again. Every attempt
is one line in the worker's log and one entry in the row's history.

Duplicates, honestly: a retry after a timeout may send something that had
already arrived (the answer was lost, not the message). Where the receiver can
tell -- the mail's Message-ID, the webhook's Idempotency-Key -- it drops the
copy. A DingTalk group cannot: there the caller chooses (``policy``) between
"at-least-once" (plain retries; maybe twice) and "at-most-once" (a claim in
Redis before the first send, never released; never twice, maybe never).
"""

from __future__ import annotations

from datetime import date, timedelta

import redis
from celery import shared_task
from celery.exceptions import Ignore
from celery.utils.log import get_task_logger
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from demo_tasks.idempotency import DONE_TTL, claim
from reports import daily

from . import dingtalk, webhooks
from .delivery import NotificationFailed, PermanentFailure, Verdict, attempt
from .mail import build_message, send_or_classify, stable_message_id
from .models import Notification

logger = get_task_logger(__name__)

#: How long an at-most-once claim is kept: far longer than all the retries of one message take.
CLAIM_TTL = DONE_TTL
#: Options of every notification task. throws: a NotificationFailed is an expected end (the
#: row and the attempts' log lines say why); the task is FAILURE all the same, but the worker
#: logs it in one line at INFO, without a traceback, as it does for "raised expected".
#: https://docs.celeryq.dev/en/stable/userguide/tasks.html#Task.throws
OPTIONS = {"bind": True, "throws": (NotificationFailed,)}


def _load(notification_id: str) -> Notification:
    """The row, if there is still something to do for it (it is pending: new, or set
    pending again by the admin's «重新发送»); else the run is ignored (a message
    delivered twice, or a row deleted meanwhile): Celery stores nothing for it."""
    notification = Notification.objects.filter(pk=notification_id).first()
    if notification is None:
        logger.warning("notification %s does not exist (deleted?): nothing to send", notification_id)
        raise Ignore()
    if notification.status in Notification.TERMINAL:
        logger.info("notification %s is already %s: not sending it again", notification_id, notification.status)
        raise Ignore()
    return notification


def _label(notification: Notification) -> str:
    return f"notification {notification.pk} via {notification.channel}"


def _note_when_sent(notification: Notification, history: list[dict]) -> str:
    """What is worth knowing about a success after failed attempts (the row's reason).
    Only this send's attempts count: those after the last «重新发送» ("resent")."""
    resent = [n for n, entry in enumerate(history) if entry["outcome"] == "resent"]
    if resent:
        history = history[resent[-1] + 1:]
    earlier = [entry for entry in history[:-1] if entry["outcome"] == "retry"]
    if "duplicate" in history[-1]["detail"]:
        return "重试时接收方认出了同一个 Idempotency-Key：消息只投递了一次。"
    if not earlier:
        return ""
    if notification.channel == Notification.Channel.EMAIL:
        return (f"重试过 {len(earlier)} 次。每次的 Message-ID 相同：即使服务器收到了不止一封，"
                "按 Message-ID 去重的邮件客户端也只显示一封。")
    timed_out = any("no answer within" in entry["detail"] for entry in earlier)
    if notification.channel == Notification.Channel.DINGTALK and timed_out:
        return "有一次尝试等回答超时了，但钉钉可能已经发出了那条消息：群里可能有两条（至少一次投递）。"
    return f"重试过 {len(earlier)} 次。"


def _recorder(notification: Notification):
    """record() for delivery.attempt(): each verdict appended to the row, and its state updated."""

    def record(verdict: Verdict) -> None:
        now = timezone.now()
        with transaction.atomic():
            row = Notification.objects.get(pk=notification.pk)
            row.history = [*row.history, {"attempt": verdict.attempt, "at": now.isoformat(),
                                          "outcome": verdict.outcome, "detail": verdict.detail}]
            row.attempts = verdict.attempt
            if verdict.outcome == "sent":
                row.status, row.sent_at = Notification.Status.SENT, now
                row.reason = _note_when_sent(row, row.history)
            else:
                row.reason = verdict.reason[:500]
                if verdict.outcome == "failed":
                    row.status = Notification.Status.FAILED
            row.save(update_fields=["history", "attempts", "status", "sent_at", "reason"])

    return record


@shared_task(**OPTIONS)
def send_email_notification(self, notification_id: str) -> str:
    """Mail the notification to its recipient through EMAIL_BACKEND (SMTP from the
    environment, EMAIL_TIMEOUT). Every attempt sends the same Message-ID."""
    notification = _load(notification_id)

    def send() -> str:
        message = build_message(notification)
        message_id = message.extra_headers["Message-ID"]
        Notification.objects.filter(pk=notification.pk).update(message_id=message_id)   # before it goes out
        send_or_classify(message)
        return f"sent to {notification.recipient}, Message-ID {message_id}"

    return attempt(self, _label(notification), send, _recorder(notification))


def _claim_first(notification: Notification) -> bool:
    """At-most-once: claim "dingtalk:ID" in Redis (SET NX, chapter 07's claim()), never
    released. True only for the first attempt that asks, whatever became of it."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5)
    try:
        return claim(client, f"dingtalk:{notification.pk}", CLAIM_TTL)
    finally:
        client.close()


#: DingTalk takes 20 messages a minute from one robot, then throttles it for 10 minutes.
DINGTALK_RATE_LIMIT = "20/m"


@shared_task(**OPTIONS, rate_limit=DINGTALK_RATE_LIMIT)
def send_dingtalk(self, notification_id: str, policy: str = Notification.Delivery.AT_LEAST_ONCE) -> str:
    """Post the notification to the DingTalk group (DINGTALK_WEBHOOK_URL, signed with
    DINGTALK_SECRET on every attempt), delivered ``policy``: "at-least-once" or
    "at-most-once" (see the module's docstring).

    ``rate_limit="20/m"``: DingTalk's limit for one robot. Celery's rate limit is per
    worker (chapter 08): right with one worker; with several, count in Redis, or send
    one markdown summary of many alerts (DingTalk's own advice). A robot that
    answers errcode 130101 (too fast) anyway is retried after 10 minutes at least."""
    notification = _load(notification_id)
    if notification.delivery != policy and policy in Notification.Delivery.values:
        Notification.objects.filter(pk=notification.pk).update(delivery=policy)
    content = f"{notification.subject}\n{notification.body}" if notification.subject else notification.body

    def send() -> str:
        if policy not in Notification.Delivery.values:
            raise PermanentFailure(f"unknown delivery policy {policy!r}", f"use one of {Notification.Delivery.values}",
                                   f"不认识的投递方式 {policy!r}")
        at_most_once = policy == Notification.Delivery.AT_MOST_ONCE
        if at_most_once and settings.DINGTALK_WEBHOOK_URL and not _claim_first(notification):
            raise PermanentFailure(
                "at-most-once: not sent again",
                f"an earlier attempt claimed dingtalk:{notification.pk}; it may or may not have arrived",
                "至多一次：之前的一次尝试已经认领了这条消息，这次不再发送；那次可能送达了，也可能丢了")
        return "posted to the group: " + dingtalk.send_text(content)

    return attempt(self, _label(notification), send, _recorder(notification))


@shared_task(**OPTIONS)
def post_webhook(self, notification_id: str) -> str:
    """POST the notification to the internal webhook (NOTIFY_WEBHOOK_URL) with the
    header Idempotency-Key: notification-ID, the same on every attempt."""
    notification = _load(notification_id)
    return attempt(self, _label(notification), lambda: webhooks.post_to_hook(notification), _recorder(notification))


def task_for(notification: Notification) -> tuple:
    """The task that delivers ``notification``, and its arguments (the view sends it)."""
    if notification.channel == Notification.Channel.EMAIL:
        return send_email_notification, (str(notification.pk),)
    if notification.channel == Notification.Channel.DINGTALK:
        return send_dingtalk, (str(notification.pk), notification.delivery)
    if notification.channel == Notification.Channel.WEBHOOK:
        return post_webhook, (str(notification.pk),)
    raise NotificationFailed(f"unknown channel {notification.channel!r}")


# --- The daily report, mailed by beat ----------------------------------------------

@shared_task(**OPTIONS)
def mail_daily_report(self, day: str | None = None) -> str:
    """Mail the daily report of ``day`` ("YYYY-MM-DD"; default: yesterday in TIME_ZONE,
    the last whole day when beat sends it in the morning) to REPORT_MAIL_TO, the
    workbook attached. The rules of the notification mails: a Message-ID that stays
    the same for every retry of this task, <daily-report-DAY-TASKID@...> (a deliberate
    re-send, e.g. after the day's data was corrected, is a new task and so a new
    message: RFC 5322 gives each version of a message its own id), a retry with a
    growing wait for what may pass (the SMTP server down, 4xx), none for what will
    not (5xx, no recipients)."""
    try:
        when = date.fromisoformat(day) if day else timezone.localdate() - timedelta(days=1)
    except (TypeError, ValueError):
        raise NotificationFailed(f"day={day!r} is not a date: give it as YYYY-MM-DD, e.g. 2026-12-07") from None
    label = f"daily report {when.isoformat()} by mail"

    def send() -> str:
        recipients = settings.REPORT_MAIL_TO
        if not recipients:
            raise PermanentFailure("REPORT_MAIL_TO is empty", "nobody to send the daily report to",
                                   "没有设置 REPORT_MAIL_TO（日报的收件人），日报没有发出")
        message = EmailMessage(
            subject=f"报表日报 {when.isoformat()}",
            body=daily.mail_summary(when),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=recipients,
            # The task's id: the same for each retry of this send, new for the next send.
            headers={"Message-ID": stable_message_id(f"daily-report-{when.isoformat()}-{self.request.id}")},
        )
        message.attach(daily.filename(when), daily.build_daily_workbook(when), daily.CONTENT_TYPE)
        send_or_classify(message)
        return f"sent to {', '.join(recipients)}, Message-ID {message.extra_headers['Message-ID']}"

    return attempt(self, label, send)
