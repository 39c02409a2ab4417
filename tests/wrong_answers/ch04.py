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
               "    reply = requests.post(flower_proc.url + \"/api/task/async-apply/demo_tasks.tasks.slow_add\",\n"
               "                          json={\"args\": [x, y, 0.5]}, auth=flower_proc.auth, timeout=10)\n"
               "    return reply.json()[\"task-id\"]\n"],
              hint="放进 JSON 的 kwargs", why="seconds as a positional argument"),
        Wrong(["def apply_via_api(x, y):\n"
               "    reply = requests.post(flower_proc.url + \"/api/task/async-apply/demo_tasks.tasks.slow_add\",\n"
               "                          json={\"args\": [x, y], \"kwargs\": {\"seconds\": 0.5}},\n"
               "                          auth=flower_proc.auth, timeout=10)\n"
               "    return reply.json()                             # the whole reply\n"],
              hint="要返回 API 回复里的 \"task-id\"", why="the whole reply returned"),
    ],
    3: [
        Wrong(["def queue_length(name):\n"
               "    queues = flower_get(\"/api/queues/length\")[\"active_queues\"]\n"
               "    return next((q[\"messages\"] for q in queues if q[\"name\"] == name), 0)\n"],
              hint="只报告有 worker 在监听的队列", why="asked Flower"),
        Wrong(["def queue_length(name):\n"
               "    return client.llen(\"celery\")                   # the default queue, whatever name says\n"],
              hint="名字就是参数 name", why="always the queue celery"),
    ],
}
