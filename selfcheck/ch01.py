"""Chapter 01's exercise checks: each one runs the learner's code against the
chapter's real worker and measures what happens.

    from selfcheck import ch01
    ch01.exercises.check(1, globals())

demo_tasks is imported inside the checks, never at import time: its app reads
REDIS_URL when first imported, which must happen after the chapter's
preparation pointed REDIS_URL at the chapter's own database.

No check has an upper limit on a time it measures: a loaded machine is slow,
not wrong, and the reference answer must pass there too. How the learner's code
waits is read from events instead: which tasks it sent (Celery's
``before_task_publish`` signal, in this process), whether the task sent before
was already done at that moment, whether a view's task was done when the view
returned. Times are checked with lower bounds (a task that sleeps 1 s cannot
be done sooner) and with ratios of two measurements.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from selfcheck import Exercises, Problems, given

exercises = Exercises(1)

#: Exercise 3: a web server with WORKERS sync workers, USERS requests at once,
#: each needing SECONDS of work (the question's 3 s, scaled down).
USERS, WORKERS, SECONDS = 10, 4, 0.3
#: The task the exercises queue.
SLOW_ADD = "demo_tasks.tasks.slow_add"


def _measured_with(ns: dict, name: str, call: str) -> bool:
    """Did the learner's latest cell that sets ``name`` set it from ``call``? Read from the
    kernel's input history (``In``); False where there is none (the checks run without a kernel)."""
    history = ns.get("In")
    if not isinstance(history, list):
        return False
    for source in reversed(history):
        for line in source.splitlines():
            target, equals, value = line.partition("=")
            if equals and target.strip() == name:
                return call in value.replace(" ", "")
    return False


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _serve(view, users: int = USERS, workers: int = WORKERS) -> tuple[list[float], list, list[bool]]:
    """The notebook's serve(), kept here so that a changed serve() in the notebook
    cannot change the check: each user's wait (s), what each view returned, and
    whether what it returned was a finished task at the moment the view returned
    (a view that waits for its task with get() returns a finished one)."""
    from celery.result import AsyncResult

    arrived = time.perf_counter()

    def handle(i):
        returned = view(i)
        waited = time.perf_counter() - arrived
        return waited, returned, isinstance(returned, AsyncResult) and returned.ready()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(handle, range(users)))
    return [d[0] for d in done], [d[1] for d in done], [d[2] for d in done]


@dataclass
class _Sent:
    """One slow_add message the learner's code sent, and whether the slow_add
    sent just before it was already done at that moment."""

    task_id: str
    previous_done: bool | None   # None: the first one
    call: tuple | None = None    # (x, y, seconds) it asks for, defaults filled in (None: unreadable)


def _call(body) -> tuple | None:
    """The (x, y, seconds) a slow_add message asks for (its body: args, kwargs, embed)."""
    import inspect

    from demo_tasks.tasks import slow_add

    try:
        args, kwargs = body[0], body[1]
        bound = inspect.signature(slow_add.run).bind(*args, **kwargs)
    except (TypeError, IndexError, KeyError):
        return None
    bound.apply_defaults()
    return tuple(bound.arguments.values())


@contextmanager
def _sends(ask_previous: bool = False) -> Iterator[list[_Sent]]:
    """Record every slow_add message sent from this process while the block runs
    (Celery's before_task_publish signal: delay(), apply_async(), a group, ...).
    ``ask_previous``: also ask the result backend, at that moment, whether the
    slow_add sent before it has finished (one round trip to Redis per message)."""
    from celery.result import AsyncResult
    from celery.signals import before_task_publish

    from demo_tasks.tasks import app

    sent: list[_Sent] = []
    lock = threading.Lock()   # views run in several threads

    def record(sender=None, headers=None, body=None, **_):
        if sender != SLOW_ADD or not headers:
            return
        with lock:
            previous = sent[-1].task_id if sent else None
            done = AsyncResult(previous, app=app).ready() if ask_previous and previous else None
            sent.append(_Sent(headers.get("id"), done, _call(body)))

    before_task_publish.connect(record, weak=False)
    try:
        yield sent
    finally:
        before_task_publish.disconnect(record)


def _queued() -> int:
    """How many messages wait in the chapter's default queue (a Redis list), not
    yet taken by a worker: more than its prefetch limit, which inspect cannot see."""
    import redis

    from demo_tasks.tasks import app

    with redis.Redis.from_url(app.conf.broker_url, socket_timeout=5, socket_connect_timeout=5) as conn:
        return conn.llen(app.conf.task_default_queue)


def _worker_idle(timeout: float = 20.0) -> bool:
    """Wait until the chapter's worker runs and holds no task, and none waits in
    the queue (tasks an earlier attempt queued would make a timing wrong). False
    if it never does: no worker answers, or it stays busy."""
    from demo_tasks.tasks import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inspect = app.control.inspect(timeout=1.0, limit=1)   # one worker in this chapter: the first reply will do
        active, reserved = inspect.active(), inspect.reserved()
        if active is not None and reserved is not None \
                and not any(active.values()) and not any(reserved.values()) and not _queued():
            return True
        time.sleep(0.1)
    return False


def _finished(result, timeout: float = 20.0) -> str:
    """The state of ``result`` once it is done, read again from the result backend
    by its id (PENDING if the worker did not finish it in ``timeout``: a busy
    machine is slow, so the check waits instead of reading the state once)."""
    deadline = time.monotonic() + timeout
    while not result.ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    return result.state


@exercises.register(1)
def _add_in_the_worker(ns: dict) -> Problems:
    from celery.result import AsyncResult

    result, answer = ns.get("result_1"), ns.get("answer_1")
    if isinstance(result, AsyncResult) and answer is None:
        return ["`answer_1` 是 None：结果还没到就读了 `.result`？用 `result_1.get(timeout=10)` 等它"]
    problems = (given(ns, "result_1", "排队时 `add.delay(40, 2)` 返回的对象")
                + given(ns, "answer_1", "从 worker 取回的结果"))
    if problems:
        return problems
    from demo_tasks.tasks import app  # only now: importing it makes its app the current one

    if not isinstance(result, AsyncResult):
        return [f"`result_1` 应该是 `delay()` 返回的 AsyncResult，现在是 {type(result).__name__}："
                "是不是直接调用了 `add(40, 2)`，或者把 `get()` 取回的值存进了 `result_1`？"]
    if isinstance(answer, AsyncResult):
        return ["`answer_1` 还是一个 AsyncResult：用 `result_1.get(timeout=10)` 取回结果"]
    # What the worker stored in the result backend, looked up again by the task id
    # (waited for: an answer typed in right after delay() is checked before the worker is done).
    stored = AsyncResult(result.id, app=app)
    state = _finished(stored)
    if state == "PENDING":
        return ["20 秒内结果后端里没有这个任务的结果：worker 在运行吗？"
                "重新运行“准备”里的单元格，再运行你的答案"]
    if state != "SUCCESS":
        return [f"这个任务在 worker 里的状态是 {state}（{stored.result!r}）：参数应该是 (40, 2)"]
    if stored.result != 42:
        return [f"worker 算出的是 {stored.result!r}，不是 42：参数应该是 (40, 2)"]
    if answer != 42:
        return [f"`answer_1` 是 {answer!r}，不是 worker 算出的 42"]
    return []


@exercises.register(2)
def _four_tasks_two_processes(ns: dict) -> Problems:
    from celery.result import AsyncResult

    problems = (given(ns, "predicted_2", "你预测的总用时（秒，一个数）")
                + given(ns, "four_tasks", "排队 4 个任务、等它们做完、返回 4 个结果"))
    if problems:
        return problems
    predicted = ns["predicted_2"]
    if not _is_number(predicted):
        return [f"`predicted_2` 应该是一个数（秒），现在是 {predicted!r}"]
    if not _worker_idle():
        return ["worker 没有回应，或者一直有没做完的任务：等几秒再检查；还不行就重新运行“准备”里的单元格"]
    with _sends(ask_previous=True) as sent:
        started = time.perf_counter()
        values = ns["four_tasks"]()
        elapsed = time.perf_counter() - started
    values = list(values) if isinstance(values, (list, tuple)) else values
    if isinstance(values, list) and any(isinstance(v, AsyncResult) for v in values):
        return ["`four_tasks()` 返回的是 AsyncResult：先用 `get(timeout=10)` 取回结果"]
    if values != [0, 2, 4, 6]:
        return [f"`four_tasks()` 返回了 {values!r}，应该是 [0, 2, 4, 6]（slow_add(i, i, seconds=1)，i = 0…3）"]
    rounds = math.ceil(4 / 2)  # 4 tasks, 2 child processes
    problems = []
    if len(sent) < 4:
        problems.append(f"`four_tasks()` 只把 {len(sent)} 个 slow_add 放进了队列，其余的是在这里直接调用的："
                        "4 个都用 delay() 放进队列，让 worker 去执行")
    elif all(s.previous_done for s in sent[1:]):
        # Each message went out only after the one before it had finished: one after another.
        problems.append(f"4 个任务是一个接一个执行的（这次用时 {elapsed:.2f} 秒）：每个任务都等上一个做完才发出。"
                        "先把 4 个任务都用 delay() 放进队列，再逐个 get()；不要每个 delay() 之后马上 get()")
    if elapsed < rounds - 0.1:
        problems.append(f"4 个任务只用了 {elapsed:.2f} 秒：每个任务都应该是 seconds=1")
    if abs(predicted - rounds) > 0.25:
        problems.append(f"你预测 {predicted} 秒，这次实际用时 {elapsed:.2f} 秒：2 个子进程同时只能执行 2 个任务，"
                        "4 个任务要分几轮？")
    return problems


@exercises.register(3)
def _ten_users_four_workers(ns: dict) -> Problems:
    from celery.result import AsyncResult

    names = {
        "blocking_view": "阻塞版视图：直接调用 slow_add(i, i, seconds=0.3)",
        "queued_view": "排队版视图：slow_add.delay(i, i, seconds=0.3)，立刻返回",
        "predicted_blocking": "算出的阻塞版最慢用户的等待（秒）",
        "predicted_queued": "算出的排队版最慢用户的等待（秒）",
        "measured_blocking": "测出的阻塞版最慢用户的等待：max(serve(blocking_view))",
        "measured_queued": "测出的排队版最慢用户的等待：max(serve(queued_view))",
    }
    problems = [p for name, what in names.items() for p in given(ns, name, what)]
    if problems:
        return problems
    figures = ("predicted_blocking", "predicted_queued", "measured_blocking", "measured_queued")
    not_numbers = [name for name in figures if not _is_number(ns[name])]
    if not_numbers:
        return [f"`{name}` 应该是一个数（秒）" for name in not_numbers]

    rounds = math.ceil(USERS / WORKERS)
    expected = rounds * SECONDS          # the slowest user of the blocking server
    problems = []
    if abs(ns["predicted_blocking"] - expected) > 0.05:
        problems.append(f"再算一次 `predicted_blocking`：{USERS} 个请求、{WORKERS} 个工作进程，"
                        f"每个请求 {SECONDS} 秒，要分几轮处理？")
    if not 0 <= ns["predicted_queued"] < 0.1:
        problems.append("再想想 `predicted_queued`：排队版的视图只发一条消息就返回，不等任务做完")

    # The real run, with the learner's views: blocking first.
    with _sends() as sent:
        waits, returned, _ = _serve(ns["blocking_view"])
    slowest_blocking, fastest_blocking = max(waits), min(waits)
    blocking_ok = False
    if returned != [i + i for i in range(USERS)]:
        problems.append("`blocking_view(i)` 应该返回 slow_add(i, i, seconds=0.3) 的结果 i + i")
    elif sent:
        problems.append(f"阻塞版的视图把 {len(sent)} 个任务放进了队列：是不是写成了 delay().get()？"
                        "那样每个请求都要排队等 worker 的 2 个子进程。阻塞版要直接调用 slow_add(i, i, seconds=0.3)")
    elif slowest_blocking < expected - 0.05:
        problems.append(f"阻塞版最慢的用户只等了 {slowest_blocking:.2f} 秒：blocking_view 要直接调用 "
                        "slow_add(i, i, seconds=0.3)")
    else:
        blocking_ok = True

    with _sends() as sent:
        waits, returned, finished_on_return = _serve(ns["queued_view"])
    slowest_queued, fastest_queued = max(waits), min(waits)
    if not all(isinstance(r, AsyncResult) for r in returned):
        problems.append("`queued_view(i)` 应该返回 `slow_add.delay(i, i, seconds=0.3)` 给的 AsyncResult")
    else:
        if all(finished_on_return):
            # Every view returned a task that was already done: it waited for it.
            problems.append("排队版的每个视图都等到任务做完才返回：queued_view 在 delay() 之后要立刻返回，不要 get()")
        elif blocking_ok and fastest_queued >= min(fastest_blocking, SECONDS) - 0.01:
            # Even its fastest user waited as long as one 0.3 s call, as every user of the blocking
            # run just made did: the view calls slow_add itself. (Not its slowest user: on a loaded
            # machine ten sends from ten threads can take 0.3 s, but never every one of them.)
            problems.append(f"排队版最快的用户也等了 {fastest_queued:.2f} 秒，和阻塞版的用户一样，至少是一次 "
                            f"slow_add 的时间（{SECONDS} 秒）：queued_view 只发一条消息就返回，"
                            "不要在视图里直接调用 slow_add")
        # The work the worker will do, read from the messages (not waited for: the worker does
        # it in the background, and an attempt after this one waits for an idle worker where it measures).
        if Counter(s.call for s in sent) != Counter((i, i, SECONDS) for i in range(USERS)):
            problems.append("排队的任务不对：queued_view(i) 应该排队 slow_add(i, i, seconds=0.3)，每个请求一个"
                            f"（这里排队了 {len(sent)} 个）")

    # The learner's measured figures: real measurements of the two servers.
    measured_blocking, measured_queued = ns["measured_blocking"], ns["measured_queued"]
    if measured_blocking < expected - 0.05:
        problems.append(f"`measured_blocking` 是 {measured_blocking:.2f}，可是 {rounds} 轮、每轮 {SECONDS} 秒，"
                        f"阻塞版最慢的用户至少要等 {expected:.1f} 秒（这里重新测得用时 {slowest_blocking:.2f} 秒）："
                        "用 max(serve(blocking_view)) 测量")
    elif blocking_ok and measured_blocking > 3 * slowest_blocking:
        problems.append(f"`measured_blocking` 是 {measured_blocking:.2f}，是这里重新测得的 {slowest_blocking:.2f} 秒的"
                        "好几倍：是不是把所有用户的等待加了起来？用 max(serve(blocking_view))，最慢的那一个")
    # Catches a queued figure measured on the blocking view (the same ~0.9 s); the margin leaves
    # room for a loaded laptop, where one delay() can stall for a few tenths of a second.
    # A queued figure that came out slow, from a cell that measured the queued view, is what a loaded
    # machine gives now and then (a send stalled for a second): the method is right, the figure is load.
    if measured_queued * 1.5 > measured_blocking and _measured_with(ns, "measured_queued", "serve(queued_view)"):
        pass
    elif measured_queued < 0 or measured_queued * 1.5 > measured_blocking:
        problems.append(f"`measured_queued` 是 {measured_queued:.3f}，应该远小于阻塞版的 `measured_blocking`"
                        f"（这里重新测得排队版用时 {slowest_queued:.3f} 秒）：用 max(serve(queued_view)) 测量")
    return problems
