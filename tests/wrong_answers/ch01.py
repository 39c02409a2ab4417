"""Chapter 01's plausible wrong answers, each with a piece of the hint it must get
(tests/exercise_matrix.py runs them in a kernel where the notebook ran)."""

from tests.exercise_matrix import Wrong

#: Exercise 2's reference function.
FOUR_TASKS = ("def four_tasks():\n"
              "    results = [slow_add.delay(i, i, seconds=1) for i in range(4)]\n"
              "    return [r.get(timeout=10) for r in results]\n")

#: Exercise 3's reference answer, in pieces (a wrong answer changes one).
BLOCKING = "def blocking_view(i):\n    return slow_add(i, i, seconds=0.3)\n\n\n"
QUEUED = "def queued_view(i):\n    return slow_add.delay(i, i, seconds=0.3)\n\n\n"
PREDICTED = "predicted_blocking = 0.9\npredicted_queued = 0.0\n"
MEASURED = "measured_blocking = max(serve(blocking_view))\nmeasured_queued = max(serve(queued_view))\n"

WRONG = {
    1: [
        # Read at once: whether the worker has finished add by then is a race (on a loaded machine it
        # has, about once in 200 runs), so its two child processes are kept busy for a second first.
        Wrong(["busy = [slow_add.delay(0, 0, seconds=1) for _ in range(2)]   # a busy worker\n"
               "result_1 = add.delay(40, 2)\n"
               "answer_1 = result_1.result   # read at once, before the worker has run it\n"],
              hint="结果还没到就读了 `.result`", why="reads .result at once"),
        Wrong(["result_1 = add(40, 2)   # called here, not queued\n"
               "answer_1 = result_1\n"],
              hint="是不是直接调用了 `add(40, 2)`", why="calls add directly"),
        Wrong(["result_1 = add.delay(40, 2).get(timeout=10)   # the value, not the receipt\n"
               "answer_1 = result_1\n"],
              hint="把 `get()` 取回的值存进了 `result_1`", why="stores get()'s value as result_1"),
        Wrong(["result_1 = add.delay(40, 2)\n"
               "answer_1 = result_1   # the receipt, not the value\n"],
              hint="`answer_1` 还是一个 AsyncResult", why="the AsyncResult as the answer"),
    ],
    2: [
        Wrong(["predicted_2 = 2.0\n\n\n"
               "def four_tasks():\n"
               "    # each get() right after its delay(): the next task goes out only when this one is done\n"
               "    return [slow_add.delay(i, i, seconds=1).get(timeout=10) for i in range(4)]\n"],
              hint="4 个任务是一个接一个执行的", why="delay().get() one at a time"),
        Wrong(["predicted_2 = 4.0   # 4 tasks of 1 s each\n\n\n" + FOUR_TASKS],
              hint="你预测 4.0 秒", why="predicts 4 s (one after another)"),
        Wrong(['predicted_2 = "2 秒"\n\n\n' + FOUR_TASKS],
              hint="`predicted_2` 应该是一个数（秒）", why="a prediction in words"),
        Wrong(["predicted_2 = 2.0\n\n\n"
               "def four_tasks():\n"
               "    return [slow_add.delay(i, i, seconds=1) for i in range(4)]   # never waits\n"],
              hint="`four_tasks()` 返回的是 AsyncResult", why="returns the AsyncResults"),
    ],
    3: [
        Wrong(["def blocking_view(i):\n"
               "    return slow_add.delay(i, i, seconds=0.3).get(timeout=30)   # queued, then waited for\n\n\n"
               + QUEUED + PREDICTED + MEASURED],
              hint="是不是写成了 delay().get()", why="blocking view is delay().get()"),
        Wrong(["def blocking_view(i):\n"
               "    slow_add(i, i, seconds=0.3)   # no return\n\n\n" + QUEUED + PREDICTED + MEASURED],
              hint="`blocking_view(i)` 应该返回", why="blocking view returns nothing"),
        Wrong([BLOCKING + "def queued_view(i):\n"
               "    result = slow_add.delay(i, i, seconds=0.3)\n"
               "    result.get(timeout=30)   # waits for the worker before responding\n"
               "    return result\n\n\n" + PREDICTED + MEASURED],
              hint="排队版的每个视图都等到任务做完才返回", why="queued view waits for its task"),
        Wrong([BLOCKING + "def queued_view(i):\n"
               "    slow_add.delay(i, i, seconds=0.3)   # no return\n\n\n" + PREDICTED + MEASURED],
              hint="`queued_view(i)` 应该返回", why="queued view returns nothing"),
        Wrong([BLOCKING + "def queued_view(i):\n"
               "    return slow_add.delay(i, i)   # seconds left out\n\n\n" + PREDICTED + MEASURED],
              hint="排队的任务不对", why="queued task without seconds=0.3"),
        Wrong([BLOCKING + QUEUED + "predicted_blocking = 10 / 4 * 0.3   # 2.5 rounds\n"
               "predicted_queued = 0.0\n" + MEASURED],
              hint="要分几轮处理", why="predicts without rounding up"),
        Wrong([BLOCKING + QUEUED + PREDICTED
               + "measured_blocking = sum(serve(blocking_view))   # every user's wait added up\n"
               "measured_queued = max(serve(queued_view))\n"],
              hint="是不是把所有用户的等待加了起来", why="sums the waits"),
        Wrong([BLOCKING + QUEUED + PREDICTED
               + "measured_blocking = serve(blocking_view)   # every user's wait, not the slowest\n"
               "measured_queued = serve(queued_view)\n"],
              hint="`measured_blocking` 应该是一个数（秒）", why="the list of waits, not max()"),
        Wrong([BLOCKING + QUEUED + PREDICTED
               + "measured_blocking = max(serve(blocking_view))\n"
               "measured_queued = max(serve(blocking_view))   # the blocking view measured twice\n"],
              hint="应该远小于阻塞版的", why="measures the blocking view for the queued figure"),
    ],
}
