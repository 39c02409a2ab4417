"""Chapter 03's plausible wrong answers, each with a piece of the hint it must get
(tests/exercise_matrix.py runs them in a kernel where the notebook ran)."""

from selfcheck.ch03 import STUCK_QUEUE
from tests.exercise_matrix import Wrong

#: Exercise 3: the reference answer's way to the facts, and its fix; each wrong answer changes one thing.
FACTS = """# facts
replies = app.control.inspect(destination=[node], timeout=10).active_queues()
consumed_queues = [queue["name"] for queue in replies[node]]
lists = [key for key in client.keys("*") if client.type(key) == "list"]
stuck_queue = next(key for key in lists
                   if any(json.loads(raw)["headers"]["id"] == stuck.id for raw in client.lrange(key, 0, -1)))
waiting = client.llen(stuck_queue)
"""
FIX = """def unstick():
    app.control.add_consumer(stuck_queue, destination=[node], reply=True, timeout=10)
"""

WRONG = {
    1: [
        Wrong(["def add_later(x, y):\n"
               "    return add.delay(x, y)   # no countdown\n"],
              hint="发出的消息里没有 ETA", why="delay() without a countdown"),
        Wrong(["def add_later(x, y):\n"
               "    time.sleep(1)   # waits here instead of in the worker\n"
               "    return add.delay(x, y)\n"],
              hint="`add_later` 里调用了 sleep", why="sleeps, then sends"),
        Wrong(["def add_later(x, y):\n"
               "    return add.apply_async((x, y), countdown=1).get(timeout=10)   # the value\n"],
              hint="`add_later(20, 22)` 返回了 int", why="returns get()'s value"),
        Wrong(["def add_later(x, y):\n"
               "    result = add.apply_async((x, y), countdown=1)\n"
               "    result.get(timeout=10)   # waits for it before returning\n"
               "    return result\n"],
              hint="`add_later` 返回时任务已经做完了", why="waits before returning"),
        Wrong(["def add_later(x, y):\n"
               "    return add.apply_async((x, y), countdown=1000)   # taken for milliseconds\n"],
              hint="countdown 的单位是秒", why="countdown in milliseconds"),
    ],
    2: [
        Wrong(["def read_result_key(task_id):\n"
               "    result = AsyncResult(task_id, app=app)   # Celery's view, not the key in Redis\n"
               "    return result.status, result.result, client.ttl(f\"celery-task-meta-{task_id}\")\n"],
              hint="result 是描述异常的字典", why="AsyncResult instead of the key"),
        Wrong(["def read_result_key(task_id):\n"
               "    key = f\"celery-task-meta-{task_id}\"\n"
               "    meta = json.loads(client.get(key))\n"
               "    return meta[\"status\"], meta[\"result\"], client.pttl(key)   # milliseconds\n"],
              hint="ttl 是这个键还剩多少秒过期", why="PTTL (milliseconds)"),
        Wrong(["def read_result_key(task_id):\n"
               "    key = f\"celery-task-meta-{task_id}\"\n"
               "    meta = json.loads(client.get(key))\n"
               "    return meta[\"status\"], meta[\"result\"], 86400   # result_expires, typed in\n"],
              hint="是不是写死了某个值", why="a TTL typed in"),
        Wrong(["def read_result_key(task_id):\n"
               "    return json.loads(client.get(f\"celery-task-meta-{task_id}\"))   # the whole record\n"],
              hint="要返回三样东西 (status, result, ttl)", why="returns the whole record"),
    ],
    3: [
        Wrong([FACTS + "consumed_queues = consumed_queues + [stuck_queue]   # it consumes every queue, surely\n" + FIX],
              hint="w1 并没有监听它", why="the stuck queue among w1's queues"),
        Wrong([FACTS + "consumed_queues = replies   # the whole reply\n" + FIX],
              hint="要是队列名的列表", why="the raw inspect reply"),
        Wrong([FACTS + "stuck_queue = \"celery\"   # the default queue\n" + FIX],
              hint="发到那里的消息早就被取走执行了", why="the default queue"),
        Wrong([FACTS + f"stuck_queue = \"_kombu.binding.{STUCK_QUEUE}\"   # a key naming it\n" + FIX],
              hint="不是队列（队列是 list）", why="kombu's binding table"),
        Wrong([FACTS + "waiting = 1   # only stuck itself\n" + FIX],
              hint="和 LLEN 数出来的不一样", why="a count typed in"),
        Wrong([FACTS + "def unstick():\n"
                       "    add.apply_async((2, 3))   # the same sum, sent again\n"],
              hint="那是一个新任务", why="re-sent as a new task"),
        Wrong([FACTS + "def unstick():\n"
                       "    app.control.add_consumer(\"celery\", destination=[node], reply=True, timeout=10)\n"],
              hint="仍然没有 worker 监听 stuck 所在的队列", why="consumes the default queue again"),
        # add_consumer answers before the worker applies it (call_soon): ask until it shows,
        # so that the facts are taken after the fix, whatever the machine's load.
        Wrong([FACTS + "# tried here, then asked w1 again\n"
                       "import time\n"
                       "app.control.add_consumer(stuck_queue, destination=[node], reply=True, timeout=10)\n"
                       "deadline = time.monotonic() + 20\n"
                       "while time.monotonic() < deadline:\n"
                       "    replies = app.control.inspect(destination=[node], timeout=10).active_queues() or {}\n"
                       "    consumed_queues = [queue[\"name\"] for queue in replies.get(node, [])]\n"
                       "    if stuck_queue in consumed_queues:\n"
                       "        break\n" + FIX],
              hint="检查开始时 w1 还在监听", why="the fix tried in the cell, then the facts"),
    ],
}
