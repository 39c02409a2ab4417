"""Chapter 08's exercise checks, run against the chapter's real workers.

1. ``average_of_squares(numbers)`` returns a chord *signature* (not a result):
   ``mul.s(x, x)`` for every number in its header, ``average.s()`` as its
   callback. The check looks at the signature's shape first (so a group, a
   chain or a chord that was already sent each get their own hint), then sends
   it twice and compares the answers.
2. ``my_routes`` (a ``task_routes`` dict) sends ``fast_ping`` to the queue
   ``ch08-ping`` and keeps ``slow_report`` on ``slow``; ``ping_worker_command``
   starts a worker that consumes ``ch08-ping`` only. The check routes with the
   learner's dict in an app of its own (the chapter's app is left alone), starts
   a real worker on the queues the command names, sends ``fast_ping`` and reads
   from the task's own run record which worker ran it.

Either check can run again and again with the same verdict for the same answer:
every send gets a new task id, and a check reads only the results and run records
of the ids it sent itself (what an earlier attempt left is never looked at). A
worker the learner joined to the chapter's database may run the check's tasks:
exercise 1 reads results, whoever computed them; exercise 2 accepts any worker
that consumes ``ch08-ping`` (asked with ``inspect``, whatever number answer).
"""

from __future__ import annotations

import inspect
import os
import shlex

import selfcheck

exercises = selfcheck.Exercises(8)

#: The queue of exercise 2.
PING_QUEUE = "ch08-ping"
#: How long a check waits for a worker (a busy machine is slow, not wrong).
WAIT = 20.0

MUL = "demo_tasks.workflows.mul"
AVERAGE = "demo_tasks.workflows.average"
FAST_PING = "demo_tasks.workflows.fast_ping"
SLOW_REPORT = "demo_tasks.workflows.slow_report"


# --- Exercise 1: a chord that averages ------------------------------------------------------

def _shown(signature) -> str:
    """A header or callback signature as the learner wrote it: ``mul.s(1, 1)``."""
    name = str(signature.task).rsplit(".", 1)[-1]
    words = [repr(a) for a in signature.args] + [f"{k}={v!r}" for k, v in signature.kwargs.items()]
    return f"{name}.{'si' if signature.immutable else 's'}({', '.join(words)})"


def _squares(x, signature) -> bool:
    """Whether the header signature is a call of mul(x, x) (positional or by keyword)."""
    from demo_tasks import workflows

    try:
        bound = inspect.signature(workflows.mul.run).bind(*signature.args, **signature.kwargs)
    except TypeError:
        return False
    return bound.arguments == {"x": x, "y": x}


def _not_a_chord(signature) -> str:
    """The hint for a returned value that is not a chord signature."""
    from celery.canvas import Signature, _chain, group
    from celery.result import ResultBase

    if isinstance(signature, ResultBase):
        return ("average_of_squares 返回了一个结果（AsyncResult）：它已经把任务发出去了。"
                "返回签名 chord(头部, average.s())；不要调用 delay()、apply_async()，"
                "也不要写成 chord(头部)(average.s())（那样会立刻发送）")
    if isinstance(signature, (int, float)) and not isinstance(signature, bool):
        return (f"average_of_squares 返回了一个数 {signature!r}：结果在函数里就算出来了（用 get() 等了结果？）。"
                "返回 chord 签名，让 worker 去算，检查会自己发送它")
    if isinstance(signature, group):
        return ("返回的是 group：它只有头部，没有回调。写成 chord(头部, average.s())，"
                "或者 group(…) | average.s()")
    if isinstance(signature, _chain):
        return ("返回的是 chain：一步接一步，上一步的结果补进下一步。这里要的是 chord："
                "头部的 mul.s(x, x) 同时运行，回调 average.s() 收到它们的结果列表")
    if isinstance(signature, Signature):
        return f"返回的是一个任务的签名 {_shown(signature)}，不是 chord：用 chord(头部, average.s())"
    return f"average_of_squares 应该返回一个签名（chord），现在返回的是 {type(signature).__name__}"


def _chord_problems(signature, numbers: list[int]) -> list[str]:
    """What is wrong with the header and the callback of a chord for ``numbers``."""
    problems = []
    header = list(signature.tasks)
    if len(header) != len(numbers) or any(task.task != MUL for task in header):
        problems.append(f"头部应该是每个数一个 mul.s(x, x)（{numbers} 就是 {len(numbers)} 个），"
                        f"现在是 [{', '.join(_shown(task) for task in header)}]")
    else:
        wrong = [_shown(task) for x, task in zip(numbers, header, strict=True) if not _squares(x, task)]
        if wrong:
            problems.append(f"头部的 mul 要算 x 的平方，也就是 mul.s(x, x)：{numbers} 得到的却有 {', '.join(wrong)}")
    body = signature.body
    if body is None or body.task != AVERAGE:
        problems.append("回调应该是 average.s()：它收到头部所有结果组成的列表"
                        + ("" if body is None else f"（现在是 {_shown(body)}）"))
    elif body.immutable or body.args or body.kwargs:
        problems.append(f"回调要写成 average.s()，不带参数也不用 .si()：它唯一的参数就是头部结果的列表"
                        f"（现在是 {_shown(body)}）")
    return problems


@exercises.register(1)
def average_chord(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "average_of_squares", "一个返回 chord 签名的函数")
    if problems:
        return problems
    from celery.canvas import _chord
    from celery.exceptions import TimeoutError as ResultTimeout

    for numbers, expected in (([1, 2, 3, 4], 7.5), ([3], 9.0)):
        signature = ns["average_of_squares"](numbers)
        if not isinstance(signature, _chord):
            return [_not_a_chord(signature)]
        problems = _chord_problems(signature, numbers)
        if problems:
            return problems
        try:    # a new chord each time: new task ids, so nothing an earlier attempt left is read
            got = signature.apply_async().get(timeout=WAIT)
        except ResultTimeout:
            return [f"等了 {WAIT:g} 秒还没有结果：本章的 worker 还在运行吗（上面“worker 回应了 ping”的自测）？"
                    "签名里用 .set(queue=…) 指定的队列有 worker 消费吗？"]
        except Exception as exc:
            return [f"average_of_squares({numbers}) 在 worker 上失败了：{type(exc).__name__}: {exc}"]
        if got != expected:
            return [f"average_of_squares({numbers}) 算出 {got!r}，应该是 {expected}"]
    return []


# --- Exercise 2: a queue of its own ---------------------------------------------------------

def _option(words: list[str], short: str, long: str) -> str | None:
    """The value of an option given as `-A x`, `-Ax`, `--app x` or `--app=x` (the last one wins)."""
    value = None
    for i, word in enumerate(words):
        if word in (short, long) and i + 1 < len(words):
            value = words[i + 1]
        elif word.startswith(long + "="):
            value = word.split("=", 1)[1]
        elif word.startswith(short) and len(word) > len(short):
            value = word[len(short):]
    return value


def _program(words: list[str]) -> list[str] | None:
    """The words after the program, if the command runs celery: `celery …`, `.venv/bin/celery …`
    or `python -m celery …`, after any `NAME=value` settings (e.g. REDIS_URL=…/8)."""
    while words and "=" in words[0] and words[0].split("=", 1)[0].isidentifier():
        words = words[1:]
    if words and os.path.basename(words[0]) == "celery":
        return words[1:]
    if len(words) > 2 and os.path.basename(words[0]).startswith("python") and words[1:3] == ["-m", "celery"]:
        return words[3:]
    return None


def _queues_in(command: str) -> tuple[list[str] | None, str | None]:
    """The queues a `celery ... worker -Q ...` command consumes, or a hint why it is not one."""
    try:
        words = _program(shlex.split(command))
    except ValueError as exc:
        return None, f"ping_worker_command 解析不了：{exc}"
    if words is None or "worker" not in words:
        return None, "ping_worker_command 应该是 celery -A demo_tasks.workflows worker … 这样的命令"
    # Celery 5 takes -A before the subcommand: after it, `celery worker -A ...` is refused.
    if _option(words[:words.index("worker")], "-A", "--app") != "demo_tasks.workflows":
        return None, ("ping_worker_command 里要有 -A demo_tasks.workflows，而且写在 worker 前面（Celery 5 的顺序），"
                      "worker 才知道有哪些任务")
    queues = _option(words, "-Q", "--queues")
    if queues is None:
        return None, f"ping_worker_command 里没有 -Q：不写的话，worker 消费默认队列 celery，不是 {PING_QUEUE}"
    return [q for q in queues.split(",") if q], None


@exercises.register(2)
def own_queue(ns: dict) -> list[str]:
    problems = (selfcheck.given(ns, "my_routes", "一个 task_routes 字典")
                + selfcheck.given(ns, "ping_worker_command", "一条启动 worker 的命令（字符串）"))
    if problems:
        return problems
    routes, command = ns["my_routes"], ns["ping_worker_command"]
    if not isinstance(routes, dict):
        return [f"my_routes 应该是一个字典（任务名 → {{'queue': 队列名}}），现在是 {type(routes).__name__}"]
    if not isinstance(command, str):
        return ["ping_worker_command 应该是一个字符串，就是你在终端里输入的那条命令"]
    from celery import Celery

    from demo_tasks import workflows

    url = workflows.app.conf.broker_url
    # An app of the check's own with the learner's routes: the chapter's app keeps its settings.
    probe = Celery("ch08-exercise-2", broker=url, backend=url, set_as_current=False)
    probe.conf.task_routes = routes

    def queue_of(name: str) -> str:
        return probe.amqp.router.route({}, name)["queue"].name

    problems = []
    if queue_of(FAST_PING) != PING_QUEUE:
        problems.append(f"按 my_routes，fast_ping 去了队列 {queue_of(FAST_PING)!r}，应该是 {PING_QUEUE!r}"
                        f"（键是任务的全名 {FAST_PING!r}）")
    if queue_of(SLOW_REPORT) != "slow":
        problems.append(f"按 my_routes，slow_report 去了队列 {queue_of(SLOW_REPORT)!r}，不再去 slow 了："
                        "把原来那一条路由也留在 my_routes 里")
    if queue_of("demo_tasks.workflows.add") != "celery":
        problems.append("my_routes 把别的任务（例如 add）也改了路由：只给 fast_ping 和 slow_report 写路由")
    queues, hint = _queues_in(command)
    if hint:
        problems.append(hint)
    elif PING_QUEUE not in queues:
        problems.append(f"ping_worker_command 的 -Q 是 {','.join(queues)}，里面没有 {PING_QUEUE}")
    elif queues != [PING_QUEUE]:
        problems.append(f"这个 worker 只该消费 {PING_QUEUE}：ping_worker_command 的 -Q {','.join(queues)} "
                        "会让它也拿走别的队列的任务")
    if problems:
        return problems
    return _run_ping(probe, queues)


def _consumers(probe, hostname: str) -> list[str]:
    """The queues the worker ``hostname`` consumes, as it says itself (any number may answer)."""
    replies = probe.control.inspect(destination=[hostname], timeout=2.0).active_queues() or {}
    return [q["name"] for queues in replies.values() for q in queues or ()]


def _run_ping(probe, queues: list[str]) -> list[str]:
    """Start a real worker on the command's queue, send fast_ping with the learner's routes."""
    import launcher
    from demo_tasks import workflows

    try:
        worker = launcher.start_worker("demo_tasks.workflows", broker=probe.conf.broker_url, fast=True,
                                       name="ping", queues=queues, concurrency=1)
    except launcher.ProcessError as exc:
        return [f"worker 启动不了：{str(exc).splitlines()[0]}"]
    try:
        result = probe.send_task(FAST_PING)    # a new task id: only this run's record is read below
        try:
            if result.get(timeout=WAIT) != "pong":
                return ["fast_ping 没有回答 pong"]
        except Exception as exc:
            return [f"等 fast_ping 的结果时出错：{type(exc).__name__}: {exc}"]
        hostnames = [r["hostname"] for r in workflows.read_records(workflows.RUNS_KEY) if r["id"] == result.id]
        if not hostnames:
            return ["fast_ping 运行了，却没有留下运行记录：本章的 worker 用的是本章的数据库吗？"]
        if hostnames[0].split("@")[0] == "ping":
            return []
        # Another worker on this chapter's database took it (one the learner started in a terminal):
        # right, as long as that worker too consumes the queue the routes sent fast_ping to.
        if PING_QUEUE in _consumers(probe, hostnames[0]):
            return []
        return [f"fast_ping 由 {hostnames[0]} 运行了，它不消费 {PING_QUEUE}"]
    finally:
        worker.cleanup()
