"""Retries, counted, through a real worker (a thread of this process).

The internal webhook answers 503, 503, then 200 (`responses` answers for it: it
patches requests for the whole process, the worker thread included). The task
must retry twice -- two more messages, each sent with a countdown -- and then
succeed: three HTTP calls with the same Idempotency-Key, two task_retry signals,
three entries in the notification's history.

The waits between attempts come from the project's settings (NOTIFY_RETRY_DELAY,
doubled each time); here they are made tiny with pytest-django's ``settings``
fixture -- the settings are read when the task runs, in this process -- and the
random part is switched off (NOTIFY_RETRY_JITTER) so the waits are known.
"""

from __future__ import annotations

import pytest
import responses
from celery.signals import task_retry

from notifications.models import Notification
from notifications.tasks import post_webhook

pytestmark = pytest.mark.worker

HOOK_URL = "https://hooks.example.test/notify"


@pytest.fixture
def retries():
    """The retries the worker makes while the test runs: Celery's task_retry signal."""
    seen = []

    def record(sender, request, reason, **kwargs):
        seen.append({"task": sender.name, "id": request.id, "retries": request.retries, "reason": str(reason)})

    task_retry.connect(record, weak=False)
    yield seen
    task_retry.disconnect(record)


def test_two_retries_then_success(celery_worker, settings, django_user_model, retries):
    settings.NOTIFY_WEBHOOK_URL = HOOK_URL
    settings.NOTIFY_RETRY_DELAY = 0.05        # then 0.1 s: the second wait is twice the first
    settings.NOTIFY_RETRY_JITTER = False
    user = django_user_model.objects.create_user("alice")
    sent = Notification.objects.create(owner=user, channel=Notification.Channel.WEBHOOK,
                                       subject="Disk full", body="/var is at 97 %")

    with responses.RequestsMock() as hook:
        # Answers in this order, one per request.
        hook.post(HOOK_URL, status=503, body="upstream busy")
        hook.post(HOOK_URL, status=503, body="upstream busy")
        hook.post(HOOK_URL, status=200, json={"ok": True})
        result = post_webhook.delay(str(sent.pk))
        assert result.get(timeout=20) == f"HTTP 200, delivered (Idempotency-Key notification-{sent.pk})"
        # Three calls, one key: the receiver can tell the retries are one notification.
        # (Inside the block: when it ends, responses forgets its calls.)
        assert len(hook.calls) == 3
        assert {call.request.headers["Idempotency-Key"] for call in hook.calls} == {f"notification-{sent.pk}"}

    # Two retries of the same task id, the first with retries=0, the second with retries=1.
    assert [(r["task"], r["id"], r["retries"]) for r in retries] == [
        ("notifications.tasks.post_webhook", result.id, 0), ("notifications.tasks.post_webhook", result.id, 1)]
    assert [r["reason"] for r in retries] == ["Retry in 0.05s", "Retry in 0.1s"]   # the wait doubles
    # The row: what the admin page shows.
    sent.refresh_from_db()
    assert (sent.status, sent.attempts) == (Notification.Status.SENT, 3)
    assert [entry["outcome"] for entry in sent.history] == ["retry", "retry", "sent"]
    assert sent.reason == "重试过 2 次。"
