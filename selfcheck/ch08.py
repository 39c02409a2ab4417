"""Chapter 08's exercise checks, run against the chapter's real workers.

1. A word-count chord that tolerates a failing piece: in ``my_tasks.py`` (the
   chapter's scratch folder, ``%%writeblock my_tasks.py exercise-1``) the tasks
   ``count_piece_safely(text)`` and ``merge_safely(results)``. The check starts a
   new worker for the file (queue ``ch08-exercises``: it imports the file afresh),
   sends three chords of small pieces -- one with a piece that was never read
   (None), one with a piece that is not text, one without a broken piece -- and
   wants from the callback ``{"top": [[word, count], ...], "failed": [indexes]}``:
   the top words of the pieces that worked, and which ones failed. How a piece
   tells the callback that it failed is the learner's design.
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
exercise 1 has a worker and a queue of its own; exercise 2 accepts any worker
that consumes ``ch08-ping`` (asked with ``inspect``, whatever number answer).
"""

from __future__ import annotations

import os
import shlex

import selfcheck

exercises = selfcheck.Exercises(8)

#: The queue of exercise 2.
PING_QUEUE = "ch08-ping"
#: How long a check waits for a worker (a busy machine is slow, not wrong).
WAIT = 20.0

FAST_PING = "demo_tasks.workflows.fast_ping"
SLOW_REPORT = "demo_tasks.workflows.slow_report"


# --- Exercise 1: a word count that survives a failing piece --------------------------------

#: The queue of exercise 1's worker (not the chapter worker's ``celery``).
QUEUE = "ch08-exercises"
#: The learner's file, in the chapter's scratch folder (``exercises_dir``).
FILE = "my_tasks.py"
COUNT = "my_tasks.count_piece_safely"
MERGE = "my_tasks.merge_safely"

#: The beginning of my_tasks.py: the exercise adds its tasks below it.
STARTER = '''"""Your tasks for chapter 08's exercise 1. A worker for this file:
celery -A my_tasks worker --loglevel=info --queues=ch08-exercises"""

import os

from celery import Celery

from demo_tasks import wordcount

app = Celery("my_tasks", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
app.conf.task_default_queue = "ch08-exercises"    # not the queue of the chapter's worker

# The exercise's answer is a block below, written by the notebook (%%writeblock my_tasks.py exercise-1).
'''

#: Small pieces of text the check counts (the chapter's own words). The broken pieces it slips in:
#: one that was never read (None) and one that is not text at all (a number).
PIECES = ("Celery 把任务交给 worker，worker 运行任务，结果存进结果后端。",
          "chord 等头部的任务都完成，再把结果交给回调。回调汇总结果。",
          "一个任务失败了，chord 的回调就不运行：除非每一块自己接住错误。")
#: (pieces, the indexes of the ones that fail) for each chord the check sends.
CASES = (((PIECES[0], None, PIECES[2]), [1]),
         ((7, PIECES[1]), [0]),
         (PIECES, []))


def _describe(piece) -> str:
    if piece is None:
        return "没读到的一块 None"
    if not isinstance(piece, str):
        return f"不是文字的一块 {piece!r}"
    return f"“{piece[:8]}…”"


def _expected_top(pieces, n: int = 10) -> list[list]:
    from demo_tasks import wordcount

    counts = wordcount.merge(wordcount.count_words(p) for p in pieces if isinstance(p, str))
    return [[word, count] for word, count in wordcount.top(counts, n)]


def _files(ns: dict) -> selfcheck.Workspace | None:
    return selfcheck.exercise_files(ns, FILE)


def _purge(app) -> None:
    selfcheck.purge_queue(app, QUEUE)


def _judge(result, pieces, failing: list[int]) -> list[str]:
    """What is wrong with one chord's outcome (what merge_safely returned)."""
    if not isinstance(result, dict) or not {"top", "failed"} <= set(result):
        return [f"merge_safely 返回了 {result!r:.120}：它应该返回一个字典 "
                "{\"top\": 前 10 个词 [[词, 次数], ...], \"failed\": [失败的块的序号]}"]
    problems = []
    failed = result["failed"]
    if not isinstance(failed, list) or sorted(failed) != failing:
        which = "、".join(f"第 {i} 块（{_describe(pieces[i])}）" for i in failing) or "没有一块"
        problems.append(f"{len(pieces)} 块里失败的是 {which}，failed 应该是 {failing}，现在是 {failed!r}："
                        "回调要从每一块的返回值里认出失败的那块（结果按块发送的顺序排列，序号从 0 数）")
    expected = _expected_top(pieces)
    if [list(pair) for pair in result["top"] or []] != expected:
        problems.append(f"top 应该是成功的那几块的词频加起来的前 10 个（{expected[:2]}…），现在是 "
                        f"{result['top']!r:.120}：用 wordcount.merge 加起来，wordcount.top 取前 10 个")
    return problems


@exercises.register(1)
def tolerant_chord(ns: dict) -> list[str]:
    from celery import Celery, chord
    from celery.exceptions import TimeoutError as ResultTimeout


    files = _files(ns)
    if files is None:
        return ["先运行“练习”一节开头的单元格（它写好 my_tasks.py 的开头）"]
    if files.stub(FILE, "exercise-1"):
        return [f"还没有答案：在 %%writeblock {FILE} exercise-1 的单元格里定义任务 count_piece_safely 和 merge_safely"]
    broker = ns["broker"]
    app = Celery("my_tasks", broker=broker.url, backend=broker.url, set_as_current=False)
    _purge(app)
    worker, problem = selfcheck.start_exercise_worker(files, broker, QUEUE, FILE, concurrency=1)
    if problem:
        return [problem]
    try:
        registered = worker.banner_section()
        missing = [name.rsplit(".", 1)[1] for name in (COUNT, MERGE) if name not in registered]
        if missing:
            return [f"{FILE} 的 exercise-1 这一段里没有任务 {'、'.join(missing)}："
                    "用 @app.task 定义它，函数名就是任务名"]
        for pieces, failing in CASES:
            # A new chord each time: new task ids, so nothing an earlier attempt left is read.
            header = [app.signature(COUNT, (piece,), queue=QUEUE) for piece in pieces]
            sent = chord(header, app.signature(MERGE, queue=QUEUE), app=app).apply_async()
            try:
                got = sent.get(timeout=WAIT)
            except ResultTimeout:
                return [f"等了 {WAIT:g} 秒还没有结果：两个任务都定义在 my_tasks.py 里了吗？"]
            except Exception as exc:
                broken = [(i, r.result) for i, r in enumerate(sent.parent.results) if r.state == "FAILURE"]
                if broken:
                    i, error = broken[0]
                    return [f"第 {i} 块（{_describe(pieces[i])}）在 count_piece_safely 里抛出了 "
                            f"{type(error).__name__}: {error}，所以 chord 的回调 merge_safely 根本没有运行。"
                            "让 count_piece_safely 自己接住任何异常（except Exception），"
                            "返回一个标明失败的值，而不是抛出"]
                return [f"回调 merge_safely 在 worker 上失败了：{type(exc).__name__}: {exc}"]
            problems = _judge(got, pieces, failing)
            if problems:
                return problems
        return []
    finally:
        worker.cleanup()
        _purge(app)
        app.close()


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
