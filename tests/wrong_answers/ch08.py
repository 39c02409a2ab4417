"""Plausible wrong answers to chapter 08's exercises, each with a piece of the hint
its check must print (tests/exercise_matrix.py runs them after Run All)."""

from tests.exercise_matrix import Wrong

_BLOCK = "%%writeblock my_tasks.py exercise-1\n"
_COUNT = """@app.task
def count_piece_safely(text):
    try:
        return {"counts": wordcount.count_words(text), "error": None}
    except Exception as exc:
        return {"counts": {}, "error": f"{type(exc).__name__}: {exc}"}


"""
_MERGE = """@app.task
def merge_safely(results, n=10):
    failed = [i for i, r in enumerate(results) if r["error"]]
    counts = wordcount.merge(r["counts"] for r in results)
    return {"top": wordcount.top(counts, n), "failed": failed}
"""
# A callback for pieces that return a bare count: it sees no failure.
_MERGE_PLAIN = """@app.task
def merge_safely(results, n=10):
    return {"top": wordcount.top(wordcount.merge(results), n), "failed": []}
"""
_PING = "celery -A demo_tasks.workflows worker --loglevel=info -Q ch08-ping -n ping@%h"
_ROUTES = """my_routes = {
    "demo_tasks.workflows.slow_report": {"queue": "slow"},
    "demo_tasks.workflows.fast_ping": {"queue": "ch08-ping"},
}
"""

WRONG = {
    1: [
        # The pipeline's own piece: it raises, so the callback never runs.
        Wrong([_BLOCK + "@app.task\n"
               "def count_piece_safely(text):\n"
               "    return wordcount.count_words(text)\n\n\n" + _MERGE_PLAIN],
              hint="所以 chord 的回调 merge_safely 根本没有运行", why="the piece does not catch"),
        # Only the missing piece is foreseen: the piece that is not text still raises.
        Wrong([_BLOCK + "@app.task\n"
               "def count_piece_safely(text):\n"
               "    if text is None:\n"
               "        return {\"counts\": {}, \"error\": \"missing\"}\n"
               "    return {\"counts\": wordcount.count_words(text), \"error\": None}\n\n\n" + _MERGE],
              hint="第 0 块（不是文字的一块 7）在 count_piece_safely 里抛出了 TypeError", why="catches None only"),
        # The error is swallowed: an empty count, and nobody learns which piece failed.
        Wrong([_BLOCK + "@app.task\n"
               "def count_piece_safely(text):\n"
               "    try:\n"
               "        return wordcount.count_words(text)\n"
               "    except Exception:\n"
               "        return {}\n\n\n" + _MERGE_PLAIN],
              hint="failed 应该是 [1]，现在是 []", why="the failure swallowed, not reported"),
        # The callback returns the top words only.
        Wrong([_BLOCK + _COUNT + "@app.task\n"
               "def merge_safely(results, n=10):\n"
               "    return wordcount.top(wordcount.merge(r[\"counts\"] for r in results), n)\n"],
              hint="它应该返回一个字典", why="a list, not the report"),
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
