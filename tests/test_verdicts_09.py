"""Chapter 09's exercise checks (selfcheck/ch09.py) without a notebook: the
reference answers pass, the empty stubs fail with "还没有答案", each plausible
wrong answer (tests/wrong_answers/ch09.py) gets its own hint, and the same
answer gets the same verdict whatever ran before it. Against real processes: a
bot receiver (launcher.start_bot_receiver, its "hang" 3 s as in the chapter), an
embedded broker and, for exercise 2, the new worker each check starts; exercise
3 on pytest-django's test database.

The cells are run the way the notebook runs them: a ``%%writeblock FILE BLOCK``
cell through selfcheck.Workspace (what the cell magic calls), any other cell
with exec() in the namespace the check is given (the kernel's globals()).
"""

from __future__ import annotations

import pytest

import launcher
from selfcheck import ch09
from tests.helpers import run_cell
from tests.wrong_answers.ch09 import WRONG

SECRET = "SEC" + "fedcba9876543210" * 4  # this module's own robot secret

#: The reference answers, as the notebook's collapsed cells hold them.
REFERENCE = {
    1: '''# 参考答案：练习 1（先自己做，再展开看）
def classify_bot_answer(status, body):
    if 500 <= status < 600:
        return "retry"           # the robot, or a gateway in front of it, may answer a moment later
    if not 200 <= status < 300 or body is None:
        return "permanent"       # a 4xx (a gateway, a proxy), or not DingTalk's JSON: the same answer next time
    errcode = body.get("errcode")
    if errcode == 0:
        return "sent"
    if errcode in (130101, -1):
        return "retry"           # 130101: more than 20 a minute; -1: DingTalk busy. Wait, then send again
    return "permanent"           # the robot is set up wrong (signature, token, ...): the same answer next time
''',
    2: '''%%writeblock my_tasks.py exercise-2
@app.task(bind=True, autoretry_for=(requests.Timeout, requests.ConnectionError, ServerError),
          max_retries=3, default_retry_delay=0.2)
def notify_ops(self, text, key):
    # The same key on every attempt: a retry after a lost answer is delivered once.
    reply = requests.post(HOOK_URL, json={"event": "ops", "text": text},
                          headers={"Idempotency-Key": key}, timeout=1)
    if reply.status_code >= 500:
        raise ServerError(f"HTTP {reply.status_code}")   # may pass: retried
    reply.raise_for_status()                              # a 4xx: HTTPError, not retried
    return reply.json()
''',
    3: '''# 参考答案：练习 3（先自己做，再展开看）
from django_celery_beat.models import CrontabSchedule, PeriodicTask

weekday_mornings, _ = CrontabSchedule.objects.get_or_create(
    minute="30", hour="7", day_of_week="mon-fri", day_of_month="*", month_of_year="*",
    timezone="Asia/Shanghai",                 # 07:30 in Beijing, whatever zone the server is in
)
weekday_report, _ = PeriodicTask.objects.update_or_create(
    name="daily report weekdays",             # found by name: running it again updates the same row
    defaults={"task": "notifications.tasks.mail_daily_report", "crontab": weekday_mornings,
              "interval": None, "one_off": False, "enabled": True},
)
''',
}

#: The empty answer cells.
EMPTY = {
    1: "def classify_bot_answer(status, body):\n    ...\n",
    2: "%%writeblock my_tasks.py exercise-2\n# 练习 2：任务 notify_ops(text, key)\n",
    3: "# 练习 3：用 update_or_create 建好（或更新）定时任务 “daily report weekdays”，赋给 weekday_report\n"
       "weekday_report = ...\n",
}


def verdict(ns: dict, number: int, source: str) -> list[str]:
    run_cell(ns, source)
    found = ch09.exercises.problems(number, ns)
    assert isinstance(found, list)
    return found


@pytest.fixture(scope="module")
def bot():
    proc = launcher.start_bot_receiver(secret=SECRET, hang=3)
    yield proc
    proc.cleanup()


@pytest.fixture(scope="module")
def kernel(module_broker, bot, tmp_path_factory):
    """What the chapter's kernel has when the exercises run: bot, broker, exercises_dir with my_tasks.py."""
    folder = tmp_path_factory.mktemp("ch09") / "exercises"
    folder.mkdir()
    (folder / ch09.FILE).write_text(ch09.STARTER, encoding="utf-8")
    return {"bot": bot, "broker": module_broker, "exercises_dir": folder}


def faults_left(bot) -> dict:
    return bot._call("/faults")


# --- Exercise 1: reading the robot's answer -------------------------------------------------

def test_exercise_1_reference_passes_again_and_again_and_wrong_answers_get_their_hints(kernel, bot):
    ns = dict(kernel)
    assert verdict(ns, 1, REFERENCE[1]) == []
    assert verdict(ns, 1, REFERENCE[1]) == []
    empty = verdict(ns, 1, EMPTY[1])
    assert len(empty) == 1 and empty[0].startswith("还没有答案"), empty
    for wrong in WRONG[1]:
        found = verdict(ns, 1, wrong.cells[0])
        assert found and any(wrong.hint in p for p in found), (wrong.why, found)
    assert verdict(ns, 1, REFERENCE[1]) == []
    assert faults_left(bot) == {ch09.SEND_PATH: [], ch09.HOOK_PATH: []}


def test_exercise_1_feeds_real_answers_and_clears_its_faults_when_the_function_raises(kernel, bot):
    seen = []

    def classify_bot_answer(status, body):
        seen.append((status, None if body is None else body.get("errcode")))
        raise ValueError("not yet")

    found = ch09.exercises.problems(1, {**kernel, "classify_bot_answer": classify_bot_answer})
    assert seen == [(200, 0), (200, 310000), (200, 310000), (200, 300001), (503, None), (500, None),
                    (200, 130101), (200, -1), (200, 40035), (502, None), (403, None), (200, None)]
    assert len(found) == len(seen) and all("ValueError: not yet" in p for p in found), found
    assert sum("先判断它" in p for p in found) == 3, "the three answers that are not JSON say body is None"
    assert faults_left(bot) == {ch09.SEND_PATH: [], ch09.HOOK_PATH: []}


def test_exercise_1_the_temporary_errcodes_are_real_answers_of_the_receiver_and_not_delivered(kernel, bot):
    """130101 and -1 come from the receiver's errcode faults: HTTP 200, nothing delivered;
    the malformed message is DingTalk's 200 with errcode 40035, not a 400."""
    before = len(bot.messages())

    def permanent_for_every_refusal(status, body):   # the rule before the rate limit was known
        if 500 <= status < 600:
            return "retry"
        return "sent" if 200 <= status < 300 and body is not None and body.get("errcode") == 0 else "permanent"

    found = ch09.exercises.problems(1, {**kernel, "classify_bot_answer": permanent_for_every_refusal})
    assert len(found) == 2, found
    assert "发得太快" in found[0] and "errcode 130101" in found[0] and "每分钟 20 条" in found[0], found
    assert "系统繁忙" in found[1] and "errcode -1" in found[1] and '"retry"' in found[1], found
    records = bot.messages()[before:]
    faulted = [m for m in records if m["errcode"] in (130101, -1)]
    assert [(m["status"], m["errcode"], m["delivered"]) for m in faulted] == [(200, 130101, False), (200, -1, False)]
    [malformed] = [m for m in records if m["errcode"] == 40035]
    assert (malformed["status"], malformed["verdict"], malformed["delivered"]) == (200, "bad request", False)
    assert faults_left(bot) == {ch09.SEND_PATH: [], ch09.HOOK_PATH: []}


def test_exercise_1_asks_for_the_bot_and_clears_faults_left_before_it(kernel, bot):
    def always_sent(status, body):
        return "sent" if status else "permanent"

    assert ch09.exercises.problems(1, {"classify_bot_answer": always_sent}) == [ch09.PREPARE_FIRST]
    bot.faults(ch09.SEND_PATH, ["hang", 503])   # the chapter's own leftovers: cleared before the cases
    found = ch09.exercises.problems(1, {**kernel, "classify_bot_answer": always_sent})
    assert any("HTTP 200 不等于发送成功" in p for p in found), found
    assert faults_left(bot)[ch09.SEND_PATH] == []


# --- Exercise 2: a notification that is not delivered twice ---------------------------------

def test_exercise_2_reference_stub_wrong_answers_and_the_reference_again(kernel, bot):
    ns = dict(kernel)
    before = len(bot.messages())
    assert verdict(ns, 2, REFERENCE[2]) == []
    records = bot.messages()
    assert len(records) == before + 2 + 2 + 1 + 4, "held twice, 503 twice, 400 once, 503 four times"
    assert [m["verdict"] for m in records[before:before + 2]] == ["ok", "duplicate"]
    empty = verdict(ns, 2, EMPTY[2])
    assert empty == ["还没有答案：在 %%writeblock my_tasks.py exercise-2 的单元格里定义任务 notify_ops(text, key)"]
    # One wrong answer here (each check starts a worker: ~5 s); the exercise matrix runs them all.
    wrong = next(w for w in WRONG[2] if w.why == "a new key for every attempt")
    found = verdict(ns, 2, wrong.cells[0])
    assert len(found) == 1 and wrong.hint in found[0] and "投递了 2 次" in found[0], found
    assert verdict(ns, 2, REFERENCE[2]) == []
    assert len(bot.messages()) > before, "the receiver's records are never reset"
    assert faults_left(bot) == {ch09.SEND_PATH: [], ch09.HOOK_PATH: []}


def test_exercise_2_asks_for_the_starter_first():
    assert ch09.exercises.problems(2, {}) == [ch09.START_FIRST]


# --- Exercise 3: the daily report on weekday mornings ---------------------------------------

@pytest.mark.django_db
def test_exercise_3_reference_wrong_answers_and_the_reference_again():
    ns: dict = {}
    empty = verdict(ns, 3, EMPTY[3])
    assert len(empty) == 1 and empty[0].startswith("还没有答案"), empty
    assert verdict(ns, 3, REFERENCE[3]) == []
    assert verdict(ns, 3, REFERENCE[3]) == []
    assert len(verdict(ns, 3, EMPTY[3])) == 1
    for wrong in WRONG[3]:
        found = verdict(ns, 3, wrong.cells[0])
        assert found and any(wrong.hint in p for p in found), (wrong.why, found)
    assert verdict(ns, 3, REFERENCE[3]) == []
    from django_celery_beat.models import PeriodicTask

    assert PeriodicTask.objects.filter(name=ch09.NAME).count() == 1, "updated by name, never a second row"


@pytest.mark.django_db
def test_exercise_3_reads_the_database_not_the_object():
    from django_celery_beat.models import PeriodicTask

    ns: dict = {}
    run_cell(ns, REFERENCE[3])
    PeriodicTask.objects.filter(name=ch09.NAME).delete()
    assert ch09.exercises.problems(3, ns) == [
        "还没有名为 daily report weekdays 的定时任务：数据库里没有这一行，用 PeriodicTask.objects.update_or_create("
        "name='daily report weekdays', defaults={...}) 建它"]
    run_cell(ns, REFERENCE[3])
    ns["weekday_report"].enabled = False       # changed in memory only: the row still says enabled
    assert ch09.exercises.problems(3, ns) == []


def test_exercise_3_next_runs_come_from_the_rows_own_crontab():
    from django_celery_beat.tzcrontab import TzAwareCrontab

    weekdays = TzAwareCrontab(minute="30", hour="7", day_of_week="mon-fri", tz=ch09.SHANGHAI)
    runs = ch09.next_runs(weekdays)
    assert [f"{r:%a %d %H:%M}" for r in runs] == [
        "Mon 06 07:30", "Tue 07 07:30", "Wed 08 07:30", "Thu 09 07:30", "Fri 10 07:30",
        "Mon 13 07:30", "Tue 14 07:30", "Wed 15 07:30", "Thu 16 07:30", "Fri 17 07:30"]
    assert ch09.run_days(TzAwareCrontab(minute="30", hour="7", day_of_week="0-4", tz=ch09.SHANGHAI)) == \
        {7, 1, 2, 3, 4}
    # 23:30 UTC from Sunday to Thursday is 07:30 in Beijing from Monday to Friday: right, whatever its zone.
    utc_evenings = TzAwareCrontab(minute="30", hour="23", day_of_week="sun-thu", tz=ch09.ZoneInfo("UTC"))
    assert ch09.next_runs(utc_evenings) == runs and ch09.run_days(utc_evenings) == {1, 2, 3, 4, 5}
