"""Chapter 03's exercise checks. Each one runs the learner's code against the
chapter's real worker and reads the chapter's Redis database (REDIS_URL, which
the chapter's preparation sets), so a check passes only on what really happened:

1. ``add_later(x, y)``: ``add`` sent with a countdown; the message carries an
   ETA about one second after it was sent, the function returns before the
   task has run, and the result arrives not before one second has passed;
2. ``read_result_key(task_id)``: a result key read from Redis: its status,
   result and the seconds it has left;
3. ``parked``: a task sent to a queue nobody listens to: PENDING, and its
   message is in that Redis list.

No check has an upper limit on a time it measures (a loaded machine is slow,
not wrong): what a function did is read from what it sent (Celery's
``before_task_publish`` signal), from the order of events, and from Redis.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import datetime

import redis
from celery.exceptions import TimeoutError as ResultTimeout
from celery.result import AsyncResult

import selfcheck

exercises = selfcheck.Exercises(3)

#: How long a check waits for the worker (a busy machine is slow, not wrong).
WAIT = 15.0
#: A result key lives a day (result_expires).
DAY = 86400
#: The lifetime of the result key check 2 writes itself.
HOUR = 3600


def _tasks():
    """The chapter's app and tasks, imported when a check runs (after the preparation set REDIS_URL)."""
    from demo_tasks import tasks

    return tasks


def _client() -> redis.Redis:
    return redis.Redis.from_url(_tasks().app.conf.result_backend, decode_responses=True,
                                socket_timeout=5, socket_connect_timeout=5)


def _no_worker() -> str:
    return (f"{WAIT:g} 秒内没有拿到结果：worker 在运行吗？（重新运行“停止 worker”一节里"
            "启动新 worker 的单元格）")


def _calls_sleep(function) -> bool:
    """Does the function's own code call something named ``sleep`` (time.sleep, asyncio.sleep)?"""
    code = getattr(function, "__code__", None)
    return code is not None and "sleep" in code.co_names + code.co_varnames


@exercises.register(1)
def countdown(ns: dict) -> list[str]:
    from celery.signals import before_task_publish

    problems = selfcheck.given(ns, "add_later", "用 apply_async 和 countdown=1 发送 add(x, y) 并返回 AsyncResult")
    if problems:
        return problems
    add_later = ns["add_later"]
    if _calls_sleep(add_later):
        return ["`add_later` 里调用了 sleep：不要在函数里等，让 worker 按 countdown 去等"]
    # The ETA of each add message the function sends, and when it was sent (read as it is sent).
    etas: list[tuple[str | None, datetime]] = []

    def record(sender=None, headers=None, **_):
        if sender == "demo_tasks.tasks.add" and headers:
            etas.append((headers.get("eta"), datetime.now().astimezone()))

    before_task_publish.connect(record, weak=False)
    try:
        started = time.perf_counter()
        called_at = datetime.now().astimezone()
        sent = add_later(20, 22)
        # Right when it returned: a countdown=1 task cannot have run yet, unless the function waited for it.
        done_on_return = isinstance(sent, AsyncResult) and sent.ready()
    finally:
        before_task_publish.disconnect(record)
    if not isinstance(sent, AsyncResult):
        return [f"`add_later(20, 22)` 返回了 {type(sent).__name__}：要返回 apply_async() 给你的 AsyncResult，"
                "不要在函数里 get()"]
    if done_on_return:
        return ["`add_later` 返回时任务已经做完了：它在函数里等了结果。不要在函数里 get()，让 worker 按 countdown 去等"]
    eta, sent_at = etas[-1] if etas else (None, None)
    if eta is not None:
        eta = datetime.fromisoformat(eta)
        # The countdown the message carries: its ETA minus the moment it was sent is at most
        # the countdown (the ETA is computed first), whatever the load; measured from the call,
        # at least the countdown.
        if (eta - sent_at).total_seconds() > 1.5:
            sent.revoke()   # not waited for, and it must not run long after this attempt
            return [f"消息的 ETA 在发出后 {(eta - sent_at).total_seconds():.0f} 秒：要让任务 1 秒以后执行，"
                    "用 countdown=1（countdown 的单位是秒；直接给 eta 时要用带时区的时间）。这个任务已经撤销，不会执行"]
    try:
        value = sent.get(timeout=WAIT, propagate=False)
    except ResultTimeout:
        return [_no_worker()]
    waited = time.perf_counter() - started
    problems = []
    if value != 42:
        problems.append(f"`add_later(20, 22)` 的结果是 {value!r}，应该是 42：发送的是 add(x, y) 吗？")
    if eta is None:
        problems.append("发出的消息里没有 ETA：用 apply_async(..., countdown=1) 发送，worker 才会等到时间再执行")
    elif (eta - called_at).total_seconds() < 0.95:
        problems.append("消息的 ETA 离调用不到 1 秒：用 countdown=1")
    if waited < 0.95:
        problems.append(f"结果 {waited:.2f} 秒就到了：用 countdown=1，让任务至少 1 秒以后才执行")
    return problems


def _triple(got) -> bool:
    return isinstance(got, tuple | list) and len(got) == 3


@exercises.register(2)
def result_key(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "read_result_key", "读出结果键，返回 (status, result, ttl)")
    if problems:
        return problems
    read = ns["read_result_key"]
    tasks = _tasks()
    done, failed = tasks.divide.delay(10, 4), tasks.divide.delay(1, 0)
    try:
        done.get(timeout=WAIT)
        failed.get(timeout=WAIT, propagate=False)
    except ResultTimeout:
        return [_no_worker()]

    client = _client()
    try:
        key = f"celery-task-meta-{done.id}"
        # A key's TTL only goes down: the one the learner reads lies between these two
        # (give or take the second Redis rounds to, for a TTL computed from PTTL).
        ttl_before = client.ttl(key)
        got = read(done.id)
        ttl_after = client.ttl(key)
    finally:
        client.close()
    if not _triple(got):
        return [f"`read_result_key(id)` 要返回三样东西 (status, result, ttl)，它返回了 {got!r}"]
    problems = []
    status, result, ttl = got
    if (status, result) != ("SUCCESS", 2.5):
        problems.append(f"divide(10, 4) 的结果键里是 status 'SUCCESS'、result 2.5，你读出了 {status!r}、{result!r}")
    if not (isinstance(ttl, int) and 0 < ttl_after - 1 <= ttl <= ttl_before <= DAY):
        problems.append(f"ttl 是这个键还剩多少秒过期（刚写入时将近 {DAY} 秒，用 client.ttl(key)），"
                        f"你给出了 {ttl!r}，Redis 说是 {ttl_before}")

    got = read(failed.id)
    status, result = got[:2] if _triple(got) else (None, None)
    if status != "FAILURE" or not (isinstance(result, dict) and result.get("exc_type") == "ZeroDivisionError"):
        problems.append("divide(1, 0) 的结果键里 status 是 'FAILURE'，result 是描述异常的字典"
                        f"（exc_type 为 'ZeroDivisionError'）；你读出了 {status!r}、{result!r}")

    # A result key the check writes itself, expiring in an hour rather than a day:
    # only a function that really reads that key from Redis gives its status, result and TTL.
    fake = str(uuid.uuid4())
    key = f"celery-task-meta-{fake}"
    meta = {"status": "SUCCESS", "result": 7, "traceback": None, "children": [], "date_done": None, "task_id": fake}
    client = _client()
    client.set(key, json.dumps(meta), ex=HOUR)
    try:
        got = read(fake)
        ttl_after = client.ttl(key)
    finally:
        client.delete(key)
        client.close()
    if not (_triple(got) and tuple(got[:2]) == ("SUCCESS", 7) and isinstance(got[2], int)
            and 0 < ttl_after - 1 <= got[2] <= HOUR):
        problems.append("一个 1 小时后过期、result 为 7 的结果键，你的函数读出了 "
                        f"{got!r}：是不是写死了某个值，或者没有直接读 Redis 里的这个键？")
    return problems


@exercises.register(3)
def parked(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "parked", "发往队列 parking 的 add(1, 2) 所返回的 AsyncResult")
    if problems:
        return problems
    sent = ns["parked"]
    if not isinstance(sent, AsyncResult):
        return [f"`parked` 是 {type(sent).__name__}：要存 apply_async() 给你的 AsyncResult"]
    client = _client()
    try:
        messages = [json.loads(raw) for raw in client.lrange("parking", 0, -1)]
    finally:
        client.close()
    mine = [m for m in messages if m.get("headers", {}).get("id") == sent.id]
    state = sent.state
    if not mine:
        # Sent elsewhere: to the queue the worker consumes (then it may have run already), or nowhere.
        ran = f"（它的状态已经是 {state}：它进了 worker 监听的队列 celery，被执行了）" if state != "PENDING" else ""
        return [f"Redis 的 list `parking` 里没有这个任务的消息：发送时要写 queue=\"parking\"{ran}"]
    problems = []
    headers, body = mine[0]["headers"], json.loads(base64.b64decode(mine[0]["body"]))
    if headers.get("task") != "demo_tasks.tasks.add" or body[0] != [1, 2]:
        problems.append(f"队列里的消息是 {headers.get('task')}{tuple(body[0])}，应该是 demo_tasks.tasks.add(1, 2)")
    if state != "PENDING":
        problems.append(f"它的状态是 {state}，应该是 PENDING：有 worker 在监听队列 parking 吗？")
    return problems
