"""Chapter 07's table of bad inputs (instruments.bad_inputs), each case provoked
against a real `celery -A demo_tasks.retries worker --concurrency=1`.

demo_tasks.retries is imported only by the session's ``retries_app`` fixture,
after REDIS_URL points at the session's broker (it reads REDIS_URL when imported). Times are
checked only from below, and only where a lower bound is the point: a retry
policy's sleeps, a timeout, a task that waits behind a busy worker.
"""

from __future__ import annotations

import pytest

import launcher
from instruments import bad_inputs
from instruments.bad_inputs import Row


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
    assert "Task demo_tasks.retries.divide[TASK-ID] raised unexpected: ZeroDivisionError" in row.log_line


def test_get_past_its_timeout_raises_celerys_timeout_error(worker):
    row = bad_inputs.run_case("get_timeout", worker)
    assert row.exception == "celery.exceptions.TimeoutError"
    assert row.message == "The operation timed out."
    assert row.seconds >= bad_inputs.SHORT_TIMEOUT
    # The case waits for the task to finish: the worker is free for the next one.
    assert "sleep[" in worker.tail(1)


def test_an_unreachable_broker_fails_the_send_after_the_publish_retries(worker):
    row = bad_inputs.run_case("broker_down", worker)
    assert row.exception == "kombu.exceptions.OperationalError"
    # Sanitized: the dead port is a stable placeholder.
    assert "connecting to 127.0.0.1:PORT" in row.message and "Connection refused" in row.message
    assert row.where.startswith("调用方")
    # Celery's default task_publish_retry_policy sleeps 0, 0.2 and 0.4 s between its attempts.
    assert row.seconds >= 0.5


def test_an_unreachable_result_backend_retries_about_20_seconds_by_default(worker):
    row = bad_inputs.run_case("backend_down_default", worker)
    assert row.exception == "RuntimeError"
    assert row.message.startswith("Retry limit exceeded while trying to reconnect to the Celery result store backend")
    assert "get(timeout=5)" in row.where
    # 20 retries up to 1 s apart (celery/backends/base.py): far past get()'s own timeout.
    assert row.seconds >= 15


def test_a_shorter_result_backend_retry_policy_gives_the_same_error_sooner(worker):
    row = bad_inputs.run_case("backend_down_short", worker)
    assert "result_backend_transport_options" in row.case
    assert row.exception == "RuntimeError"
    assert row.message.startswith("Retry limit exceeded while trying to reconnect to the Celery result store backend")
    # max_retries=2: it sleeps 0 s, then 0.2 s.
    assert row.seconds >= 0.19


def test_an_expired_task_is_revoked_by_the_worker(worker):
    row = bad_inputs.run_case("expired", worker)
    assert row.exception == "celery.exceptions.TaskRevokedError"
    assert row.message == "expired"
    assert "worker 日志" in row.where
    assert "INFO/MainProcess] Discarding revoked task: demo_tasks.retries.add[TASK-ID]" in row.log_line
    # Dropped when the busy pool process is free again (sleep 1.5 s), not when it expired (0.5 s).
    assert row.seconds >= 1.0


def test_medians_run_each_case_n_times(worker):
    result = bad_inputs.medians(worker, n=3, names=["wrong_arguments", "broker_down", "backend_down_default"],
                                include_slow_default=False)
    assert list(result) == ["wrong_arguments", "broker_down"]
    assert result["broker_down"] >= 0.5
    assert "用时 DURATION" in launcher.sanitize(bad_inputs.medians_table(result, 3))


def test_a_worker_with_more_than_one_pool_process_is_refused(broker, worker):
    # Its own queue: it must not take this module's tasks while it runs.
    other = launcher.start_worker("demo_tasks.retries", name="w2", broker=broker, fast=True,
                                  concurrency=2, queues=["unused"])
    try:
        with pytest.raises(ValueError, match="--concurrency=1"):
            bad_inputs.run_case("wrong_arguments", other)
    finally:
        other.cleanup()


def test_the_table_has_chinese_headers_and_durations_the_sanitizer_blanks():
    rows = [Row("参数个数不对：add.delay(1)", "TypeError", "add() missing 1 required positional argument: 'y'",
                "调用方，立即", 0.0004),
            Row("任务过期", "celery.exceptions.TaskRevokedError", "expired", "worker 日志；结果", 1.5,
                "[TIME: INFO/MainProcess] Discarding revoked task: demo_tasks.retries.add[TASK-ID]")]
    text = bad_inputs.table(rows)
    assert text.splitlines()[0].split() == ["情形", "异常", "消息", "在哪里出现", "用时"]
    assert "用时 0.000 秒" in text and "用时 1.500 秒" in text
    assert "2. [TIME: INFO/MainProcess] Discarding revoked task" in text
    # Another run's times give the same text once sanitized: no column moves.
    slower = [Row(r.case, r.exception, r.message, r.where, r.seconds * 10 + 12.3, r.log_line) for r in rows]
    assert launcher.sanitize(bad_inputs.table(slower)) == launcher.sanitize(text)
