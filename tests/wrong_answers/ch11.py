"""Plausible wrong answers to chapter 11's exercises (tests the learner writes), each with a
piece of the hint its check must print (run by tests/exercise_matrix.py, in the learner-mode
test of chapter 11 after Run All)."""

from tests.exercise_matrix import Wrong


def _block(number: int, body: str) -> str:
    return f"%%writeblock test_ex{number}.py exercise-{number}\n{body}"


def _rate(*statuses: int, worker: bool = True, call: str = 'fetch_rate.delay("USD").get(timeout=10)',
          mock: bool = True) -> str:
    """Exercise 2's test: the rate service (replaced by responses unless ``mock`` is false) answers
    ``statuses`` and then the rate; the test asserts the result of ``call`` only."""
    lines = (["@responses.activate"] if mock else []) + [f"def test_rate({'celery_worker' if worker else ''}):"]
    if mock:
        lines += [f"    responses.get(RATE_URL, status={status})" for status in statuses]
        lines.append('    responses.get(RATE_URL, json={"rate": 7.1})')
    lines.append(f"    assert {call} == 7.1")
    imports = "import responses\n\nfrom exercise_tasks import RATE_URL, fetch_rate\n\n\n" if mock else \
        "from exercise_tasks import fetch_rate\n\n\n"
    return _block(2, imports + "\n".join(lines) + "\n")


def _schedule(test: str, *, travel: bool = True, zone: bool = True) -> str:
    """Exercise 3's test: the imports and the schedule it needs, then ``test``."""
    return _block(3, "from datetime import datetime\n"
                     + ("from zoneinfo import ZoneInfo\n" if zone else "") + "\n"
                     + ("import time_machine\n\n" if travel else "")
                     + "from exercise_tasks import app\n\n"
                     + ('BEIJING = ZoneInfo("Asia/Shanghai")\n' if zone else "")
                     + 'schedule = app.conf.beat_schedule["weekday-report"]["schedule"]\n\n\n' + test)


WRONG = {
    1: [
        Wrong([_block(1, "from exercise_tasks import split_batches\n\n\n"
                         "def test_batches():\n"
                         "    assert split_batches([1, 2, 3, 4], 2) == [[1, 2], [3, 4]]\n")],
              hint="最后一批不满 size 个时被丢掉了", why="only sizes that divide evenly: the lost last batch passes"),
        Wrong([_block(1, "from exercise_tasks import split_batches\n\n\n"
                         "def test_batches():\n"
                         "    assert split_batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]\n")],
              hint="size 是 0 时没有报错", why="the refusal of size 0 is not tested"),
        Wrong([_block(1, "from exercise_tasks import split_batches\n\n\n"
                         "def test_batches():\n"
                         "    assert split_batches.delay([1, 2, 3], 2).get(timeout=5) == [[1, 2], [3]]\n")],
              hint="这一题直接调用任务函数", why="sends the task (no broker, no worker) instead of calling it"),
        Wrong([_block(1, "from exercise_tasks import split_batches\n\n\n"
                         "def batches_are_kept():\n"
                         "    assert split_batches([1, 2, 3], 2) == [[1, 2], [3]]\n")],
              hint="没有找到测试", why="the function's name does not start with test_"),
    ],
    2: [
        Wrong([_rate(503, 503)], hint="一共 4 次", why="the result is checked, the number of requests is not"),
        Wrong([_rate(worker=False, call='fetch_rate.delay("USD").get(timeout=5)')],
              hint="把 celery_worker 写进测试函数的参数", why="no worker: the task is sent and nobody runs it"),
        Wrong([_rate(mock=False)],
              hint="用 @responses.activate", why="the real address is called: nothing answers there"),
        Wrong([_rate(503, 503, worker=False, call='fetch_rate("USD")')],
              hint="直接调用任务不会重试", why="a plain call: autoretry re-raises the 503's ServerError"),
    ],
    3: [
        Wrong([_schedule("def test_monday():\n"
                         "    with time_machine.travel(datetime(2025, 1, 6, 7, 30, 1, tzinfo=BEIJING), tick=False):\n"
                         "        assert schedule.is_due(datetime(2025, 1, 3, 7, 30, tzinfo=BEIJING)).is_due\n")],
              hint="星期六、星期日也运行", why="only Monday's run is tested: weekends, the zone and the minute pass"),
        Wrong([_schedule("def test_not_on_saturday():\n"
                         "    assert not schedule.is_due(datetime(2025, 1, 3, 7, 30, tzinfo=BEIJING)).is_due\n",
                         travel=False)],
              hint="time_machine.travel", why="asks the real clock, which is long past that Friday"),
        Wrong([_schedule("def test_not_on_saturday():\n"
                         "    with time_machine.travel(datetime(2025, 1, 4, 7, 30, 1), tick=False):\n"
                         "        assert not schedule.is_due(datetime(2025, 1, 3, 7, 30)).is_due\n", zone=False)],
              hint="时刻要带时区", why="naive datetimes: time-machine reads them as UTC, 15:30 in Beijing"),
    ],
}
