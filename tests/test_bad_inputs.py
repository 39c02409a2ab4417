"""Chapter 07's table of bad inputs (instruments.bad_inputs), each case provoked
against a real `celery -A demo_tasks.retries worker --concurrency=1`.

demo_tasks.retries is imported only by the session's ``retries_app`` fixture,
after REDIS_URL points at the session's broker (it reads REDIS_URL when imported). Times are
checked only from below, and only where a lower bound is the point: a retry
policy's sleeps, a timeout, a task that waits behind a busy worker.
"""

from __future__ import annotations

import re

import pytest

import launcher
from instruments import bad_inputs
from instruments.bad_inputs import Row
from tests.test_tables import as_compared

#: A Celery task id (a version-4 UUID), as the worker logs it.
TASK_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def retries(retries_app, broker):
    broker.flush()  # this module's queues start empty
    yield retries_app


@pytest.fixture(scope="module")
def worker(retries, broker):
    """One pool process: the expiry case needs it busy."""
    w = launcher.start_worker("demo_tasks.retries", broker=broker, fast=True, concurrency=1)
    yield w
    w.cleanup()


@pytest.fixture(scope="module")
def backend_down(worker) -> dict[str, Row]:
    """The two "result backend unreachable" rows, each run once (the default one takes about 20 s)."""
    return {name: bad_inputs.run_case(name, worker) for name in ("backend_down_default", "backend_down_short")}


def verdicts_hold(rows: list[Row]) -> bool:
    """The notebook's verdicts about these rows: there is one for each case that has one, and it is True."""
    found = bad_inputs.checks(rows)
    return bool(found) and all(ok for _label, ok in found)


def nothing_was_sent(retries, worker, since: int) -> bool:
    """True if the worker received nothing after ``since`` but a marker task sent
    now: one queue, one consumer, in order, so an earlier message would have come first."""
    marker = retries.add.delay(20, 22)
    assert marker.get(timeout=10) == 42
    received = [line for line in worker.log(since).splitlines() if " received" in line]
    return len(received) == 1 and marker.id in received[0]


@pytest.mark.parametrize(("case", "exception", "message"), [
    ("wrong_arguments", "TypeError", "add() missing 1 required positional argument: 'y'"),
    ("not_json", "kombu.exceptions.EncodeError", "Object of type object is not JSON serializable"),
])
def test_a_bad_call_fails_in_the_caller_and_sends_nothing(retries, worker, case, exception, message):
    since = worker.mark()
    row = bad_inputs.run_case(case, worker)
    assert row.exception == exception
    assert message in row.message
    assert row.where.startswith("调用方") and row.log_line is None
    assert nothing_was_sent(retries, worker, since)


def test_an_unregistered_task_is_logged_by_the_worker_and_get_raises_not_registered(worker):
    row = bad_inputs.run_case("unregistered", worker)
    # Celery 5: the worker stores a FAILURE for it, so get() does not wait for its timeout.
    assert row.exception == "celery.exceptions.NotRegistered"
    assert "demo_tasks.retries.no_such_task" in row.message
    assert "worker 日志" in row.where and "get() 重新抛出" in row.where
    assert "ERROR/MainProcess] Received unregistered task of type 'demo_tasks.retries.no_such_task'" in row.log_line


def test_a_task_that_raises_is_re_raised_by_get(worker):
    row = bad_inputs.run_case("task_raises", worker)
    assert row.exception == "ZeroDivisionError"
    assert row.message == "division by zero"
    assert row.where.startswith("结果（get() 重新抛出）")
    assert re.search(rf"Task demo_tasks\.retries\.divide\[{TASK_ID}\] raised unexpected: ZeroDivisionError",
                     row.log_line)


def test_get_past_its_timeout_raises_celerys_timeout_error(worker):
    row = bad_inputs.run_case("get_timeout", worker)
    assert row.exception == "celery.exceptions.TimeoutError"
    assert row.message == "The operation timed out."
    assert row.seconds >= bad_inputs.SHORT_TIMEOUT
    assert verdicts_hold([row])
    # The case waits for the task to finish: the worker is free for the next one.
    assert "sleep[" in worker.tail(1)


def test_an_unreachable_broker_fails_the_send_after_the_publish_retries(worker):
    row = bad_inputs.run_case("broker_down", worker)
    assert row.exception == "kombu.exceptions.OperationalError"
    # The real (dead) port, as the learner's run gives it.
    assert re.search(r"connecting to 127\.0\.0\.1:\d+\.", row.message) and "Connection refused" in row.message
    assert row.where.startswith("调用方")
    # Celery's default task_publish_retry_policy sleeps 0, 0.2 and 0.4 s between its attempts.
    assert row.seconds >= 0.5
    assert verdicts_hold([row])


def test_an_unreachable_result_backend_retries_about_20_seconds_by_default(backend_down):
    row = backend_down["backend_down_default"]
    assert row.exception == "RuntimeError"
    assert row.message.startswith("Retry limit exceeded while trying to reconnect to the Celery result store backend")
    assert "get(timeout=5)" in row.where
    # 20 retries up to 1 s apart (celery/backends/base.py): far past get()'s own timeout.
    assert row.seconds >= 15


def test_a_shorter_result_backend_retry_policy_gives_the_same_error_sooner(backend_down):
    row = backend_down["backend_down_short"]
    assert "result_backend_transport_options" in row.case
    assert row.exception == "RuntimeError"
    assert row.message.startswith("Retry limit exceeded while trying to reconnect to the Celery result store backend")
    # max_retries=2: it sleeps 0 s, then 0.2 s.
    assert row.seconds >= 0.19
    # A ratio, not a bound on the time: about 0.2 s against about 20 s.
    assert row.seconds * 10 <= backend_down["backend_down_default"].seconds
    assert verdicts_hold(list(backend_down.values()))


def test_an_expired_task_is_revoked_by_the_worker(worker):
    row = bad_inputs.run_case("expired", worker)
    assert row.exception == "celery.exceptions.TaskRevokedError"
    assert row.message == "expired"
    assert "worker 日志" in row.where
    assert re.search(rf"INFO/MainProcess\] Discarding revoked task: demo_tasks\.retries\.add\[{TASK_ID}\]",
                     row.log_line)
    # Dropped when the busy pool process is free again (sleep 1.5 s), not when it expired (0.5 s).
    assert row.seconds >= 1.0
    assert verdicts_hold([row])


def test_medians_run_each_case_n_times(worker):
    result = bad_inputs.medians(worker, n=3, names=["wrong_arguments", "broker_down", "backend_down_default"],
                                include_slow_default=False)
    assert list(result) == ["wrong_arguments", "broker_down"]
    assert result["broker_down"] >= 0.5
    table = bad_inputs.medians_table(result, 3)
    assert table.headers == ["情形", "3 次的中位数"]
    assert [row[0] for row in table.rows] == [bad_inputs.LABELS["wrong_arguments"], bad_inputs.LABELS["broker_down"]]
    assert as_compared(table._repr_html_()).count('<td class="measured">MEASURED</td>') == 2


def test_a_worker_with_more_than_one_pool_process_is_refused(broker, worker):
    # Its own queue: it must not take this module's tasks while it runs.
    other = launcher.start_worker("demo_tasks.retries", name="w2", broker=broker, fast=True,
                                  concurrency=2, queues=["unused"])
    try:
        with pytest.raises(ValueError, match="--concurrency=1"):
            bad_inputs.run_case("wrong_arguments", other)
    finally:
        other.cleanup()


def table_rows(seconds: float = 0.0004) -> list[Row]:
    return [Row("参数个数不对：add.delay(1)", "TypeError", "add() missing 1 required positional argument: 'y'",
                "调用方，立即", seconds, name="wrong_arguments"),
            Row("任务过期", "celery.exceptions.TaskRevokedError", "expired", "worker 日志；结果", seconds + 1.5,
                "[2026-12-07 04:30:01,123: INFO/MainProcess] Discarding revoked task: "
                "demo_tasks.retries.add[0f8fad5b-d9cb-469f-a165-70867728950e]", name="expired")]


def test_the_table_has_chinese_headers_numbered_rows_and_measured_times():
    table = bad_inputs.table(table_rows())
    assert table.headers == ["情形", "异常", "消息", "在哪里出现", "用时"]
    assert [row[0] for row in table.rows] == ["1. 参数个数不对：add.delay(1)", "2. 任务过期"]
    assert [str(row[-1]) for row in table.rows] == ["0.000 秒", "1.500 秒"]
    logged = bad_inputs.log_table(table_rows())
    assert logged.rows == [["2.", table_rows()[1].log_line]]


def test_another_runs_times_give_the_same_html_once_compared():
    for render in (bad_inputs.table, bad_inputs.log_table):
        html, slower = render(table_rows())._repr_html_(), render(table_rows(12.3))._repr_html_()
        assert as_compared(html) == as_compared(slower)
    assert bad_inputs.table(table_rows())._repr_html_() != bad_inputs.table(table_rows(12.3))._repr_html_()


def test_the_verdicts_hold_for_times_like_the_chapters_and_fail_when_a_lesson_breaks():
    def rows(**seconds: float) -> list[Row]:
        return [Row(name, "", "", "", value, name=name) for name, value in seconds.items()]

    measured = rows(get_timeout=1.003, broker_down=0.609, backend_down_default=19.02, backend_down_short=0.204,
                    expired=1.507, wrong_arguments=0.0001)
    assert [ok for _label, ok in bad_inputs.checks(measured)] == [True] * 5
    assert [ok for _label, ok in bad_inputs.checks(rows(backend_down_default=19.0, backend_down_short=5.0))] == \
        [True, False]
    assert [ok for _label, ok in bad_inputs.checks(rows(expired=0.5))] == [False]
    assert bad_inputs.checks(rows(wrong_arguments=0.0)) == []
