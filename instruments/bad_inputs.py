"""Chapter 07's table of bad inputs: each one provoked against a real worker,
with what it really gives -- which exception, its message, where it shows up
(the caller at once, the worker's log, the result that get() re-raises) and
how long it took to show up.

    python -m instruments.bad_inputs      # an embedded broker, a worker, the table, medians of 5

or, from a notebook or a test that already runs a worker of demo_tasks.retries::

    from instruments import bad_inputs, tables
    rows = bad_inputs.run_all(worker)    # worker: the launcher.Proc of that worker
    display(bad_inputs.table(rows), bad_inputs.log_table(rows))    # HTML tables
    print(tables.verdicts(bad_inputs.checks(rows)))

The worker must run with ``--concurrency=1`` (``launcher.start_worker(...,
concurrency=1)``): the expiry case needs a worker whose only pool process is
busy, so that the task with ``expires`` waits until it is too late.

demo_tasks.retries is imported here only when a case runs, never at import
time: it reads REDIS_URL when it is imported, and this module is imported
before ``__main__`` has started its broker. Whoever imports it first must have
set REDIS_URL to the worker's broker; ``run_case()`` checks that the two agree.

What Celery 5.7 really does, measured (the chapter's claims follow these):

- An unknown task name does not leave the caller waiting until its timeout:
  the worker logs "Received unregistered task of type ...", drops the message
  and stores a FAILURE with ``NotRegistered``, which get() raises at once.
- get(timeout=0.5) gives up after about 1 s: it checks its timeout between
  1-second waits for the result (celery/backends/asynchronous.py).
- An expired task is not dropped when it expires but when the worker gets to it
  (here: when the busy pool process is free again), as "Discarding revoked task".
- A sending app whose broker *and* result backend are both unreachable fails
  with the backend's "Retry limit exceeded" after about 20 s, not with the
  broker's error: send_task() subscribes to the result (on_task_call) before it
  publishes. So the "broker unreachable" case's app has no result backend.
- With the result backend unreachable, get(timeout=5) takes about 20 s: the
  backend's reconnection retries are not bounded by get()'s timeout. (``.state``
  instead raises redis-py's ConnectionError at once, without retrying.)
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType

from celery import Celery
from celery.result import AsyncResult
from celery.utils import uuid

import launcher
from instruments.tables import Measured, Table, verdicts
from launcher import Proc

#: How long get() waits in the cases where the result does come back.
GET_TIMEOUT = 10.0
#: The timeout of get() in the case that shows get() giving up.
SHORT_TIMEOUT = 0.5
#: The timeout of get() against an unreachable result backend (it takes longer anyway).
BACKEND_TIMEOUT = 5.0
#: The task name nobody registered.
UNKNOWN_TASK = "demo_tasks.retries.no_such_task"
#: The shortened retry policy of the result backend, for the second "backend unreachable" row.
#: https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-backend-transport-options
SHORT_BACKEND_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
#: How long we wait for a worker's log line about a case.
LOG_TIMEOUT = 10.0


#: Each case's label in the table (the keys are CASES' names).
LABELS = {
    "wrong_arguments": "参数个数不对：add.delay(1)",
    "not_json": "参数无法编成 JSON：add.delay(1, object())",
    "unregistered": "未注册的任务名：app.send_task(\"demo_tasks.retries.no_such_task\")",
    "task_raises": "任务自己抛出异常：divide.delay(1, 0)",
    "get_timeout": f"get() 超时：sleep.delay(2).get(timeout={SHORT_TIMEOUT:g})",
    "broker_down": "发送时 broker 不可达（默认的 task_publish_retry_policy）",
    "backend_down_default": "读取结果时结果后端不可达（默认的重试策略）",
    "backend_down_short": "读取结果时结果后端不可达（result_backend_transport_options 缩短了重试）",
    "expired": "任务过期：worker 正忙时 add.apply_async((1, 1), expires=0.5)",
}


@dataclass
class Row:
    """One bad input and what it gave."""

    case: str             # short Chinese label
    exception: str        # the exception's qualified name, as the caller sees it
    message: str          # its message: first paragraph, one line
    where: str            # where it surfaces (Chinese)
    seconds: float        # from the call to the error (time.perf_counter)
    log_line: str | None = None  # the worker's log line about it, as logged
    name: str = ""        # the case's key in CASES


# --- helpers ------------------------------------------------------------------------------

def _retries() -> ModuleType:
    """demo_tasks.retries, imported at the first case (see the module's docstring)."""
    from demo_tasks import retries

    return retries


def qualified_name(exc: BaseException) -> str:
    """"kombu.exceptions.EncodeError"; a built-in exception by its name alone ("TypeError")."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def first_message(exc: BaseException) -> str:
    """The exception's message as one line: its first paragraph (some of Celery's
    messages start with a newline and wrap a sentence over two lines), whitespace
    collapsed. Ports and ids stay as they are: the learner sees their own."""
    paragraphs = [p for p in str(exc).strip().split("\n\n") if p.strip()]
    return " ".join(paragraphs[0].split()) if paragraphs else ""


def _error_of(name: str, where: str, call: Callable[[], object]) -> Row:
    """Run ``call()``, which must raise; the row of case ``name`` for what it raised,
    timed from the call to the error."""
    started = time.perf_counter()
    try:
        call()
    except Exception as exc:
        seconds = time.perf_counter() - started
        return Row(LABELS[name], qualified_name(exc), first_message(exc), where, seconds, name=name)
    raise AssertionError(f"{LABELS[name]} raised nothing: Celery's behaviour changed, update the chapter")


def _logged(worker: Proc, needle: str, since: int) -> str:
    """The worker's first log line containing ``needle`` after ``since``."""
    return worker.wait_for_log(needle, LOG_TIMEOUT, since=since).strip()


def check_setup(worker: Proc) -> None:
    """The in-process app and the worker must share the broker; the worker must
    have one pool process (the expiry case depends on it)."""
    app = _retries().app
    url = worker.settings.get("REDIS_URL")   # what the launcher gave the worker
    if url is not None and url != app.conf.broker_url:
        raise RuntimeError(
            f"demo_tasks.retries in this process uses {app.conf.broker_url!r} but the worker uses {url!r}: "
            "set REDIS_URL to the worker's broker before demo_tasks.retries is first imported.")
    if "--concurrency=1" not in worker.argv:
        raise ValueError("the worker must run with --concurrency=1 (launcher.start_worker(..., concurrency=1)): "
                         "the expiry case needs its only pool process to be busy")


# --- the cases ------------------------------------------------------------------------------

def wrong_arguments(worker: Proc) -> Row:
    """add.delay(1): Celery checks the call against add's signature in the caller."""
    add = _retries().add
    return _error_of("wrong_arguments", "调用方，立即（消息没有发出）", lambda: add.delay(1))  # TypeError


def not_json(worker: Proc) -> Row:
    """add.delay(1, object()): the JSON serializer refuses it before anything is sent."""
    add = _retries().add
    return _error_of("not_json", "调用方，立即（消息没有发出）", lambda: add.delay(1, object()))  # EncodeError


def unregistered(worker: Proc) -> Row:
    """A task name the worker does not know: it logs it, drops the message and
    (Celery 5) stores a FAILURE with NotRegistered, which get() raises."""
    app = _retries().app
    since = worker.mark()
    row = _error_of("unregistered", "worker 日志（消息被丢弃）；结果（get() 重新抛出）",
                    lambda: app.send_task(UNKNOWN_TASK).get(timeout=GET_TIMEOUT))  # NotRegistered
    row.log_line = _logged(worker, f"Received unregistered task of type '{UNKNOWN_TASK}'", since)
    return row


def task_raises(worker: Proc) -> Row:
    """divide(1, 0) fails in the worker; the error is stored and get() re-raises it."""
    divide = _retries().divide
    since = worker.mark()
    task_id = uuid()
    row = _error_of("task_raises", "结果（get() 重新抛出）；worker 日志",
                    lambda: divide.apply_async((1, 0), task_id=task_id).get(timeout=GET_TIMEOUT))
    row.log_line = _logged(worker, f"divide[{task_id}] raised unexpected", since)
    return row


def get_timeout(worker: Proc) -> Row:
    """get() gives up after its timeout; the task itself keeps running. (get()
    checks its timeout between 1-second waits for the result, so timeout=0.5
    gives up after about 1 s.)"""
    result = _retries().sleep.delay(2)
    row = _error_of("get_timeout", "调用方，等满 timeout 后（任务照样在 worker 里跑完）",
                    lambda: result.get(timeout=SHORT_TIMEOUT))  # celery.exceptions.TimeoutError
    result.get(timeout=GET_TIMEOUT)  # leave the worker idle for the next case: the task is still running
    return row


def broker_down(worker: Proc) -> Row:
    """Sending through a broker nobody listens on: Celery retries the publish
    (task_publish_retry_policy, default: 3 retries, 0/0.2/0.4 s apart), then
    raises kombu's OperationalError. The sending app has no result backend:
    an unreachable one would fail first, after about 20 s (see the module's
    docstring), and a reachable one would only add a subscription to clean up."""
    dead = f"redis://127.0.0.1:{launcher.free_port()}/0"
    sender = Celery("demo_tasks.retries", broker=dead, set_as_current=False)
    try:
        return _error_of("broker_down", "调用方，发布重试用完后",
                         lambda: sender.send_task("demo_tasks.retries.add", (1, 1)))  # OperationalError
    finally:
        sender.close()


def _backend_down(name: str, retry_policy: dict | None) -> Row:
    """The task ran and its result is stored, but the app that reads it has a
    result backend nobody listens on."""
    retries = _retries()
    done = retries.add.delay(1, 1)
    done.get(timeout=GET_TIMEOUT)  # stored for sure: what fails below is only the reading
    dead = f"redis://127.0.0.1:{launcher.free_port()}/0"
    reader = Celery("demo_tasks.retries", broker=retries.app.conf.broker_url, backend=dead, set_as_current=False)
    if retry_policy is not None:
        reader.conf.result_backend_transport_options = {"retry_policy": retry_policy}
    try:
        return _error_of(name, f"调用方 get(timeout={BACKEND_TIMEOUT:g})，结果后端重连重试用完后",
                         lambda: AsyncResult(done.id, app=reader).get(timeout=BACKEND_TIMEOUT))  # "Retry limit ..."
    finally:
        reader.close()


def backend_down_default(worker: Proc) -> Row:
    """Celery's default retry policy of the result backend: 20 retries, up to 1 s apart."""
    return _backend_down("backend_down_default", None)


def backend_down_short(worker: Proc) -> Row:
    """The same, with result_backend_transport_options["retry_policy"] shortened."""
    return _backend_down("backend_down_short", SHORT_BACKEND_RETRY_POLICY)


def expired(worker: Proc) -> Row:
    """With one pool process busy for 1.5 s, a task with expires=0.5 waits behind
    it; the worker finds it expired when it gets to it, and revokes it.
    (Needs --concurrency=1: with a free pool process, add would just run.)"""
    retries = _retries()
    since = worker.mark()
    busy = retries.sleep.delay(1.5)
    task_id = uuid()
    try:
        row = _error_of("expired", "worker 日志（丢弃）；结果（get() 重新抛出）",  # TaskRevokedError
                        lambda: retries.add.apply_async((1, 1), expires=0.5, task_id=task_id).get(timeout=GET_TIMEOUT))
    finally:
        busy.get(timeout=GET_TIMEOUT)  # leave the worker idle for the next case
    row.log_line = _logged(worker, f"Discarding revoked task: demo_tasks.retries.add[{task_id}]", since)
    return row


#: The cases, in the chapter's order: name -> function(worker) -> Row.
CASES: dict[str, Callable[[Proc], Row]] = {
    "wrong_arguments": wrong_arguments,
    "not_json": not_json,
    "unregistered": unregistered,
    "task_raises": task_raises,
    "get_timeout": get_timeout,
    "broker_down": broker_down,
    "backend_down_default": backend_down_default,
    "backend_down_short": backend_down_short,
    "expired": expired,
}
#: The one case that takes about 20 s.
SLOW_CASE = "backend_down_default"


def run_case(name: str, worker: Proc) -> Row:
    """Provoke one bad input (a key of CASES) against the running ``worker``."""
    check_setup(worker)
    return CASES[name](worker)


def _names(include_slow_default: bool, names: Iterable[str] | None = None) -> list[str]:
    chosen = list(CASES) if names is None else list(names)
    unknown = [n for n in chosen if n not in CASES]
    if unknown:
        raise KeyError(f"no such case: {', '.join(unknown)} (the cases: {', '.join(CASES)})")
    return [n for n in chosen if include_slow_default or n != SLOW_CASE]


def run_all(worker: Proc, *, include_slow_default: bool = True) -> list[Row]:
    """Every case, in order (``include_slow_default=False`` leaves out the 20-second one)."""
    return [run_case(name, worker) for name in _names(include_slow_default)]


def medians(worker: Proc, n: int = 5, *, include_slow_default: bool = True,
            names: Iterable[str] | None = None) -> dict[str, float]:
    """The median seconds of each case (or of ``names``) over ``n`` runs."""
    return {name: statistics.median(run_case(name, worker).seconds for _ in range(n))
            for name in _names(include_slow_default, names)}


# --- the table ---------------------------------------------------------------------------

def _duration(seconds: float) -> Measured:
    # Milliseconds shown: several cases fail within a few of them.
    return Measured(f"{seconds:.3f} 秒")


def table(rows: list[Row]) -> Table:
    """The rows as a table with Chinese headers, numbered; the measured times are Measured cells."""
    return Table(["情形", "异常", "消息", "在哪里出现", "用时"],
                 [[f"{i}. {r.case}", r.exception, r.message, r.where, _duration(r.seconds)]
                  for i, r in enumerate(rows, 1)])


def log_table(rows: list[Row]) -> Table:
    """The worker's log line of each row that has one, numbered as in table()."""
    return Table(["情形", "worker 日志里的那一行"],
                 [[f"{i}.", r.log_line] for i, r in enumerate(rows, 1) if r.log_line])


def medians_table(result: dict[str, float], n: int) -> Table:
    """What medians() returned, one row per case, labelled in Chinese."""
    return Table(["情形", f"{n} 次的中位数"], [[LABELS[name], _duration(seconds)] for name, seconds in result.items()])


def checks(rows: list[Row]) -> list[tuple[str, bool]]:
    """What the measured times must show, as labelled verdicts (for the cases among ``rows``):
    lower bounds and a ratio only, which a slow or busy machine cannot break."""
    seconds = {r.name: r.seconds for r in rows}
    found = []
    if "get_timeout" in seconds:
        found.append((f"get(timeout={SHORT_TIMEOUT:g}) 超时：至少等满了 timeout",
                      seconds["get_timeout"] >= SHORT_TIMEOUT))
    if "broker_down" in seconds:
        # task_publish_retry_policy's default sleeps 0, 0.2 and 0.4 s between its attempts.
        found.append(("broker 不可达：发送方先按 task_publish_retry_policy 重试，至少等了 0.5 秒才报错",
                      seconds["broker_down"] >= 0.5))
    if "backend_down_default" in seconds:
        # 20 retries up to 1 s apart (celery/backends/base.py), far past get()'s own timeout.
        found.append((f"结果后端不可达：默认的重试让 get(timeout={BACKEND_TIMEOUT:g}) 等了 15 秒以上",
                      seconds["backend_down_default"] >= 15))
        if "backend_down_short" in seconds:
            found.append(("缩短重试以后，同一个错误来得快 10 倍以上",
                          seconds["backend_down_short"] * 10 <= seconds["backend_down_default"]))
    if "expired" in seconds:
        # The task waits behind a 1.5 s sleep: it is dropped when the pool process is free, not at 0.5 s.
        found.append(("过期的任务在 worker 空出来时才被丢弃：至少等了 1 秒", seconds["expired"] >= 1.0))
    return found


# --- python -m instruments.bad_inputs ---------------------------------------------------------

def main(runs: int = 5) -> None:
    broker = launcher.start_embedded()
    try:
        # Before demo_tasks.retries is first imported (by the first case): this
        # process's app then uses the same broker as the worker, which
        # start_worker() gives REDIS_URL=broker.url as well.
        os.environ["REDIS_URL"] = broker.url
        worker = launcher.start_worker("demo_tasks.retries", broker=broker, fast=True, concurrency=1)
        rows = run_all(worker)
        print(table(rows))
        print()
        print(log_table(rows))
        print()
        print(verdicts(checks(rows)))
        print()
        print(f"每种情形跑 {runs} 次，用时的中位数：")
        print(medians_table(medians(worker, n=runs), runs))
    finally:
        launcher.stop_all()


if __name__ == "__main__":
    main()
