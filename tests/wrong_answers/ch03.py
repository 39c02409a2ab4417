"""Chapter 03's plausible wrong answers, each with a piece of the hint it must get
(tests/exercise_matrix.py runs them in a kernel where the notebook ran)."""

from tests.exercise_matrix import Wrong

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
        Wrong(["parked = add.delay(1, 2)   # the default queue\n"],
              hint="list `parking` 里没有这个任务的消息", why="sent to the default queue"),
        Wrong(["parked = add.apply_async((1, 2), routing_key=\"parking\")\n"],
              hint="list `parking` 里没有这个任务的消息", why="routing_key instead of queue"),
        Wrong(["parked = add.apply_async((1, 2), queue=\"parking\").id\n"],
              hint="`parked` 是 str", why="the task id, not the AsyncResult"),
    ],
}
