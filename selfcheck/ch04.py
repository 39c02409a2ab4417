"""Chapter 04's exercise checks. Each one runs the learner's code against the
chapter's real worker, its Flower (``flower_proc`` in the notebook) and the
chapter's Redis database (REDIS_URL, which the chapter's preparation sets):

1. ``add_results()``: the ``add`` tasks Flower knows, read from its API, as
   ``{args: result}``; the check sends an ``add`` of its own first;
2. ``apply_via_api(x, y)``: ``slow_add(x, y, seconds=0.5)`` sent through
   Flower's ``async-apply``; returns the task id; the worker really runs it;
3. ``queue_length(name)``: how many messages wait in a queue (LLEN); the check
   parks messages in a queue nobody listens to, and counts them twice.
"""

from __future__ import annotations

import random
import time
import uuid

import redis
import requests
from celery.exceptions import TimeoutError as ResultTimeout

import selfcheck

exercises = selfcheck.Exercises(4)

#: How long a check waits for the worker or Flower (a busy machine is slow, not wrong).
WAIT = 20.0


def _tasks():
    """The chapter's app and tasks, imported when a check runs (after the preparation set REDIS_URL)."""
    from demo_tasks import tasks

    return tasks


def _flower(ns: dict):
    """The chapter's Flower process (url, auth), or None."""
    proc = ns.get("flower_proc")
    return proc if getattr(proc, "url", None) and getattr(proc, "auth", None) else None


def _no_flower() -> list[str]:
    return ["找不到本章的 Flower（`flower_proc`）：重新运行“启动 Flower”一节里启动它的单元格"]


def _no_worker() -> str:
    return f"{WAIT:g} 秒内没有拿到结果：worker 在运行吗？（重新运行“准备”单元格）"


def _flower_state(proc, task_id: str) -> str | None:
    reply = requests.get(f"{proc.url}/api/task/info/{task_id}", auth=proc.auth, timeout=10)
    return reply.json().get("state") if reply.status_code == 200 else None


def _wait_until_seen(proc, task_id: str) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if _flower_state(proc, task_id) in ("SUCCESS", "FAILURE"):
            return True
        time.sleep(0.2)
    return False


@exercises.register(1)
def add_results(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "add_results", "用 Flower 的 API 读出所有 add 任务，返回 {args: result}")
    if problems:
        return problems
    proc = _flower(ns)
    if proc is None:
        return _no_flower()
    tasks = _tasks()
    rng = random.Random(uuid.uuid4().int)       # new numbers each time: no answer can know them in advance
    a, b = rng.randint(100, 999), rng.randint(100, 999)
    fresh, other = tasks.add.delay(a, b), tasks.divide.delay(a, 1)
    try:
        fresh.get(timeout=WAIT)
        other.get(timeout=WAIT)
    except ResultTimeout:
        return [_no_worker()]
    if not (_wait_until_seen(proc, fresh.id) and _wait_until_seen(proc, other.id)):
        return [f"Flower {WAIT:g} 秒内没有收到任务事件：worker 加了 -E 吗？"]
    got = ns["add_results"]()
    if not isinstance(got, dict):
        return [f"`add_results()` 返回了 {type(got).__name__}，要返回一个字典 {{args: result}}"]
    problems = []
    key = f"({a}, {b})"
    if key not in got:
        problems.append(f"刚刚执行的 add{key} 不在你的结果里：每次都要重新问 Flower 的 /api/tasks，"
                        "不要用之前存下的数据")
    elif str(got[key]) != str(a + b):
        problems.append(f"add{key} 的结果应该是 {a + b}，你给出了 {got[key]!r}")
    if f"({a}, 1)" in got:
        problems.append("结果里混进了 divide 任务：用 taskname 参数只要 demo_tasks.tasks.add")
    return problems


@exercises.register(2)
def apply_via_api(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "apply_via_api", "通过 Flower 的 API 派发 slow_add(x, y, seconds=0.5)，返回任务 id")
    if problems:
        return problems
    proc = _flower(ns)
    if proc is None:
        return _no_flower()
    rng = random.Random(uuid.uuid4().int)
    x, y = rng.randint(100, 999), rng.randint(100, 999)
    task_id = ns["apply_via_api"](x, y)
    if not isinstance(task_id, str):
        return [f"`apply_via_api(x, y)` 返回了 {type(task_id).__name__}：要返回 API 回复里的 \"task-id\"（一个字符串）"]
    try:
        value = _tasks().app.AsyncResult(task_id).get(timeout=WAIT)
    except ResultTimeout:
        return [_no_worker() + "；或者这个 id 不是 async-apply 返回的那个"]
    problems = []
    if value != x + y:
        problems.append(f"apply_via_api({x}, {y}) 的任务结果是 {value!r}，应该是 {x + y}：args 放的是 [x, y] 吗？")
    if not _wait_until_seen(proc, task_id):
        return [*problems, f"Flower {WAIT:g} 秒内没有收到这个任务的事件"]
    info = requests.get(f"{proc.url}/api/task/info/{task_id}", auth=proc.auth, timeout=10).json()
    if info.get("name") != "demo_tasks.tasks.slow_add":
        problems.append(f"派发的任务是 {info.get('name')}，应该是 demo_tasks.tasks.slow_add")
    if "'seconds': 0.5" not in str(info.get("kwargs")):
        problems.append(f"任务的 kwargs 是 {info.get('kwargs')}：把 {{\"seconds\": 0.5}} 放进 JSON 的 kwargs")
    return problems


@exercises.register(3)
def queue_length(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "queue_length", "返回队列 name 里排着多少条消息")
    if problems:
        return problems
    tasks = _tasks()
    name = f"parking-{uuid.uuid4().hex[:8]}"     # a queue nobody listens to, new each time
    client = redis.Redis.from_url(tasks.app.conf.broker_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        problems = []
        for count in (3, 5):
            while client.llen(name) < count:
                tasks.add.apply_async((1, 2), queue=name)
            got = ns["queue_length"](name)
            if got != count:
                problems.append(f"队列 {name} 里排着 {count} 条消息，`queue_length({name!r})` 返回了 {got!r}"
                                "：读 Redis 里名字就是参数 name 的那个 list 的长度（client.llen(name)）；"
                                "Flower 的 /api/queues/length 只报告有 worker 在监听的队列")
                break
        return problems
    finally:
        client.delete(name)
        client.close()
