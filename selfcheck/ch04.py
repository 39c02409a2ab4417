"""Chapter 04's exercise checks. Each one runs the learner's code against the
chapter's real worker, its Flower (``FLOWER`` and ``AUTH`` in the notebook: its
address and the user name and password) and the chapter's Redis database
(REDIS_URL, which the chapter's preparation sets):

1. ``add_results()``: the ``add`` tasks Flower knows, read from its API, as
   ``{args: result}``; the check sends an ``add`` of its own first;
2. ``apply_via_api(x, y)``: ``slow_add(x, y, seconds=0.5)`` sent through
   Flower's ``async-apply``; returns the task id; the worker really runs it;
3. ``unconsumed_queues()``: ``{queue: messages}`` of the queues that hold
   messages no worker consumes (``inspect().active_queues()``, the broker's
   lists, LLEN); the check parks messages in a queue nobody consumes and makes
   a backlog on a queue the chapter's worker consumes, which must not count.
"""

from __future__ import annotations

import random
import socket
import time
import uuid
from dataclasses import dataclass

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


@dataclass(frozen=True)
class _Flower:
    url: str
    auth: tuple[str, str]


def _flower(ns: dict) -> _Flower | None:
    """The chapter's Flower: its address FLOWER and its (user, password) AUTH, or None."""
    url, auth = ns.get("FLOWER"), ns.get("AUTH")
    ok = isinstance(url, str) and url.startswith("http") and isinstance(auth, tuple) and len(auth) == 2
    return _Flower(url, auth) if ok else None


def _no_flower() -> list[str]:
    return ["找不到本章的 Flower（`FLOWER` 和 `AUTH`）：重新运行“启动 Flower”一节里启动它的折叠单元格"]


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


#: Exercise 3's backlog: two slow tasks take both processes of the chapter's worker, which then
#: reserves no more than its prefetch count (8) of the quick ones behind them; the rest wait in the list.
BUSY_SECONDS = 5.0
QUICK_TASKS = 18


def _names(got: dict) -> dict:
    """The answer's keys as text (a redis client without decode_responses gives bytes)."""
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in got.items()}


def _settled(client, name: str, sent: int) -> int:
    """LLEN of ``name`` once the worker has taken what it can of the ``sent`` messages
    (it has started taking, and two reads 0.3 s apart agree)."""
    deadline = time.monotonic() + 10
    while client.llen(name) >= sent and time.monotonic() < deadline:
        time.sleep(0.05)
    last = client.llen(name)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = client.llen(name)
        if now == last:
            return now
        last = now
    return last


@exercises.register(3)
def unconsumed_queues(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "unconsumed_queues", "返回 {队列名: 条数}：排着消息、却没有 worker 消费的队列")
    if problems:
        return problems
    tasks = _tasks()
    node = ns.get("node") or f"w1@{socket.gethostname()}"     # the chapter's worker
    tag = uuid.uuid4().hex[:8]
    parked, busy = f"parked-{tag}", f"busy-{tag}"              # new each time
    client = redis.Redis.from_url(tasks.app.conf.broker_url, socket_timeout=5, socket_connect_timeout=5)
    control = tasks.app.control
    try:
        for _ in range(3):
            tasks.add.apply_async((1, 2), queue=parked)
        if not control.add_consumer(busy, destination=[node], reply=True, timeout=5):
            return [f"本章的 worker {node} 没有回复：重新运行“准备”单元格"]
        for _ in range(2):
            tasks.slow_add.apply_async((0, 0), {"seconds": BUSY_SECONDS}, queue=busy)
        for _ in range(QUICK_TASKS):
            tasks.add.apply_async((0, 0), queue=busy)
        backlog = _settled(client, busy, 2 + QUICK_TASKS)
        got = ns["unconsumed_queues"]()
        backlog_after = client.llen(busy)
        if not isinstance(got, dict):
            return [f"`unconsumed_queues()` 返回了 {type(got).__name__}，要返回一个字典 {{队列名: 条数}}"]
        got = _names(got)
        problems = []
        if parked not in got:
            problems.append(f"队列 {parked} 里排着 3 条消息、没有 worker 消费，你的结果里没有它：用 "
                            "client.scan_iter(_type=\"list\") 找出 Broker 上所有的 list，不要只看 celery；"
                            "也不要问 Flower，它只报告有 worker 消费的队列")
        elif got[parked] != 3:
            problems.append(f"队列 {parked} 里排着 3 条消息，你给出了 {got[parked]!r}：用 client.llen(名字) 数")
        if busy in got and backlog and backlog_after:
            problems.append(f"队列 {busy} 有 worker 在消费（{node}，见 app.control.inspect().active_queues()），"
                            f"它排着的 {backlog} 条是积压，不是没人消费：去掉有 worker 消费的队列")
        empty = sorted(name for name, count in got.items() if not count)
        if empty:
            problems.append(f"{empty} 里一条消息也没有：只返回排着消息（条数 > 0）的队列")
        return problems
    finally:
        client.delete(parked, busy)
        control.cancel_consumer(busy, destination=[node], reply=True, timeout=5)
        client.close()
