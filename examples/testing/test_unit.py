"""Unit tests: a task's code, called in the test process. No broker, no worker.

Calling a task object runs its function here and now, like any function:

- ``task(...)`` (Task.__call__) pushes a fresh request -- no task id, no retries --
  runs the function, and pops the request;
- ``task.run(...)`` is the function itself (for ``bind=True``, ``self`` is the task
  already). It sees whatever request is current, so a test can push one first with
  the id and retry count it needs: ``task.push_request(id=..., retries=...)``.

Neither sends a message, stores a result or retries: ``self.retry()`` in a task
called like this raises ``celery.exceptions.Retry`` for the test to see (without
``exc=``; ``retry(exc=...)``, as autoretry_for calls it, raises that exception). What lies
outside the project is replaced where it is outside: HTTP with ``responses`` (no
server), e-mail with Django's in-memory backend (pytest-django's ``mailoutbox``).
The database is real (pytest-django's test database, ``db``).
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import responses
import time_machine
from celery.exceptions import Ignore, Retry
from celery.utils import uuid

from notifications.delivery import NotificationFailed
from notifications.models import Notification
from notifications.tasks import post_webhook, send_email_notification
from reports.models import Report
from reports.tasks import generate_report, heartbeat

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

HOOK_URL = "https://hooks.example.test/notify"
BEIJING = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice")


@pytest.fixture
def hook(settings):
    """The internal webhook, answered by `responses` instead of a server: every
    requests call in this test goes to it (a URL it was not told about raises
    ConnectionError), and it checks at the end that every answer it was given was used."""
    settings.NOTIFY_WEBHOOK_URL = HOOK_URL
    with responses.RequestsMock() as mocked:
        yield mocked


def notification(user, **fields) -> Notification:
    values = {"owner": user, "channel": Notification.Channel.WEBHOOK, "subject": "Disk full",
              "body": "/var is at 97 %"}
    return Notification.objects.create(**{**values, **fields})


def test_a_plain_call_runs_the_task_here():
    # The clock moved (time-machine), so the result is known. heartbeat returns
    # timezone.now(): UTC (USE_TZ), whatever CELERY_TIMEZONE says.
    with time_machine.travel(datetime(2026, 5, 4, 3, 0, tzinfo=BEIJING), tick=False):
        assert heartbeat() == "2026-05-03T19:00:00+00:00"


def test_a_plain_call_has_no_task_id(user):
    # generate_report works only for the task id the report names (a copy of a message
    # must not run it twice). A plain call has no id at all, so the task refuses.
    report = Report.objects.create(owner=user, title="plain call", rows=2, task_id=uuid())
    with pytest.raises(Ignore):
        generate_report(str(report.pk), step_seconds=0)
    report.refresh_from_db()
    assert report.status == Report.Status.PENDING


def test_run_with_a_pushed_request_builds_the_report(user, media_root):
    # run() with the request a worker would have given it: the report's own task id.
    report = Report.objects.create(owner=user, title="run()", rows=3, task_id=uuid())
    generate_report.push_request(id=report.task_id)
    try:
        relative = generate_report.run(str(report.pk), step_seconds=0)
    finally:
        generate_report.pop_request()
    report.refresh_from_db()
    assert (report.status, report.progress, report.file) == (Report.Status.DONE, 100, relative)
    with open(media_root / relative, newline="", encoding="utf-8") as f:
        assert list(csv.DictReader(f)) == [{"row": "1", "value": "1"}, {"row": "2", "value": "4"},
                                           {"row": "3", "value": "9"}]


def test_a_503_is_temporary_the_task_asks_for_a_retry(hook, user):
    sent = notification(user)
    hook.post(HOOK_URL, status=503, body="upstream busy")
    # A plain call cannot retry: Task.retry() without exc= raises Retry for the caller to see.
    # (With retry(exc=...), as autoretry_for calls it, a plain call raises that exception
    # itself instead: celery/app/task.py, Task.retry, `if request.called_directly`.)
    with pytest.raises(Retry):
        post_webhook(str(sent.pk))
    # The exact request: the JSON the receiver reads, and the Idempotency-Key by which it
    # drops a retry's copy (the same key on every attempt: notifications/webhooks.py).
    (call,) = hook.calls
    assert json.loads(call.request.body) == {"event": "notification", "text": "Disk full\n/var is at 97 %"}
    assert call.request.headers["Idempotency-Key"] == f"notification-{sent.pk}"
    assert call.request.headers["Content-Type"] == "application/json"
    sent.refresh_from_db()
    assert sent.status == Notification.Status.PENDING        # not failed: it will be tried again
    assert [entry["outcome"] for entry in sent.history] == ["retry"]
    assert sent.history[0]["detail"] == "HTTP 503 upstream busy"


def test_a_400_is_permanent_no_retry(hook, user):
    sent = notification(user)
    hook.post(HOOK_URL, status=400, json={"error": "unknown event"})
    # The same request would get the same answer: the task fails at once, for good.
    with pytest.raises(NotificationFailed, match="HTTP 400"):
        post_webhook(str(sent.pk))
    assert len(hook.calls) == 1
    sent.refresh_from_db()
    assert (sent.status, sent.attempts) == (Notification.Status.FAILED, 1)
    assert [entry["outcome"] for entry in sent.history] == ["failed"]


def test_the_mail_goes_out_with_a_stable_message_id(mailoutbox, user):
    # pytest-django makes EMAIL_BACKEND Django's locmem backend for every test: mails
    # land in mailoutbox (django.core.mail.outbox), nothing leaves the machine. That is
    # for unit tests; chapter 09 sends the same mails through a real SMTP server.
    sent = notification(user, channel=Notification.Channel.EMAIL, recipient="ops@example.com",
                        subject="<b>Disk</b> full")
    result = send_email_notification(str(sent.pk))
    (mail,) = mailoutbox
    assert mail.to == ["ops@example.com"]
    assert mail.subject == "<b>Disk</b> full"
    # The same Message-ID on every attempt, so a receiver shows a retry's copy once.
    assert mail.extra_headers["Message-ID"] == f"<notification-{sent.pk}@example.com>"
    (html, mimetype), = mail.alternatives
    assert mimetype == "text/html" and "&lt;b&gt;Disk&lt;/b&gt; full" in html   # escaped in the HTML part
    assert result == f"sent to ops@example.com, Message-ID <notification-{sent.pk}@example.com>"
    sent.refresh_from_db()
    assert (sent.status, sent.message_id) == (Notification.Status.SENT, mail.extra_headers["Message-ID"])
