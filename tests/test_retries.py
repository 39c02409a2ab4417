"""Chapter 07's tasks (demo_tasks.retries) against a real worker and the real flaky
service: retry counts and the gaps between attempts from the service's own
request log, what is not retried, time limits per pool, revoke, Ignore/Reject
and the error hooks.

Every count is predicted from the service's rule (services.flaky_service.verdict,
a hash of task id and attempt) and then compared with what really happened.
Times are checked only from below: a retry never comes before the wait Celery
computed (jitter is off for fetch_with_retries), which load cannot break.
"""

from __future__ import annotations

import time

import pytest

import launcher
from instruments import retry_stats
from services import flaky_service
from tests.test_tables import as_compared

FAILING = ("unavailable", "timeout")


@pytest.fixture(scope="module")
def retries(retries_app, broker):
    broker.flush()  # this module's queues and results start empty
    yield retries_app


@pytest.fixture(scope="module")
def service():
    s = launcher.start_flaky_service(seed=7)
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def worker(retries, broker):
    w = launcher.start_worker("demo_tasks.retries", broker=broker, fast=True, concurrency=4)
    yield w
    w.cleanup()


def predicted_attempts(task_id: str, max_retries: int) -> list[str]:
    """The service's answers to one task that retries every failure, up to max_retries times."""
    answers = []
    for attempt in range(max_retries + 1):
        answers.append(flaky_service.verdict(task_id, attempt))
        if answers[-1] not in FAILING:
            break
    return answers


def test_a_batch_without_and_with_retries_ends_as_the_service_rule_predicts(retries, service, worker):
    ids = retry_stats.call_ids(40, prefix="batch")
    service.reset()
    once = retry_stats.wait_for_results(retry_stats.send_calls(retries.fetch_once, service.call_url, ids), 60)
    summary = retry_stats.summarize(once, service.requests())
    first_failures = sum(flaky_service.verdict(i, 0) in FAILING for i in ids)
    assert (summary.failed, summary.succeeded, summary.attempts) == (first_failures, 40 - first_failures, 40)

    service.reset()
    started = time.perf_counter()
    retried = retry_stats.wait_for_results(
        retry_stats.send_calls(retries.fetch_with_retries, service.call_url, ids), 120)
    seconds = time.perf_counter() - started
    summary = retry_stats.summarize(retried, service.requests())
    predicted = {i: predicted_attempts(i, retries.RETRY_POLICY["max_retries"]) for i in ids}
    gave_up = sum(p[-1] in FAILING for p in predicted.values())
    assert first_failures > gave_up
    assert (summary.failed, summary.attempts) == (gave_up, sum(len(p) for p in predicted.values()))
    for task_id, answers in predicted.items():
        seen = retry_stats.attempts_of(task_id, service.requests())
        assert [(a["attempt"], a["outcome"]) for a in seen] == list(enumerate(answers)), task_id
        assert retried[task_id] == ("FAILURE" if answers[-1] in FAILING else "SUCCESS"), task_id
    # The chapter's verdict: the batch took at least the backoff of its most retried task.
    waits = retry_stats.backoff_waited(summary, maximum=retries.RETRY_POLICY["retry_backoff_max"])
    most = max(len(p) for p in predicted.values())
    assert waits == retry_stats.backoff_countdowns(most - 1, maximum=8) and sum(waits) >= 1
    assert seconds >= sum(waits)


def test_each_retry_waits_at_least_the_backoff_celery_computed(retries, service, worker):
    policy = retries.RETRY_POLICY
    task_id, = flaky_service.task_ids("backoff", 1, where=lambda v: all(x == "unavailable" for x in v[:4]))
    service.reset()
    result = retries.fetch_with_retries.apply_async((service.call_url,), task_id=task_id)
    assert launcher.wait_for(result.ready, 60, interval=0.1)
    assert result.state == "FAILURE"
    assert isinstance(result.result, retries.ServiceUnavailable), "the last attempt's error is the task's"
    attempts = retry_stats.attempts_of(task_id, service.requests())
    assert [a["attempt"] for a in attempts] == [0, 1, 2, 3]
    waits = retry_stats.backoff_countdowns(policy["max_retries"], maximum=policy["retry_backoff_max"])
    assert waits == [1, 2, 4]
    for gap, wait in zip(retry_stats.gaps(attempts), waits, strict=True):
        assert gap >= wait, f"a retry came {gap:.3f} s after the previous attempt, before its {wait} s wait"


def test_the_batches_table_has_a_row_per_batch_and_measured_times():
    once = retry_stats.Summary(77, 23, 100, {1: 100}, {"ok": 77, "unavailable": 23})
    retried = retry_stats.Summary(99, 1, 138, {1: 77, 2: 12, 3: 7, 4: 4}, {"ok": 99, "unavailable": 39})
    table = retry_stats.table({"不重试": (once, 2.9), "自动重试": (retried, 11.1)})
    assert table.headers == ["做法", "成功", "失败", "服务收到的请求", "用时"]
    assert [[str(c) for c in row] for row in table.rows] == [["不重试", "77", "23", "100", "2.9 秒"],
                                                              ["自动重试", "99", "1", "138", "11.1 秒"]]
    slower = retry_stats.table({"不重试": (once, 29.0), "自动重试": (retried, 111.4)})
    assert as_compared(slower._repr_html_()) == as_compared(table._repr_html_())
    assert retry_stats.backoff_waited(retried, maximum=8) == [1, 2, 4]
    assert retry_stats.backoff_waited(once, maximum=8) == []


def test_a_client_error_is_not_retried(retries, service, worker):
    service.reset()
    result = retries.fetch_with_retries.delay(service.url + "/missing")
    assert launcher.wait_for(result.ready, 20, interval=0.1)
    assert result.state == "FAILURE" and isinstance(result.result, retries.ClientError)
    assert [(r["path"], r["status"]) for r in service.requests()] == [("/missing", 404)]


def test_a_manual_retry_shows_the_retry_state_and_recovers(retries, service, worker):
    task_id, = flaky_service.task_ids("manual", 1, where=lambda v: v[:3] == ["unavailable", "unavailable", "ok"])
    service.reset()
    result = retries.fetch_manual_retry.apply_async((service.call_url,), task_id=task_id)
    seen = []
    assert launcher.wait_for(lambda: seen.append(result.state) or result.ready(), 30, interval=0.05)
    assert "RETRY" in seen and result.state == "SUCCESS"
    attempts = retry_stats.attempts_of(task_id, service.requests())
    assert [a["attempt"] for a in attempts] == [0, 1, 2]
    assert all(gap >= 0.5 for gap in retry_stats.gaps(attempts)), "countdown=0.5"


def test_the_soft_limit_lets_the_task_clean_up_and_the_hard_limit_kills_its_process(retries, worker):
    from celery.exceptions import TimeLimitExceeded

    mark = worker.mark()
    message = retries.soft_limited.delay(3).get(timeout=20)
    assert message.startswith("stopped after the soft limit") and message.endswith("removed: True")
    worker.wait_for_log("Soft time limit (1s) exceeded for demo_tasks.retries.soft_limited", timeout=10,
                        since=mark)
    hard = retries.hard_limited.delay(3)
    assert isinstance(hard.get(timeout=20, propagate=False), TimeLimitExceeded)
    assert hard.state == "FAILURE"
    worker.wait_for_log("Hard time limit (1s) exceeded for demo_tasks.retries.hard_limited", timeout=10,
                        since=mark)
    worker.wait_for_log("exited with 'signal 9 (SIGKILL)'", timeout=10, since=mark)
    # The worker replaced its killed pool process and goes on working.
    assert retries.add.delay(2, 2).get(timeout=20) == 4


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_solo_and_threads_pools_do_not_enforce_time_limits(retries, broker, worker, pool):
    other = launcher.start_worker("demo_tasks.retries", broker=broker, fast=True, name=pool, queues=[pool],
                                  concurrency=1, extra_args=[f"--pool={pool}"])
    try:
        assert retries.soft_limited.apply_async((1.5,), queue=pool).get(timeout=20) == "done in 1.5 s"
        assert retries.hard_limited.apply_async((1.5,), queue=pool).get(timeout=20) == "done in 1.5 s"
        assert "time limit" not in other.log().lower()
    finally:
        other.cleanup()


def test_revoke_with_terminate_stops_a_running_task(retries, worker):
    from celery.exceptions import TaskRevokedError

    running = retries.sleep.delay(30)
    assert launcher.wait_for(lambda: running.state == "STARTED", 20, interval=0.05)
    running.revoke(terminate=True)
    assert isinstance(running.get(timeout=20, propagate=False), TaskRevokedError)
    assert running.state == "REVOKED"
    worker.wait_for_log(f"Terminating {running.id} (15)", timeout=10, since=0)


def test_ignore_leaves_the_last_state_and_reject_is_logged(retries, worker):
    ignored = retries.ignored.delay()
    worker.wait_for_log(f"[{ignored.id}] ignored", timeout=20, since=0)
    assert ignored.state == "STARTED", "track_started stored STARTED; Ignore stores nothing after it"
    rejected = retries.rejected.delay()
    worker.wait_for_log(f"[{rejected.id}] reject requeue=False", timeout=20, since=0)


def test_on_failure_link_error_and_the_task_failure_signal_all_see_a_failure(retries, worker):
    result = retries.parse_amount.apply_async(("twelve",), link_error=retries.record_error.s())
    assert isinstance(result.get(timeout=20, propagate=False), ValueError)
    # In the worker: the errback runs when the failure is stored, then on_failure, then the signal.
    assert launcher.wait_for(lambda: any(r["id"] == result.id
                                         for r in retries.read_records(retries.ERRBACKS_KEY)), 20)
    assert launcher.wait_for(lambda: any(r["id"] == result.id
                                         for r in retries.read_records(retries.FAILURES_KEY)), 20)
    failures = [r for r in retries.read_records(retries.FAILURES_KEY) if r["id"] == result.id]
    assert failures == [{"task": "demo_tasks.retries.parse_amount", "id": result.id, "error": "ValueError"}]
    worker.wait_for_log(f"ReportingTask.on_failure: demo_tasks.retries.parse_amount[{result.id}] failed",
                        timeout=10, since=0)


def test_a_task_stopped_at_rdb_set_trace_answers_a_debugger_session_and_continues(retries, worker):
    import re
    import socket

    def until_prompt(connection) -> bytes:
        said = b""
        while not said.endswith(b"(Pdb) "):
            chunk = connection.recv(4096)
            assert chunk, f"the debugger hung up: {said!r}"
            said += chunk
        return said

    mark = worker.mark()
    paused = retries.debug_me.delay(14)
    worker.wait_for_log("Ready to connect: telnet 127.0.0.1", timeout=20, since=mark)
    port = int(re.search(r"Ready to connect: telnet 127\.0\.0\.1 (\d+)", worker.log(mark)).group(1))
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        assert b"debug_me()" in until_prompt(connection)
        connection.sendall(b"p total\n")
        assert until_prompt(connection).startswith(b"42")
        connection.sendall(b"c\n")
    assert paused.get(timeout=20) == 42


def test_dont_autoretry_for_retry_kwargs_and_on_retry(retries, service, worker):
    task_id, = flaky_service.task_ids("family", 1, where=lambda v: v[:3] == ["unavailable", "unavailable", "ok"])
    hopeless, = flaky_service.task_ids("family-x", 1, where=lambda v: all(x == "unavailable" for x in v[:4]))
    service.reset()
    ok = retries.fetch_by_family.apply_async((service.call_url,), task_id=task_id)
    assert ok.get(timeout=20)["attempt"] == 2
    gave_up = retries.fetch_by_family.apply_async((service.call_url,), task_id=hopeless)
    assert launcher.wait_for(gave_up.ready, 20, interval=0.1)
    assert [a["attempt"] for a in retry_stats.attempts_of(hopeless, service.requests())] == [0, 1, 2], \
        "retry_kwargs: max_retries=2"
    missing = retries.fetch_by_family.delay(service.url + "/missing-family")
    assert launcher.wait_for(missing.ready, 20, interval=0.1)
    assert isinstance(missing.result, retries.ClientError)
    assert sum(r["path"] == "/missing-family" for r in service.requests()) == 1, "dont_autoretry_for: no retry"
    worker.wait_for_log(f"fetch_by_family[{task_id}] succeeded", 10, since=0)
    assert worker.log().count(f"on_retry: demo_tasks.retries.fetch_by_family[{task_id}] will retry") == 2
    # retry_kwargs' countdown: 0.2 s before each retry
    assert f"[{task_id}] retry: Retry in 0.2s" in worker.log()


def test_revoking_a_queued_task_discards_it_when_the_worker_takes_it(retries, worker):
    queued = retries.add.apply_async((2, 2), countdown=2)
    queued.revoke()
    assert launcher.wait_for(queued.ready, 15, interval=0.1)
    assert queued.state == "REVOKED"
    worker.wait_for_log(f"Discarding revoked task: demo_tasks.retries.add[{queued.id}]", 10, since=0)
    assert f"Task demo_tasks.retries.add[{queued.id}] succeeded" not in worker.log()


def test_the_colleagues_fetch_report_retries_a_404_until_revoked(retries, service, worker):
    service.reset()
    hammer = retries.fetch_report.delay(service.url + "/reports/x")
    assert launcher.wait_for(lambda: len(service.requests()) >= 5, 20, interval=0.05)
    assert {(r["path"], r["status"]) for r in service.requests()} == {("/reports/x", 404)}
    # A revoke is a broadcast, and on Redis a broadcast is pub/sub: at most once. If the worker's
    # subscription was being re-made at that moment (a loaded machine), it never arrives; sending it
    # again is what one does (revoking twice is harmless). Once it arrives, the next retry is dropped.
    for _ in range(5):
        hammer.revoke()
        if launcher.wait_for(lambda: hammer.state == "REVOKED", 5, interval=0.1):
            break
    assert hammer.state == "REVOKED", worker.tail(20)
