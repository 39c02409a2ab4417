"""What eager mode hides: the same naive test, run twice.

``task_always_eager = True`` makes ``delay()`` run the task at once, inside the
caller, and most tutorials stop there. Celery's own testing guide says it plainly:
eager mode is not a test of a task -- it emulates what a worker does, and leaves
out much of it. Each test below is written the way such a test usually is, and
runs twice, with the ``mode`` fixture:

- ``[eager]``: task_always_eager on (conftest.py's eager_mode, put back after the
  test). It passes -- the misleading green.
- ``[worker]``: a real ``celery -A django_demo worker`` process (conftest.py's
  real_worker). It fails, as production would. It is marked
  ``xfail(strict=True, raises=<that exception>, reason=<what really happens>)``:
  the report shows XFAIL with the reason; a different exception is a real
  failure; and if the difference ever disappears (XPASS), strict makes the run red.

One comparison goes the other way (eager mode makes a correct test fail: no result
is stored), one is shown in three tests (an exception nobody sees), and two things
are NOT differences: they pass both ways.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from celery.exceptions import TimeLimitExceeded
from celery.exceptions import TimeoutError as ResultTimeout
from celery.result import AsyncResult
from celery.utils import uuid
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import EncodeError

from conftest import NOWHERE_QUEUE
from reports.models import Report
from reports.tasks import ReportError, generate_report, heartbeat, report_exists

pytestmark = pytest.mark.eager


class Mode:
    """How the test's tasks run: "eager" (in the test, inside delay()) or "worker"."""

    def __init__(self, name, worker=None):
        self.name, self.worker = name, worker

    def rest_of_the_request(self, report):
        """A view goes on after delay(): it renders a page, saves more rows. Meanwhile a
        worker may already run the task. Here "the rest" lasts until the worker has
        looked for the row (its log says so), so the race is lost every time instead
        of now and then. In eager mode the task has already run, inside delay()."""
        if self.worker is not None:
            self.worker.wait_for_log(f"report {report.pk} visible to the worker")


@pytest.fixture
def mode(request, transactional_db):
    # transactional_db in both modes: the same test, the same database behaviour.
    if request.param == "eager":
        request.getfixturevalue("eager_mode")
        return Mode("eager")
    return Mode("worker", request.getfixturevalue("real_worker"))


def eager_then_worker(raises, reason):
    """Run the test in eager mode (it must pass), then against the worker process,
    where it must fail with ``raises`` (strict xfail, ``reason`` in the report)."""
    return pytest.mark.parametrize("mode", [
        "eager",
        pytest.param("worker", marks=pytest.mark.xfail(strict=True, raises=raises, reason=reason)),
    ], indirect=True)


BOTH_WAYS = pytest.mark.parametrize("mode", ["eager", "worker"], indirect=True)


@pytest.fixture
def user(django_user_model, transactional_db):
    return django_user_model.objects.create_user("alice")


@pytest.fixture
def pending_report(user):
    """A report waiting for its task, the task id chosen (as the view does)."""

    def make(rows: int = 2, fail_on_purpose: bool = False) -> Report:
        return Report.objects.create(owner=user, title="eager or not", rows=rows,
                                     fail_on_purpose=fail_on_purpose, task_id=uuid())

    return make


# --- (a) a task sent inside a transaction -------------------------------------------------

@eager_then_worker(AssertionError, "真实的 worker 在事务提交之前就执行了任务：它看不到这一行，返回 False"
                                   "（应当用 delay_on_commit / transaction.on_commit）")
def test_a_task_sent_inside_a_transaction_finds_its_row(mode, user):
    with transaction.atomic():
        report = Report.objects.create(owner=user, title="sent too early")
        result = report_exists.delay(str(report.pk))   # the mistake: sent before the commit
        mode.rest_of_the_request(report)
    # Eager mode ran the task inside delay(), in this transaction: it saw the row.
    assert result.get(timeout=15) is True


# --- (b) countdown and eta -------------------------------------------------------------

@eager_then_worker(AssertionError, "countdown=300：真实的 worker 五分钟后才执行，此刻还没有结果")
def test_a_reminder_sent_with_a_countdown_has_run(mode):
    result = heartbeat.apply_async(countdown=300)    # "in five minutes"; eager mode runs it now
    assert result.ready()


def test_the_worker_runs_it_when_the_countdown_is_over(real_worker):
    # What the worker really does: holds the message until its time, then runs it.
    sent_at = timezone.now()
    result = heartbeat.apply_async(countdown=1)
    assert not result.ready()
    ran_at = datetime.fromisoformat(result.get(timeout=15))   # heartbeat returns when it ran
    assert ran_at - sent_at >= timedelta(seconds=1)


# --- (c) time limits -------------------------------------------------------------------

@eager_then_worker(TimeLimitExceeded, "time_limit=0.3：真实的 worker（prefork）0.3 秒后结束这个任务，"
                                      "结果是 TimeLimitExceeded")
def test_a_slow_report_is_made(mode, pending_report):
    report = pending_report(rows=3)
    # 3 rows at 0.2 s: 0.6 s of work, with a hard time limit of 0.3 s.
    result = generate_report.apply_async((str(report.pk), 0.2), task_id=report.task_id, time_limit=0.3)
    assert result.get(timeout=15) == f"reports/report-{report.pk}-{report.task_id[:8]}.csv"


# --- (d) the result in the result backend (the other way round) ---------------------------

@pytest.mark.parametrize("mode", [
    pytest.param("eager", marks=pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason="eager 模式默认不把结果写进结果后端：按 id 查到的是 PENDING（task_store_eager_result=True 才写）")),
    pytest.param("eager", marks=pytest.mark.celery(task_store_eager_result=True), id="eager-stored"),
    "worker",
], indirect=True)
def test_the_result_can_be_looked_up_by_its_id(mode):
    # What a status page does: it has the task id only, and asks the result backend.
    result = heartbeat.delay()
    result.get(timeout=15)
    assert AsyncResult(result.id).state == "SUCCESS"


# --- (e) an exception nobody sees -------------------------------------------------------

def test_eager_a_failing_task_raises_nothing_until_get(eager_mode, pending_report):
    report = pending_report(rows=2, fail_on_purpose=True)
    result = generate_report.apply_async((str(report.pk), 0), task_id=report.task_id)  # no exception here
    assert result.failed()
    with pytest.raises(ReportError):        # only when someone asks for the result
        result.get()


@pytest.mark.celery(task_eager_propagates=True)
def test_eager_with_propagates_the_call_raises(eager_mode, pending_report):
    report = pending_report(rows=2, fail_on_purpose=True)
    with pytest.raises(ReportError, match="第 2 行出错"):
        generate_report.apply_async((str(report.pk), 0), task_id=report.task_id)


def test_the_worker_records_the_failure_and_logs_it(real_worker, pending_report):
    report = pending_report(rows=2, fail_on_purpose=True)
    result = generate_report.apply_async((str(report.pk), 0), task_id=report.task_id)  # no exception here either
    with pytest.raises(ReportError):       # the exception, rebuilt from the result backend
        result.get(timeout=15)
    stored = AsyncResult(report.task_id)
    assert stored.state == "FAILURE" and "ReportError" in stored.traceback
    report.refresh_from_db()
    assert (report.status, report.message) == (Report.Status.FAILED, "第 2 行出错（演示用的故意失败）。")
    # ... and the worker's log has the ERROR line, with the traceback after it.
    line = real_worker.wait_for_log(f"reports.tasks.generate_report[{report.task_id}] raised unexpected")
    assert "ERROR/" in line and "ReportError" in line


# --- (f) a route to a queue no worker consumes ---------------------------------------------

ROUTED_AWAY = pytest.mark.celery(task_routes={"reports.tasks.report_exists": {"queue": NOWHERE_QUEUE}})


@pytest.fixture
def nowhere(redis_client):
    """The queue nobody consumes, emptied after the test."""
    yield NOWHERE_QUEUE
    redis_client.delete(NOWHERE_QUEUE)


@ROUTED_AWAY
@eager_then_worker(ResultTimeout, "task_routes 把任务送到一个没有 worker 监听的队列：任务从不执行，get() 超时")
def test_a_routed_task_runs(mode, user, nowhere):
    report = Report.objects.create(owner=user, title="routed away")
    assert report_exists.delay(str(report.pk)).get(timeout=1) is True


@ROUTED_AWAY
def test_the_routed_message_waits_in_its_queue(real_worker, user, nowhere, redis_client):
    report = Report.objects.create(owner=user, title="routed away")
    routed = report_exists.delay(str(report.pk))
    # The worker is up and consuming ITS queue: a task sent there later is done ...
    assert heartbeat.delay().get(timeout=15)
    # ... while the routed one is PENDING ("unknown": nobody has reported anything about it)
    assert routed.state == "PENDING"
    # ... and its message is still in the other queue: a Redis list, one message long.
    assert redis_client.llen(nowhere) == 1
    message = json.loads(redis_client.lindex(nowhere, 0))
    assert (message["headers"]["task"], message["headers"]["id"]) == ("reports.tasks.report_exists", routed.id)


# --- NOT differences: the same both ways ------------------------------------------------------

@BOTH_WAYS
def test_an_object_as_argument_cannot_be_sent(mode, user):
    # Eager mode serializes the arguments as a real send does, with the task serializer
    # (JSON here), and loads them back: celery/app/task.py (Celery 5.7.0), Task.apply_async,
    # lines 736-751. A model instance is no JSON in either mode: pass its id.
    report = Report.objects.create(owner=user, title="an object")
    with pytest.raises(EncodeError):
        report_exists.delay(report)


@BOTH_WAYS
def test_waiting_for_a_task_inside_a_task_is_refused(mode):
    # Eager mode runs the task inside denied_join_result() (celery/app/task.py lines 752-754;
    # celery/result.py lines 52-59), so EagerResult.get() (result.py lines 1080-1083) calls
    # assert_will_not_block() (result.py lines 37-39) as AsyncResult.get() does in a worker
    # (where celery/concurrency/prefork.py line 55 sets the same flag): RuntimeError both ways.
    from anti_patterns import waits_for_another_task  # this folder's task that waits (not the project's)

    with pytest.raises(RuntimeError, match=r"Never call result\.get\(\) within a task"):
        waits_for_another_task.delay().get(timeout=15)
