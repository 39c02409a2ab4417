"""Chapter 03's exercise checks. Each one runs the learner's code against the
chapter's real worker and reads the chapter's Redis database (REDIS_URL, which
the chapter's preparation sets), so a check passes only on what really happened:

1. ``add_later(x, y)``: ``add`` sent with a countdown; the message carries an
   ETA about one second after it was sent, the function returns before the
   task has run, and the result arrives not before one second has passed;
2. ``read_result_key(task_id)``: a result key read from Redis: its status,
   result and the seconds it has left;
3. a diagnosis: ``send_stuck_tasks()`` (the exercise's set-up) sends three
   ``add`` tasks to a queue the chapter's worker w1 does not consume; the learner
   finds out why ``stuck`` stays PENDING (``inspect active_queues``, the lists
   in Redis, ``LLEN``) and writes ``unstick()``, which makes it run. The facts
   are compared with what w1 and Redis say when the check runs; before and after
   each check the situation is put back (w1 consumes only ``celery``, the three
   messages wait, ``stuck`` is PENDING again), so every attempt meets the same one.

No check has an upper limit on a time it measures (a loaded machine is slow,
not wrong): what a function did is read from what it sent (Celery's
``before_task_publish`` signal), from the order of events, and from Redis.
"""

from __future__ import annotations

import json
import socket
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
    eta, sent_at = etas[-1] if etas else (None, None)
    # Done already is proof of waiting only for a message with an ETA: one without (plain delay())
    # may well be done by the time the function returns, and gets the hint about the missing ETA.
    if done_on_return and eta is not None:
        return ["`add_later` 返回时任务已经做完了：它在函数里等了结果。不要在函数里 get()，让 worker 按 countdown 去等"]
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


#: Exercise 3: the queue the "colleague's code" sends to, which no worker of the chapter consumes.
STUCK_QUEUE = "nightly"
#: The arguments of the three tasks sent there; ``stuck`` is the first.
STUCK_ARGS = [(2, 3), (20, 30), (200, 300)]
#: kombu's lists for one queue on Redis: the queue's name, and one per priority step after the first.
_PRIORITY_SUFFIXES = ["", "\x06\x163", "\x06\x166", "\x06\x169"]
#: How long a check gives the stuck task to run once unstick() returned, before asking why not.
FIRST_LOOK = 2.0

#: The set-up's state in this kernel: stuck's id and the ids of the other two messages.
_stuck: dict = {}


def _w1() -> str:
    """The chapter's worker, as the notebook names it (-n w1@%h)."""
    return f"w1@{socket.gethostname()}"


def _queues_of(app, node: str) -> list[str] | None:
    """The queues a worker consumes (``celery inspect active_queues -d NODE``); None: no reply."""
    replies = app.control.inspect(destination=[node], timeout=WAIT).active_queues() or {}
    return None if node not in replies else [q["name"] for q in replies[node]]


def _put_back() -> list[str] | None:
    """Exercise 3's situation, whatever happened since: w1 consumes only ``celery``, no
    worker consumes STUCK_QUEUE, which holds exactly the three messages (stuck's first,
    under its own id), and stuck is PENDING. Returns the queues w1 was found consuming
    besides ``celery`` (a fix tried outside ``unstick()``), or None if w1 did not answer."""
    tasks = _tasks()
    app = tasks.app
    node = _w1()
    consumed = _queues_of(app, node)
    extra = [q for q in (consumed or []) if q != "celery"]
    if consumed is not None and not extra and _intact():
        return []
    for queue in extra:
        app.control.cancel_consumer(queue, destination=[node], reply=True, timeout=WAIT)
    # Any other worker on this database told to consume it (a fix broadcast to every worker):
    # the replies are collected for a second, so that none still consumes it when the messages go.
    app.control.cancel_consumer(STUCK_QUEUE, reply=True, timeout=0.5)
    client = _client()
    try:
        client.delete(*(STUCK_QUEUE + suffix for suffix in _PRIORITY_SUFFIXES))
        client.delete(*(f"celery-task-meta-{i}" for i in [_stuck["id"], *_stuck.get("others", [])]))
    finally:
        client.close()
    (x, y), *rest = STUCK_ARGS
    tasks.add.apply_async((x, y), queue=STUCK_QUEUE, task_id=_stuck["id"])
    _stuck["others"] = [tasks.add.apply_async(args, queue=STUCK_QUEUE).id for args in rest]
    return None if consumed is None else extra


def _intact() -> bool:
    """Is the situation still as the set-up left it: the three messages waiting in STUCK_QUEUE
    (had any worker consumed it, they would be gone), and no result for stuck?"""
    if "others" not in _stuck:
        return False
    client = _client()
    try:
        ids = {json.loads(raw).get("headers", {}).get("id") for raw in client.lrange(STUCK_QUEUE, 0, -1)}
        return (ids == {_stuck["id"], *_stuck["others"]} and client.llen(STUCK_QUEUE) == len(STUCK_ARGS)
                and not client.exists(f"celery-task-meta-{_stuck['id']}",
                                      *(STUCK_QUEUE + suffix for suffix in _PRIORITY_SUFFIXES[1:])))
    finally:
        client.close()


def send_stuck_tasks() -> AsyncResult:
    """Exercise 3's set-up: a colleague's code sent three add() tasks; the first one's
    AsyncResult. Where they went is what the learner finds out."""
    _stuck.clear()   # a new situation: _put_back() sends it
    _stuck["id"] = str(uuid.uuid4())
    _put_back()
    return _tasks().add.AsyncResult(_stuck["id"])


def _lists_holding(client: redis.Redis, task_id: str) -> list[str]:
    """The Redis lists (queues) that hold a message of this task."""
    found = []
    for key in client.scan_iter("*"):
        if client.type(key) == "list" and any(json.loads(raw).get("headers", {}).get("id") == task_id
                                              for raw in client.lrange(key, 0, -1)):
            found.append(key)
    return found


def _names(value) -> list[str] | None:
    """Queue names, if ``value`` is a list (tuple, set) of strings."""
    if isinstance(value, list | tuple | set) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


@exercises.register(3)
def diagnosis(ns: dict) -> list[str]:
    problems = []
    for name, what in (("consumed_queues", "w1 监听的队列名的列表（inspect active_queues）"),
                       ("stuck_queue", "stuck 的消息所在的队列的名字"),
                       ("waiting", "那个队列里等着的消息条数（LLEN）"),
                       ("unstick", "让 stuck 终于被执行的修复")):
        problems += selfcheck.given(ns, name, what)
    if problems:
        return problems
    if "id" not in _stuck:
        return ["还没有 stuck：先运行练习 3 上面那个发出 stuck 的单元格"]
    tried = _put_back()   # the situation the learner's facts were found in, whatever ran since
    if tried is None:
        return [f"w1 没有回答 inspect active_queues：{_no_worker()}"]
    try:
        return _diagnosis(ns, tried)
    finally:
        _put_back()   # the next attempt meets the same situation, and w1 consumes only celery again


def _diagnosis(ns: dict, tried: list[str]) -> list[str]:
    from celery.signals import before_task_publish

    tasks = _tasks()
    app = tasks.app
    node = _w1()
    note = (f"（检查开始时 w1 还在监听 {', '.join(tried)}：是你在别处让它监听的吧？检查已经把情形恢复成"
            "练习开始时的样子。修复请只写进 unstick()，再重新运行答案单元格）") if tried else ""
    consumed = _queues_of(app, node)
    if consumed is None:
        return [f"w1 没有回答 inspect active_queues：{_no_worker()}"]
    client = _client()
    try:
        holders = _lists_holding(client, _stuck["id"])
        holder = holders[0] if holders else None
        length = client.llen(holder) if holder else 0
        types = {name: client.type(name) for name in (ns["stuck_queue"],) if isinstance(name, str)}
    finally:
        client.close()

    problems = []
    # 1. The queues w1 consumes.
    named = _names(ns["consumed_queues"])
    if named is None:
        given = type(ns["consumed_queues"]).__name__
        problems.append(f"`consumed_queues` 要是队列名的列表（例如 ['某个队列']），你给出了 {given}："
                        "inspect active_queues 的回复里，每个队列是一个字典，名字在它的 'name' 里")
    else:
        not_consumed = sorted(set(named) - set(consumed))
        if not_consumed:
            problems.append(f"`consumed_queues` 里的 {', '.join(not_consumed)}：w1 并没有监听它"
                            f"（看 inspect active_queues 里 w1 的回复，或横幅的 [queues]）{note}")
        if set(consumed) - set(named):
            problems.append("`consumed_queues` 少了 w1 正在监听的队列：看 inspect active_queues 里 w1 的回复")

    # 2. Where stuck's message waits.
    queue = ns["stuck_queue"]
    if not isinstance(queue, str):
        problems.append(f"`stuck_queue` 要是队列的名字（一个字符串），你给出了 {type(queue).__name__}")
    elif queue != holder:
        kind = types.get(queue, "none")
        if queue in consumed:
            why = f"w1 监听着 {queue!r}，发到那里的消息早就被取走执行了"
        elif kind == "none":
            why = f"Redis 里没有叫 {queue!r} 的键"
        elif kind != "list":
            why = f"Redis 里的 {queue!r} 是 {kind}，不是队列（队列是 list）"
        else:
            why = f"list {queue!r} 里没有 stuck 的消息"
        problems.append(f"`stuck_queue`：{why}。列出 Redis 里类型是 list 的键，看哪一个里有 stuck.id 的消息")

    # 3. How many wait there.
    waiting = ns["waiting"]
    if isinstance(waiting, bool) or not isinstance(waiting, int):
        problems.append(f"`waiting` 要是一个整数（LLEN 的结果），你给出了 {waiting!r}")
    elif holder and waiting != length:
        problems.append(f"`waiting` 是 {waiting}，和 LLEN 数出来的不一样：数的是 stuck 所在的那个队列吗？")

    # 4. The fix: called only once the diagnosis found the queue (a fix built on a wrong one can
    # do harm: a worker told to consume a key that is not a list stops with WRONGTYPE).
    if queue != holder:
        problems.append("`stuck_queue` 查对以后，检查才会调用 `unstick()`：先诊断，再修复")
        return problems
    sent: list[tuple[str, str]] = []

    def record(sender=None, headers=None, routing_key=None, **_):
        if sender == "demo_tasks.tasks.add" and headers:
            sent.append((headers.get("id"), routing_key))

    stuck = tasks.add.AsyncResult(_stuck["id"])   # a fresh object: never the learner's cached one
    before_task_publish.connect(record, weak=False)
    try:
        ns["unstick"]()
    finally:
        before_task_publish.disconnect(record)
    # A fix may take effect a moment after it returns (a remote-control command without a reply).
    deadline = time.monotonic() + FIRST_LOOK
    while not stuck.ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not stuck.ready():
        now = _queues_of(app, node) or []
        others = app.control.inspect(timeout=0.5).active_queues() or {}
        someone = STUCK_QUEUE in now or any(STUCK_QUEUE in [q["name"] for q in queues] for queues in others.values())
        resent = [routing for task_id, routing in sent if task_id == _stuck["id"]]
        if resent and not someone and all(routing == STUCK_QUEUE for routing in resent):
            problems.append("`unstick()` 用 stuck 的 id 重新发送了它，可还是发到了同一个没人监听的队列")
        elif not someone and not resent:
            if sent:
                problems.append("`unstick()` 重新发送了 add，但那是一个新任务（新的 id），stuck 本身还在队列里等着："
                                "让 w1 也去监听 stuck 所在的队列（add_consumer），或者重发时给 task_id=stuck.id")
            else:
                problems.append("调用 `unstick()` 以后，仍然没有 worker 监听 stuck 所在的队列，stuck 还是 PENDING："
                                "让 w1 也去监听它（“运行 run_task.py”一节里用过的远程控制命令）")
        else:
            try:
                stuck.get(timeout=WAIT, propagate=False)
            except ResultTimeout:
                problems.append(f"调用 `unstick()` 以后，stuck {_no_worker()}")
    if stuck.ready() and stuck.result != sum(STUCK_ARGS[0]):
        problems.append(f"stuck 的结果是 {stuck.result!r}，应该是 {sum(STUCK_ARGS[0])}")
    return problems
