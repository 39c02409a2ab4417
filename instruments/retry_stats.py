"""Chapter 07's measurement of the article's claim "tasks retry automatically":
the same calls to the flaky service, once with a task that does not retry and
once with one that does, counted from the tasks' results and from the
service's own record of every request it got.

    results = send_calls(fetch_once, service.call_url, call_ids(100))
    outcome = wait_for_results(results, timeout=60)
    summary = summarize(outcome, service.requests())
    display(table({"不重试": (summary, seconds), ...}))    # an HTML table
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from celery.result import AsyncResult

from instruments.tables import Measured, Table


def call_ids(count: int, prefix: str = "call") -> list[str]:
    """The logical calls of a batch: fixed, so every run asks the flaky service the same
    questions and meets the same failures (its answers are a hash of call and attempt)."""
    return [f"{prefix}-{n:03d}" for n in range(1, count + 1)]


def send_calls(task, url: str, calls: Iterable[str]) -> dict[str, AsyncResult]:
    """Send one task per logical call, the call's id passed as ``call`` (the service's
    answers depend on it), each under a new task id: {call: result}. A task id is never
    used twice: a process that sends a task under an id it used before can be handed the
    result Celery buffered for the earlier task (a READY message that came with no one
    waiting), so the new task would look finished before it has even started."""
    return {call: task.apply_async((url,), {"call": call}) for call in calls}


def wait_for_results(results: dict[str, AsyncResult], timeout: float) -> dict[str, str]:
    """Wait until every task has finished (SUCCESS or FAILURE), at most `timeout`
    seconds; return each id's state. Raises TimeoutError naming the unfinished ones."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    pending = dict(results)
    while pending:
        for task_id, result in list(pending.items()):
            if result.ready():
                states[task_id] = result.state
                del pending[task_id]
        if not pending:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} of {len(results)} tasks unfinished after {timeout:g} s, "
                               f"e.g. {sorted(pending)[:3]}: is the worker running?")
        time.sleep(0.1)
    return states


@dataclass(frozen=True)
class Summary:
    succeeded: int
    failed: int
    #: Requests the flaky service got for these tasks: every attempt of every task.
    attempts: int
    #: How many attempts each task took: {attempts: number of tasks}.
    attempts_per_task: dict[int, int]
    #: What the service answered to the attempts: {"unavailable": n, "timeout": n, ...}.
    answers: dict[str, int]


def summarize(states: dict[str, str], requests: list[dict]) -> Summary:
    """Count the batch: from the tasks' states and the service's request log."""
    ours = [r for r in requests if r.get("task") in states]
    per_task = Counter(r["task"] for r in ours)
    return Summary(
        succeeded=sum(1 for s in states.values() if s == "SUCCESS"),
        failed=sum(1 for s in states.values() if s == "FAILURE"),
        attempts=len(ours),
        attempts_per_task=dict(sorted(Counter(per_task.values()).items())),
        answers=dict(sorted(Counter(r["outcome"] for r in ours).items())),
    )


def attempts_of(call: str, requests: list[dict]) -> list[dict]:
    """One call's requests, in order: each with its time, attempt number and the service's
    answer (the service records the call's id as "task")."""
    return sorted((r for r in requests if r.get("task") == call), key=lambda r: r["t"])


def backoff_countdowns(retries: int, *, maximum: int, factor: int = 1) -> list[int]:
    """The waits Celery's retry_backoff promises before retry 1, 2, ... (jitter off):
    factor * 2 ** n, at most `maximum` (celery.utils.time.get_exponential_backoff_interval)."""
    from celery.utils.time import get_exponential_backoff_interval

    return [get_exponential_backoff_interval(factor, n, maximum, full_jitter=False) for n in range(retries)]


def gaps(attempts: list[dict]) -> list[float]:
    """Seconds between one attempt's arrival at the service and the next one's."""
    return [b["t"] - a["t"] for a, b in pairwise(attempts)]


def backoff_waited(summary: Summary, *, maximum: int, factor: int = 1) -> list[int]:
    """The waits Celery promised the task that made the most attempts (retry_backoff,
    jitter off): each retry comes no sooner than its wait after the attempt before it,
    so the batch took at least their sum."""
    return backoff_countdowns(max(summary.attempts_per_task) - 1, maximum=maximum, factor=factor)


def table(batches: dict[str, tuple[Summary, float]]) -> Table:
    """Batches side by side: {label: (summary, seconds the batch took)}, one row each."""
    return Table(["做法", "成功", "失败", "服务收到的请求", "用时"],
                 [[label, s.succeeded, s.failed, s.attempts, Measured(f"{seconds:.1f} 秒")]
                  for label, (s, seconds) in batches.items()])


def times_done(requests: list[dict]) -> Counter:
    """{task id: how many times the service did the work} from its request record: every
    200 that is not a replay of an earlier call with the same Idempotency-Key (a "timeout"
    call counts: the service finished it after the client had gone)."""
    return Counter(r["task"] for r in requests if r["status"] == 200 and not r.get("replayed"))


def duplicate_calls(requests: list[dict]) -> int:
    """Work the service did more than once for the same logical call (task id)."""
    return sum(n - 1 for n in times_done(requests).values())
