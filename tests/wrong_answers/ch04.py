"""Plausible wrong answers to chapter 04's exercises and a piece of the hint each
must get (tests/exercise_matrix.py runs them in a kernel where the chapter ran)."""

from tests.exercise_matrix import Wrong

WRONG = {
    1: [
        Wrong(["def add_results():\n"
               "    tasks = flower_get(\"/api/tasks\")              # every task, not only add\n"
               "    return {t[\"args\"]: t[\"result\"] for t in tasks.values()}\n"],
              hint="混进了 divide 任务", why="no taskname filter"),
        Wrong(["seen = flower_get(\"/api/tasks\", taskname=\"demo_tasks.tasks.add\")   # asked once, here\n"
               "\n"
               "\n"
               "def add_results():\n"
               "    return {t[\"args\"]: t[\"result\"] for t in seen.values()}\n"],
              hint="不要用之前存下的数据", why="Flower asked once, not per call"),
    ],
    2: [
        Wrong(["def apply_via_api(x, y):\n"
               "    reply = requests.post(f\"{FLOWER}/api/task/async-apply/demo_tasks.tasks.slow_add\",\n"
               "                          json={\"args\": [x, y, 0.5]}, auth=AUTH, timeout=10)\n"
               "    return reply.json()[\"task-id\"]\n"],
              hint="放进 JSON 的 kwargs", why="seconds as a positional argument"),
        Wrong(["def apply_via_api(x, y):\n"
               "    reply = requests.post(f\"{FLOWER}/api/task/async-apply/demo_tasks.tasks.slow_add\",\n"
               "                          json={\"args\": [x, y], \"kwargs\": {\"seconds\": 0.5}},\n"
               "                          auth=AUTH, timeout=10)\n"
               "    return reply.json()                             # the whole reply\n"],
              hint="要返回 API 回复里的 \"task-id\"", why="the whole reply returned"),
    ],
    3: [
        Wrong(["def unconsumed_queues():\n"
               "    lengths = {name: client.llen(name) for name in client.scan_iter(_type=\"list\")}\n"
               "    return {name: n for name, n in lengths.items() if n}    # every list, consumed or not\n"],
              hint="是积压，不是没人消费", why="no look at what the workers consume"),
        Wrong(["def unconsumed_queues():\n"
               "    lengths = {name: client.llen(name) for name in client.scan_iter(_type=\"list\")}\n"
               "    return {name: n for name, n in lengths.items() if n and name != \"celery\"}   # guessed\n"],
              hint="app.control.inspect().active_queues()", why="the consumed queues guessed, not asked"),
        Wrong(["def unconsumed_queues():\n"
               "    queues = flower_get(\"/api/queues/length\")[\"active_queues\"]\n"
               "    return {q[\"name\"]: q[\"messages\"] for q in queues}\n"],
              hint="它只报告有 worker 消费的队列", why="asked Flower, which lists only consumed queues"),
        Wrong(["def unconsumed_queues():\n"
               "    return {\"celery\": client.llen(\"celery\")}\n"],
              hint="不要只看 celery", why="only the default queue"),
    ],
}
