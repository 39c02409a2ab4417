"""The report page (reports.views.create_report) queues generate_report once the
report's row is committed (apply_async_on_commit). Three ways to test that, from
the cheapest to the most complete:

1. unit: the view runs, the task's apply_async is a mock: what WOULD be sent;
2. worker: the message really goes to the broker (recorded by Celery's
   after_task_publish signal) and a worker thread really runs it;
3. integration: a real `celery worker` process and the test database file:
   log in, post the form, wait for the worker to write the report, download it.
"""

from __future__ import annotations

import time
from unittest import mock

import pytest
from celery.signals import after_task_publish

from reports.models import Report
from reports.tasks import generate_report

CSV = "row,value\r\n1,1\r\n2,4\r\n3,9\r\n"


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice")


@pytest.mark.unit
@pytest.mark.django_db
def test_the_task_is_queued_only_after_commit(client, user, django_capture_on_commit_callbacks):
    # pytest-django's `db` runs the test inside a transaction that is never committed,
    # so on_commit callbacks never run by themselves. django_capture_on_commit_callbacks
    # (execute=True) runs them when the block ends -- as a real commit would.
    client.force_login(user)
    with (mock.patch.object(generate_report, "apply_async") as send,     # records, sends nothing
          django_capture_on_commit_callbacks(execute=True) as callbacks):
        response = client.post("/", {"title": "unit", "rows": 3})
        send.assert_not_called()                 # the view has returned: still nothing sent
    assert len(callbacks) == 1                   # one task, queued for after the commit
    report = Report.objects.get()
    assert response.status_code == 302 and response.url == f"/reports/{report.pk}/"
    # The report's id as a string (ids travel in messages, not objects), and the task id
    # the view chose and saved on the row (the page and the task find each other by it).
    send.assert_called_once_with((str(report.pk),), task_id=report.task_id)


@pytest.fixture
def published():
    """The messages published while the test runs, as Celery's after_task_publish signal
    reports them: sent from this process, after the broker accepted them."""
    messages = []

    def record(sender, body, headers, routing_key, **kwargs):
        messages.append({"task": sender, "id": headers["id"], "args": body[0], "routing_key": routing_key})

    after_task_publish.connect(record, weak=False)
    yield messages
    after_task_publish.disconnect(record)


@pytest.mark.worker
def test_the_message_on_the_broker_and_the_worker_thread_runs_it(celery_worker, client, user, published,
                                                                 settings, media_root):
    # celery_worker: the plugin's worker in a thread of this process, on YOUR app
    # (conftest.py). The task runs here, so the `settings` fixture reaches it.
    settings.REPORT_STEP_SECONDS = 0.01
    client.force_login(user)
    # transactional_db (through celery_app): the view's transaction really commits,
    # and its on_commit callback really runs -- no capture needed.
    response = client.post("/", {"title": "worker", "rows": 3})
    report = Report.objects.get()
    assert response.status_code == 302
    celery_ping = [m for m in published if m["task"] == "celery.ping"]        # the fixture's start-up check
    assert [m for m in published if m not in celery_ping] == [{
        "task": "reports.tasks.generate_report", "id": report.task_id, "args": (str(report.pk),),
        "routing_key": celery_worker.app.conf.task_default_queue}]
    # The worker thread ran it: the result, through the result backend (django-db).
    relative = generate_report.AsyncResult(report.task_id).get(timeout=20)
    report.refresh_from_db()
    assert (report.status, report.file) == (Report.Status.DONE, relative)
    assert (media_root / relative).read_bytes().decode("utf-8") == CSV


@pytest.mark.integration
def test_a_real_worker_process_makes_the_report(real_worker, client, user):
    # real_worker: `celery -A django_demo worker` in a process of its own (conftest.py),
    # on the test database FILE. The request is the page's: log in, post the form.
    client.force_login(user)
    response = client.post("/", {"title": "integration", "rows": 3})
    report = Report.objects.get()
    assert response.status_code == 302 and response.url == report.get_absolute_url()
    # Wait -- with a deadline -- until the worker has written the report. The worker
    # process reads its REPORT_STEP_SECONDS (0.05) from its own environment.
    deadline = time.monotonic() + 30
    while report.status not in Report.TERMINAL:
        assert time.monotonic() < deadline, f"report still {report.status}; worker log:\n{real_worker.tail()}"
        time.sleep(0.1)
        report.refresh_from_db()
    assert report.status == Report.Status.DONE, real_worker.tail()
    # What the page's script polls, and the file it downloads.
    status = client.get(f"/reports/{report.pk}/status/").json()
    assert status == {"status": "done", "progress": 100, "message": None, "error_id": None,
                      "download_url": f"/reports/{report.pk}/download/", "retry_url": None}
    download = client.get(status["download_url"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content).decode("utf-8") == CSV
    # The worker's own log says it ran it: the line Celery writes when a task succeeds.
    assert real_worker.wait_for_log(f"reports.tasks.generate_report[{report.task_id}] succeeded")
