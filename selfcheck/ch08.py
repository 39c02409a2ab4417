"""Chapter 08's exercise checks, run against the chapter's real workers.

1. ``average_of_squares(numbers)`` returns a chord *signature* (not a result):
   ``mul.s(x, x)`` for every number in its header, ``average.s()`` as its
   callback. The check sends it twice and compares the answers.
2. ``my_routes`` (a ``task_routes`` dict) sends ``fast_ping`` to the queue
   ``ch08-ping`` and keeps ``slow_report`` on ``slow``; ``ping_worker_command``
   starts a worker that consumes ``ch08-ping`` only. The check routes with the
   learner's dict in an app of its own (the chapter's app is left alone), starts
   a real worker on the queues the command names, sends ``fast_ping`` and reads
   from the task's own run record which worker ran it.
"""

from __future__ import annotations

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

@exercises.register(1)
def average_chord(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "average_of_squares", "一个返回 chord 签名的函数")
    if problems:
        return problems
    from celery.canvas import Signature, _chord
    from celery.result import ResultBase

    signature = ns["average_of_squares"]([1, 2, 3, 4])
    if isinstance(signature, ResultBase):
        return ["average_of_squares 返回了一个结果：它已经把任务发出去了。返回签名 chord(…)，"
                "不要调用 delay()、apply_async() 或在末尾加 ()"]
    if not isinstance(signature, Signature):
        return [f"average_of_squares 应该返回一个签名（chord），现在返回的是 {type(signature).__name__}"]
    if not isinstance(signature, _chord):
        return ["返回的签名不是 chord：用 chord(头部, 回调)，或者 group(…) | average.s()"]
    header = list(signature.tasks)
    problems = []
    if len(header) != 4 or any(task.task != MUL for task in header):
        problems.append("头部应该是每个数一个 mul.s(x, x)（[1, 2, 3, 4] 就是 4 个）")
    if signature.body is None or signature.body.task != AVERAGE:
        problems.append("回调应该是 average.s()：它收到头部所有结果组成的列表")
    if problems:
        return problems
    for numbers, expected in (([1, 2, 3, 4], 7.5), ([3], 9.0)):
        got = ns["average_of_squares"](numbers).apply_async().get(timeout=WAIT)
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


def _queues_in(command: str) -> tuple[list[str] | None, str | None]:
    """The queues a `celery ... worker -Q ...` command consumes, or a hint why it is not one."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        return None, f"命令解析不了：{exc}"
    if not words or words[0] != "celery" or "worker" not in words:
        return None, "命令应该是 celery -A demo_tasks.workflows worker …"
    # Celery 5 takes -A before the subcommand: after it, `celery worker -A ...` is refused.
    if _option(words[:words.index("worker")], "-A", "--app") != "demo_tasks.workflows":
        return None, ("命令里要有 -A demo_tasks.workflows，而且写在 worker 前面（Celery 5 的顺序），"
                      "worker 才知道有哪些任务")
    queues = _option(words, "-Q", "--queues")
    if queues is None:
        return None, "命令里没有 -Q：不写的话，worker 消费默认队列 celery，不是 ch08-ping"
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

    broker = ns["broker"]
    # An app of the check's own with the learner's routes: the chapter's app keeps its settings.
    probe = Celery("ch08-exercise-2", broker=broker.url, backend=broker.url, set_as_current=False)
    probe.conf.task_routes = routes

    def queue_of(name: str) -> str:
        return probe.amqp.router.route({}, name)["queue"].name

    problems = []
    if queue_of(FAST_PING) != PING_QUEUE:
        problems.append(f"按 my_routes，fast_ping 去了队列 {queue_of(FAST_PING)!r}，应该是 {PING_QUEUE!r}"
                        f"（键是任务的全名 {FAST_PING!r}）")
    if queue_of(SLOW_REPORT) != "slow":
        problems.append("slow_report 不再去 slow 了：把原来那一条路由也留在 my_routes 里")
    if queue_of("demo_tasks.workflows.add") != "celery":
        problems.append("别的任务（例如 add）也被改了路由：只给 fast_ping 和 slow_report 写路由")
    queues, hint = _queues_in(command)
    if hint:
        problems.append(hint)
    elif PING_QUEUE not in queues:
        problems.append(f"命令的 -Q 是 {','.join(queues)}，里面没有 {PING_QUEUE}")
    elif queues != [PING_QUEUE]:
        problems.append(f"这个 worker 只该消费 {PING_QUEUE}：-Q {','.join(queues)} 会让它也拿走别的队列的任务")
    if problems:
        return problems
    return _run_ping(ns, probe)


def _run_ping(ns: dict, probe) -> list[str]:
    """Start a real worker on the exercise's queue, send fast_ping with the learner's routes."""
    import launcher
    from demo_tasks import workflows

    try:
        worker = launcher.start_worker("demo_tasks.workflows", broker=ns["broker"], fast=True, name="ping",
                                       queues=[PING_QUEUE], concurrency=1)
    except launcher.ProcessError as exc:
        return [f"worker 启动不了：{str(exc).splitlines()[0]}"]
    try:
        result = probe.send_task(FAST_PING)
        if result.get(timeout=WAIT) != "pong":
            return ["fast_ping 没有回答 pong"]
        ran_on = [r["hostname"].split("@")[0] for r in workflows.read_records(workflows.RUNS_KEY)
                  if r["id"] == result.id]
        if ran_on != ["ping"]:
            return [f"fast_ping 由 {ran_on} 运行了，不是消费 {PING_QUEUE} 的那个 worker"]
        return []
    finally:
        worker.cleanup()
