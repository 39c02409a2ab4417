"""Plausible wrong answers to chapter 08's exercises, each with a piece of the hint
its check must print (tests/exercise_matrix.py runs them after Run All)."""

from tests.exercise_matrix import Wrong

_PING = "celery -A demo_tasks.workflows worker --loglevel=info -Q ch08-ping -n ping@%h"
_ROUTES = """my_routes = {
    "demo_tasks.workflows.slow_report": {"queue": "slow"},
    "demo_tasks.workflows.fast_ping": {"queue": "ch08-ping"},
}
"""

WRONG = {
    1: [
        # The own-project block's style, chord(header)(callback): it sends at once.
        Wrong(["def average_of_squares(numbers):\n"
               "    return chord([mul.s(x, x) for x in numbers])(average.s())\n"],
              hint="返回了一个结果（AsyncResult）", why="chord(...)(callback) sends it"),
        # Waiting for each result in the caller, then averaging by hand.
        Wrong(["def average_of_squares(numbers):\n"
               "    squares = [mul.delay(x, x).get(timeout=10) for x in numbers]\n"
               "    return sum(squares) / len(squares)\n"],
              hint="返回了一个数 7.5", why="get() and a number, no signature"),
        Wrong(["def average_of_squares(numbers):\n"
               "    return group(mul.s(x, x) for x in numbers)\n"],
              hint="返回的是 group", why="a group without the callback"),
        Wrong(["from celery import chain\n\n"
               "def average_of_squares(numbers):\n"
               "    return chain(*[mul.s(x, x) for x in numbers], average.s())\n"],
              hint="返回的是 chain", why="a chain where a chord was asked"),
        Wrong(["def average_of_squares(numbers):\n"
               "    return chord([mul.s(x) for x in numbers], average.s())\n"],
              hint="mul.s(x, x)：[1, 2, 3, 4] 得到的却有 mul.s(1)", why="partial mul.s(x)"),
        Wrong(["def average_of_squares(numbers):\n"
               "    return chord([mul.s(x, x) for x in numbers], xsum.s())\n"],
              hint="回调应该是 average.s()", why="xsum as the callback"),
    ],
    2: [
        Wrong([_ROUTES.replace('"demo_tasks.workflows.fast_ping"', '"fast_ping"')
               + f"ping_worker_command = {_PING!r}\n"],
              hint="fast_ping 去了队列 'celery'", why="short task name as the key"),
        Wrong(['my_routes = {"demo_tasks.workflows.fast_ping": {"queue": "ch08-ping"}}\n'
               + f"ping_worker_command = {_PING!r}\n"],
              hint="slow_report 去了队列 'celery'", why="the slow route dropped"),
        Wrong([_ROUTES + 'ping_worker_command = "celery worker -A demo_tasks.workflows -Q ch08-ping"\n'],
              hint="写在 worker 前面", why="-A after worker (Celery 4 order)"),
        Wrong([_ROUTES + 'ping_worker_command = "celery -A demo_tasks.workflows worker --loglevel=info"\n'],
              hint="ping_worker_command 里没有 -Q", why="no -Q: the default queue"),
        Wrong([_ROUTES + 'ping_worker_command = "celery -A demo_tasks.workflows worker -Q celery,ch08-ping"\n'],
              hint="只该消费 ch08-ping", why="a worker on two queues"),
        Wrong([_ROUTES + 'ping_worker_command = "celery -A demo_tasks.workflows worker -Q ch08_ping -n ping@%h"\n'],
              hint="里面没有 ch08-ping", why="a typo in the queue name"),
    ],
}
