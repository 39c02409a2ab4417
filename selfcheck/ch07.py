"""Chapter 07's exercise checks. The learner writes tasks into ``my_tasks.py``
(in the chapter's scratch folder, started from ``STARTER``), each exercise as
its own block (``%%writeblock my_tasks.py exercise-N``, selfcheck.Workspace):
running an answer again, or the reference answer, replaces the block, so the
file holds one definition of each task, the latest.

Each check starts a new worker for that file (``celery -A my_tasks worker`` on
a queue of its own, so the chapter's worker never takes these tasks): it
imports the file afresh, as the learner's own worker would after a restart.
It sends the task by name under task ids no earlier attempt used, and judges
what really happened: the task's state and result, the flaky service's own
record of every request, the worker's log, the files left. Whatever an earlier
attempt left (a retry still waiting in the queue, a half-written file) is
cleared first, so the same answer gets the same verdict whatever ran before.

1. ``fetch_politely(url)``: retries 503 and timeouts (at most 3 times, a short
   wait), never a 4xx;
2. ``export_rows(seconds)``: a soft time limit of 1 s; on it, the half-written
   file is removed and the task ends normally;
3. ``fetch_report(url)``: demo_tasks.retries.fetch_report fixed: a 404 fails at
   once (one request), a 503 is still retried.
"""

from __future__ import annotations

import re
import shutil
import uuid

import selfcheck

exercises = selfcheck.Exercises(7)

#: The queue the exercises' worker listens on (not the chapter worker's ``celery``).
QUEUE = "ch07-exercises"
#: How long a check waits for the worker (a busy machine is slow, not wrong).
WAIT = 20.0
#: The learner's file, in the chapter's scratch folder (``exercises_dir``).
FILE = "my_tasks.py"
#: A retry that waits longer than this is waiting Celery's default 180 s, not the 0.2 s asked for.
LONG_WAIT = 1.0

#: The beginning of my_tasks.py: the exercises add their tasks below it.
STARTER = '''"""Your tasks for chapter 07's exercises. A worker for this file:
celery -A my_tasks worker --loglevel=info --queues=ch07-exercises"""

import os
from pathlib import Path

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from demo_tasks.retries import ClientError, ServiceError, ServiceTimeout, ServiceUnavailable, call_service

app = Celery("my_tasks", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
app.conf.task_default_queue = "ch07-exercises"    # not the queue of the chapter's worker

#: Where export_rows writes while it works (exercise 2).
PARTS = Path(__file__).with_name("parts")

# Each exercise's answer is a block below, written by the notebook (%%writeblock my_tasks.py exercise-N).
'''


def _files(ns: dict) -> selfcheck.Workspace | None:
    return selfcheck.exercise_files(ns, FILE)


def _purge(app) -> None:
    selfcheck.purge_queue(app, QUEUE)


def _run(ns: dict, task: str, block: str, check) -> list[str]:
    """Start a new worker for my_tasks.py, hand `check` a function that sends `task`, stop the worker.
    Returns the problems found (a worker that cannot start is one)."""
    from celery import Celery


    files = _files(ns)
    if files is None:
        return ["先运行“练习”一节开头的单元格（它写好 my_tasks.py 的开头）"]
    broker = ns["broker"]
    app = Celery("my_tasks", broker=broker.url, backend=broker.url, set_as_current=False)
    _purge(app)
    worker, problem = selfcheck.start_exercise_worker(files, broker, QUEUE, FILE)
    if problem:
        return [problem]
    try:
        if f"my_tasks.{task}" not in worker.banner_section():
            if files.stub(FILE, block):  # (a task written into the file in an editor counts too)
                return [f"还没有答案：在 %%writeblock {FILE} {block} 的单元格里定义任务 {task}"]
            return [f"{FILE} 的 {block} 这一段里没有任务 {task}：用 @app.task 定义它，函数名就是 {task}"]

        def send(*args, task_id=None):
            return app.send_task(f"my_tasks.{task}", args, task_id=task_id or str(uuid.uuid4()), queue=QUEUE)

        return check(send, worker)
    finally:
        worker.cleanup()
        _purge(app)
        app.close()


def _retry_waits(worker, task_id: str) -> list[float]:
    """The waits Celery chose before each retry of the task, from the worker's
    "retry: Retry in 0.2s" lines: what was asked for, not a time measured on a
    machine that may be busy."""
    return [float(d) for d in re.findall(rf"\[{re.escape(task_id)}\] retry: Retry in ([\d.]+)s", worker.log())]


def _outcome(result, worker) -> str:
    """"done" once the task has ended; "waiting long" as soon as it waits more
    than LONG_WAIT before a retry; "timeout" after WAIT seconds."""
    import launcher

    if not launcher.wait_for(lambda: result.ready() or any(d > LONG_WAIT for d in _retry_waits(worker, result.id)),
                             WAIT, interval=0.1):
        return "timeout"
    return "done" if result.ready() else "waiting long"


@exercises.register(1)
def polite(ns: dict) -> list[str]:
    if _files(ns) is None or "service" not in ns:
        return ["先运行“练习”一节开头的单元格（它写好 my_tasks.py 的开头）"]
    from services import flaky_service

    service = ns["service"]
    seed = getattr(service, "seed", 7)
    # Ids of this attempt only (the service's answers depend on the id): a result or a
    # request an earlier attempt left under an id is never read as this one's.
    fresh = uuid.uuid4().hex[:8]
    recovers, = flaky_service.task_ids(f"polite-{fresh}", 1, seed=seed,
                                       where=lambda v: v[:3] == ["unavailable", "timeout", "ok"])
    hopeless, = flaky_service.task_ids(f"hopeless-{fresh}", 1, seed=seed,
                                       where=lambda v: all(x in ("unavailable", "timeout") for x in v[:4]))
    missing_path = f"/missing-{fresh}"
    where = f"{FILE} 的 fetch_politely"

    def attempts_of(task_id: str) -> list[int]:
        return [r["attempt"] for r in service.requests() if r["task"] == task_id]

    def check(send, worker) -> list[str]:
        first = send(service.call_url, task_id=recovers)
        missing = send(service.url + missing_path)
        last = send(service.call_url, task_id=hopeless)
        problems = []

        outcome = _outcome(first, worker)
        if outcome == "waiting long":
            waits = _retry_waits(worker, recovers)
            if any(d >= 60 for d in waits):
                return [f"{where}：重试前等得太久（Celery 记下的等待：{waits} 秒）。不给 countdown 时，"
                        "重试前默认等 default_retry_delay = 180 秒；这里每次等 0.2 秒（default_retry_delay=0.2）"]
            return [f"{where}：重试前等得太久（Celery 记下的等待：{waits} 秒）：这里每次等 0.2 秒就够了"
                    "（default_retry_delay=0.2，不用 retry_backoff）"]
        if outcome == "timeout":
            return [f"{where}：先 503、再超时、第三次正常的调用，{WAIT:g} 秒内没有结束"
                    f"（重试前的等待：{_retry_waits(worker, recovers)} 秒）"]
        seen = attempts_of(recovers)
        if seen and seen.count(seen[0]) > 1:
            problems.append(f"{where}：flaky service 收到的尝试是 {seen}，每次都一样：调用时把 self.request.retries "
                            "作为第几次尝试（call_service 的第三个参数），服务才知道这是一次重试")
        elif first.state != "SUCCESS":
            problems.append(f"{where}：先 503、再超时、第三次正常的调用，结果是 {first.state}"
                            f"（{first.result!r}），应该重试到成功：autoretry_for 里要有 ServiceUnavailable "
                            "和 ServiceTimeout")
        elif seen != [0, 1, 2]:
            problems.append(f"{where}：flaky service 收到的尝试是 {seen}，应该是 [0, 1, 2]")
        waits = _retry_waits(worker, recovers)
        if any(d > LONG_WAIT for d in waits):
            problems.append(f"{where}：重试前等得太久（{waits} 秒）：每次等 0.2 秒左右就够了"
                            "（default_retry_delay=0.2 或 countdown=0.2）")

        if _outcome(missing, worker) != "done":
            return [*problems, f"{where}：对不存在的地址，{WAIT:g} 秒内还没有结束：4xx 不该重试"
                               "（ClientError 不在 autoretry_for 里）"]
        asked = [r for r in service.requests() if r["path"] == missing_path]
        if missing.state != "FAILURE" or len(asked) != 1:
            problems.append(f"{where}：对不存在的地址（404），结果是 {missing.state}，服务收到 {len(asked)} 个请求；"
                            "应该是 FAILURE、只请求 1 次（ClientError 不在 autoretry_for 里）")

        if _outcome(last, worker) != "done":
            return [*problems, f"{where}：一直失败的调用 {WAIT:g} 秒内还没有结束：max_retries=3"]
        tries = attempts_of(hopeless)
        if last.state != "FAILURE" or tries != [0, 1, 2, 3]:
            problems.append(f"{where}：一直失败的调用，结果是 {last.state}，尝试了 {tries}；"
                            "应该最多重试 3 次（max_retries=3，一共 4 次尝试），然后失败")
        return problems

    return _run(ns, "fetch_politely", "exercise-1", check)


@exercises.register(2)
def soft_limit(ns: dict) -> list[str]:
    files = _files(ns)
    if files is None:
        return ["先运行“练习”一节开头的单元格（它写好 my_tasks.py 的开头）"]
    parts = files.folder / "parts"
    where = f"{FILE} 的 export_rows"

    def check(send, worker) -> list[str]:
        shutil.rmtree(parts, ignore_errors=True)  # what an earlier attempt left is not this one's
        problems = []
        long_run = send(3)
        if _outcome(long_run, worker) != "done":
            return [f"{where}：export_rows(3) 在 {WAIT:g} 秒内没有结束"]
        if "Soft time limit (1s) exceeded for my_tasks.export_rows" not in worker.log():
            return [f"{where}：worker 的日志里没有 Soft time limit (1s) exceeded：给任务加上 soft_time_limit=1"]
        if long_run.state != "SUCCESS":
            problems.append(f"{where}：export_rows(3) 的结果是 {long_run.state}（{long_run.result!r}）："
                            "捕获 SoftTimeLimitExceeded，收拾好以后正常返回")
        left = sorted(p.name for p in parts.glob("*.part")) if parts.exists() else []
        if left:
            problems.append(f"{where}：超时以后 parts/ 里还留着 {left}：在 except SoftTimeLimitExceeded 里删掉它")
        short = send(0.2)
        if _outcome(short, worker) != "done" or short.state != "SUCCESS":
            problems.append(f"{where}：export_rows(0.2) 的结果是 {short.state}：时间够用时任务要正常完成")
        return problems

    return _run(ns, "export_rows", "exercise-2", check)


@exercises.register(3)
def report(ns: dict) -> list[str]:
    if _files(ns) is None or "service" not in ns:
        return ["先运行“练习”一节开头的单元格（它写好 my_tasks.py 的开头）"]
    from services import flaky_service

    service = ns["service"]
    seed = getattr(service, "seed", 7)
    fresh = uuid.uuid4().hex[:8]
    recovers, = flaky_service.task_ids(f"report-{fresh}", 1, seed=seed,
                                       where=lambda v: v[:2] == ["unavailable", "ok"])
    missing_path = f"/reports/{fresh}"
    where = f"{FILE} 的 fetch_report"

    def check(send, worker) -> list[str]:
        missing = send(service.url + missing_path)
        ok = send(service.call_url, task_id=recovers)
        problems = []
        import launcher

        # A 404 that is retried keeps the task unfinished: its requests pile up in the service's record.
        launcher.wait_for(lambda: missing.ready() or
                          sum(r["path"] == missing_path for r in service.requests()) > 2, WAIT, interval=0.1)
        asked = sum(r["path"] == missing_path for r in service.requests())
        if not missing.ready() or asked != 1 or missing.state != "FAILURE":
            problems.append(f"{where}：对 {missing_path}（404）服务收到了 {asked} 个请求，结果是 {missing.state}；"
                            "应该只请求 1 次就失败。autoretry_for=(Exception,) 连 404 也重试；"
                            "ClientError 是 ServiceError 的子类，autoretry_for=(ServiceError,) 也会重试它"
                            "（用 dont_autoretry_for=(ClientError,)，或者只列 ServiceUnavailable、ServiceTimeout）")
        if _outcome(ok, worker) != "done":
            return [*problems, f"{where}：先 503、再正常的调用，{WAIT:g} 秒内没有结束"
                               f"（重试前的等待：{_retry_waits(worker, recovers)} 秒；每次 0.2 秒就够了）"]
        tries = [r["attempt"] for r in service.requests() if r["task"] == recovers]
        if ok.state != "SUCCESS" or tries != [0, 1]:
            problems.append(f"{where}：先 503、再正常的调用，结果是 {ok.state}，服务收到的尝试是 {tries}；"
                            "503 和超时还要重试（autoretry_for 里要有 ServiceUnavailable 和 ServiceTimeout）")
        return problems

    return _run(ns, "fetch_report", "exercise-3", check)
