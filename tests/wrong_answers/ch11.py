"""Plausible wrong answers to chapter 11's exercises (tests the learner writes), each with a
piece of the hint its check must print (run by tests/exercise_matrix.py, in the learner-mode
test of chapter 11 after Run All)."""

from tests.exercise_matrix import Wrong


def _block(number: int, body: str) -> str:
    return f"%%writeblock test_ex{number}.py exercise-{number}\n{body}"


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
        Wrong([_block(2, "import responses\n\nfrom exercise_tasks import RATE_URL, fetch_rate\n\n\n"
                         "@responses.activate\n"
                         "def test_rate(celery_worker):\n"
                         "    responses.get(RATE_URL, status=503)\n"
                         "    responses.get(RATE_URL, status=503)\n"
                         "    responses.get(RATE_URL, json={\"rate\": 7.1})\n"
                         "    assert fetch_rate.delay(\"USD\").get(timeout=10) == 7.1\n")],
              hint="一共 4 次", why="the result is checked, the number of requests is not"),
        Wrong([_block(2, "import responses\n\nfrom exercise_tasks import RATE_URL, fetch_rate\n\n\n"
                         "@responses.activate\n"
                         "def test_rate():\n"
                         "    responses.get(RATE_URL, json={\"rate\": 7.1})\n"
                         "    assert fetch_rate.delay(\"USD\").get(timeout=5) == 7.1\n")],
              hint="把 celery_worker 写进测试函数的参数", why="no worker: the task is sent and nobody runs it"),
        Wrong([_block(2, "from exercise_tasks import fetch_rate\n\n\n"
                         "def test_rate(celery_worker):\n"
                         "    assert fetch_rate.delay(\"USD\").get(timeout=10) == 7.1\n")],
              hint="用 @responses.activate", why="the real address is called: nothing answers there"),
        Wrong([_block(2, "import responses\n\nfrom exercise_tasks import RATE_URL, fetch_rate\n\n\n"
                         "@responses.activate\n"
                         "def test_rate():\n"
                         "    responses.get(RATE_URL, status=503)\n"
                         "    responses.get(RATE_URL, status=503)\n"
                         "    responses.get(RATE_URL, json={\"rate\": 7.1})\n"
                         "    assert fetch_rate(\"USD\") == 7.1\n")],
              hint="直接调用任务不会重试", why="a plain call: autoretry re-raises the 503's ServerError"),
    ],
    3: [
        Wrong([_block(3, "from datetime import datetime\nfrom zoneinfo import ZoneInfo\n\nimport time_machine\n\n"
                         "from exercise_tasks import app\n\n"
                         "BEIJING = ZoneInfo(\"Asia/Shanghai\")\n"
                         "schedule = app.conf.beat_schedule[\"weekday-report\"][\"schedule\"]\n\n\n"
                         "def test_monday():\n"
                         "    with time_machine.travel(datetime(2025, 1, 6, 7, 30, 1, tzinfo=BEIJING), tick=False):\n"
                         "        assert schedule.is_due(datetime(2025, 1, 3, 7, 30, tzinfo=BEIJING)).is_due\n")],
              hint="星期六、星期日也运行", why="only Monday's run is tested: weekends, the zone and the minute pass"),
        Wrong([_block(3, "from datetime import datetime\nfrom zoneinfo import ZoneInfo\n\n"
                         "from exercise_tasks import app\n\n"
                         "BEIJING = ZoneInfo(\"Asia/Shanghai\")\n"
                         "schedule = app.conf.beat_schedule[\"weekday-report\"][\"schedule\"]\n\n\n"
                         "def test_not_on_saturday():\n"
                         "    assert not schedule.is_due(datetime(2025, 1, 3, 7, 30, tzinfo=BEIJING)).is_due\n")],
              hint="time_machine.travel", why="asks the real clock, which is long past that Friday"),
        Wrong([_block(3, "from datetime import datetime\n\nimport time_machine\n\n"
                         "from exercise_tasks import app\n\n"
                         "schedule = app.conf.beat_schedule[\"weekday-report\"][\"schedule\"]\n\n\n"
                         "def test_not_on_saturday():\n"
                         "    with time_machine.travel(datetime(2025, 1, 4, 7, 30, 1), tick=False):\n"
                         "        assert not schedule.is_due(datetime(2025, 1, 3, 7, 30)).is_due\n")],
              hint="时刻要带时区", why="naive datetimes: time-machine reads them as UTC, 15:30 in Beijing"),
    ],
}
