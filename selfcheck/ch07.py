"""Chapter 07's exercise checks. The learner writes tasks into ``my_tasks.py``
(in the chapter's scratch folder, started from ``STARTER``); each check starts
a real worker for that file (``celery -A my_tasks worker`` on a queue of its
own, so the chapter's worker never takes these tasks), sends the task by name,
and judges what really happened: the task's state and result, the flaky
service's own record of every request, the worker's log, the files left.

1. ``fetch_politely(url)``: retries 503 and timeouts (at most 3 times, a short
   wait), never a 4xx;
2. ``export_rows(seconds)``: a soft time limit of 1 s; on it, the half-written
   file is removed and the task ends normally.
"""

from __future__ import annotations

import re
from pathlib import Path

import selfcheck

exercises = selfcheck.Exercises(7)

#: The queue the exercises' worker listens on (not the chapter worker's ``celery``).
QUEUE = "ch07-exercises"
#: How long a check waits for the worker (a busy machine is slow, not wrong).
WAIT = 20.0

#: The beginning of my_tasks.py: the exercises add their tasks below it.
STARTER = '''"""Your tasks for chapter 07's exercises. A worker for this file:
celery -A my_tasks worker --loglevel=info --queues=ch07-exercises"""

import os
from pathlib import Path

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from demo_tasks.retries import ClientError, ServiceTimeout, ServiceUnavailable, call_service

app = Celery("my_tasks", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
app.conf.task_default_queue = "ch07-exercises"    # not the queue of the chapter's worker

#: Where export_rows writes while it works (exercise 2).
PARTS = Path(__file__).with_name("parts")
'''


def _folder(ns: dict) -> Path | None:
    folder = ns.get("exercises_dir")
    return Path(folder) if folder is not None and (Path(folder) / "my_tasks.py").exists() else None


def _run(ns: dict, task: str, check):
    """Start a worker for my_tasks.py, hand `check` a function that sends `task`, stop the worker.
    Returns the problems found (a worker that cannot start is one)."""
    from celery import Celery

    import launcher

    folder = _folder(ns)
    broker = ns["broker"]
    try:
        worker = launcher.start_worker("my_tasks", broker=broker, fast=True, name="exercises", cwd=str(folder),
                                       queues=[QUEUE], env={"REDIS_URL": broker.url})
    except launcher.ProcessError as exc:
        last = [line for line in str(exc).splitlines() if line.strip()][-1:]
        return [f"worker 启动不了 my_tasks.py：{last[0].strip() if last else exc}"]
    try:
        if f"my_tasks.{task}" not in worker.tail(60, start="[tasks]"):
            return [f"my_tasks.py 里还没有任务 {task}：用 @app.task 定义它"]
        app = Celery("my_tasks", broker=broker.url, backend=broker.url, set_as_current=False)

        def send(*args, task_id=None):
            if task_id is not None:  # a result an earlier check stored under this id would look finished at once
                app.AsyncResult(task_id).forget()
            return app.send_task(f"my_tasks.{task}", args, task_id=task_id, queue=QUEUE)

        return check(send, worker)
    finally:
        worker.cleanup()


def _finished(result) -> bool:
    """True once the task has ended, within WAIT seconds."""
    import launcher

    return launcher.wait_for(result.ready, WAIT, interval=0.1)


@exercises.register(1)
def polite(ns: dict) -> list[str]:
    if _folder(ns) is None or "service" not in ns:
        return ["先运行“练习”一节开头的单元格（它写好 my_tasks.py 的开头）"]
    from services import flaky_service

    service = ns["service"]
    recovers, = flaky_service.task_ids("polite", 1, where=lambda v: v[:3] == ["unavailable", "timeout", "ok"])
    hopeless, = flaky_service.task_ids("hopeless", 1, where=lambda v: all(x in ("unavailable", "timeout")
                                                                          for x in v[:4]))

    def check(send, worker) -> list[str]:
        problems = []
        service.reset()
        first = send(service.call_url, task_id=recovers)
        if not _finished(first):
            return [f"{WAIT:g} 秒内没有结束：重试前等得太久了吗？不给 countdown 时，重试前默认等 "
                    "default_retry_delay = 180 秒；这里每次等 0.2 秒（default_retry_delay=0.2）"]
        seen = [r["attempt"] for r in service.requests() if r["task"] == recovers]
        if first.state != "SUCCESS":
            problems.append(f"先 503、再超时、第三次正常的调用，结果是 {first.state}"
                            f"（{first.result!r}），应该重试到成功：autoretry_for 里要有 ServiceUnavailable "
                            "和 ServiceTimeout")
        elif seen != [0, 1, 2]:
            problems.append(f"flaky service 收到的尝试是 {seen}，应该是 [0, 1, 2]："
                            "调用时把 self.request.retries 作为第几次尝试（call_service 的第三个参数）")
        # The delays Celery chose, from the worker's "retry: Retry in 0.2s" lines: what was asked for,
        # not a time measured on a machine that may be busy.
        delays = [float(d) for d in re.findall(rf"\[{recovers}\] retry: Retry in ([\d.]+)s", worker.log())]
        if any(d > 1 for d in delays):
            problems.append(f"重试前等得太久（{delays} 秒）：每次等 0.2 秒左右就够了"
                            "（default_retry_delay=0.2 或 countdown=0.2）")
        service.reset()
        missing = send(service.url + "/missing", task_id="polite-missing")
        if not _finished(missing):
            return [*problems, f"对不存在的地址，{WAIT:g} 秒内还没有结束：4xx 不该重试"]
        asked = [r for r in service.requests() if r["path"] == "/missing"]
        if missing.state != "FAILURE" or len(asked) != 1:
            problems.append(f"对不存在的地址（404）：结果是 {missing.state}，服务收到 {len(asked)} 个请求；"
                            "应该是 FAILURE、只请求 1 次（ClientError 不在 autoretry_for 里）")
        service.reset()
        last = send(service.call_url, task_id=hopeless)
        if not _finished(last):
            return [*problems, f"一直失败的调用 {WAIT:g} 秒内还没有结束：max_retries=3"]
        tries = [r["attempt"] for r in service.requests() if r["task"] == hopeless]
        if last.state != "FAILURE" or tries != [0, 1, 2, 3]:
            problems.append(f"一直失败的调用：结果是 {last.state}，尝试了 {tries}；"
                            "应该最多重试 3 次（max_retries=3，一共 4 次尝试），然后失败")
        return problems

    return _run(ns, "fetch_politely", check)


@exercises.register(2)
def soft_limit(ns: dict) -> list[str]:
    if _folder(ns) is None:
        return ["先运行“练习”一节开头的单元格（它写好 my_tasks.py 的开头）"]
    parts = _folder(ns) / "parts"

    def check(send, worker) -> list[str]:
        problems = []
        long_run = send(3)
        if not _finished(long_run):
            return [f"export_rows(3) 在 {WAIT:g} 秒内没有结束"]
        if "Soft time limit (1s) exceeded for my_tasks.export_rows" not in worker.log():
            return ["worker 的日志里没有 Soft time limit (1s) exceeded：给任务加上 soft_time_limit=1"]
        if long_run.state != "SUCCESS":
            problems.append(f"export_rows(3) 的结果是 {long_run.state}（{long_run.result!r}）："
                            "捕获 SoftTimeLimitExceeded，收拾好以后正常返回")
        left = sorted(p.name for p in parts.glob("*.part")) if parts.exists() else []
        if left:
            problems.append(f"超时以后 parts/ 里还留着 {left}：在 except SoftTimeLimitExceeded 里删掉它")
        short = send(0.2)
        if not _finished(short) or short.state != "SUCCESS":
            problems.append(f"export_rows(0.2) 的结果是 {short.state}：时间够用时任务要正常完成")
        return problems

    return _run(ns, "export_rows", check)
