"""Chapter 06: `manage.py seed_schedules`, the project's periodic tasks seeded in deployment.

Run as a deployment runs it: `python manage.py seed_schedules` in a fresh
process, on a migrated SQLite file, read back with the sqlite3 module. A
"change in the code" is the command's SCHEDULES changed in the process that runs
it (`manage.py shell -c`, then call_command), so the code under test is the
file's own. Whether a real beat sends what is seeded is the DatabaseScheduler's
business (tests/test_periodic.py); here: what the rows say, and that a run with
nothing to do does not even touch beat's change mark.
"""

from __future__ import annotations

import sqlite3

import pytest

import launcher
from launcher.django_procs import django_env
from launcher.procs import ProcessError

NAMES = ["daily report mail", "heartbeat every 10 minutes", "heartbeat nightly"]
DAILY, EVERY_10, NIGHTLY = NAMES


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """A migrated database and the environment that points manage.py at it."""
    folder = tmp_path_factory.mktemp("seed")
    env = django_env(folder, launcher.DEFAULT_URL)   # no broker is used: rows only
    launcher.manage("migrate", "--noinput", env=env)
    return folder / "db.sqlite3", env


def seed(env, *options: str) -> list[str]:
    """The command's report, one line per task and the totals."""
    return launcher.manage("seed_schedules", *options, env=env).stdout.splitlines()


def in_code(env, change: str, *options: str) -> list[str]:
    """Run the command with SCHEDULES changed by ``change`` (Python, on ``SCHEDULES``), as a new release would."""
    code = ("from django.core.management import call_command\n"
            "from reports.management.commands import seed_schedules\n"
            "SCHEDULES = seed_schedules.SCHEDULES\n"
            f"{change}\n"
            f"call_command('seed_schedules', *{list(options)!r})\n")
    return launcher.manage("shell", "-v", "0", "-c", code, env=env).stdout.splitlines()


def rows(db_file) -> dict[str, tuple]:
    """Every periodic task row, whole (schedule values included), by name."""
    with sqlite3.connect(db_file) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute(
            "SELECT t.*, i.every, i.period, c.minute, c.hour, c.day_of_week, c.timezone AS crontab_tz "
            "FROM django_celery_beat_periodictask t "
            "LEFT JOIN django_celery_beat_intervalschedule i ON i.id = t.interval_id "
            "LEFT JOIN django_celery_beat_crontabschedule c ON c.id = t.crontab_id").fetchall()
    return {row["name"]: dict(row) for row in found}


def schedule_rows(db_file) -> tuple[int, int]:
    with sqlite3.connect(db_file) as conn:
        return tuple(conn.execute(f"SELECT COUNT(*) FROM django_celery_beat_{t}schedule").fetchone()[0]
                     for t in ("interval", "crontab"))


def beats_mark(db_file):
    """PeriodicTasks.last_update: what beat compares to notice a change."""
    with sqlite3.connect(db_file) as conn:
        found = conn.execute("SELECT last_update FROM django_celery_beat_periodictasks").fetchone()
    return found and found[0]


def operator(env, code: str) -> None:
    """A change made as the admin makes it: save() on the row."""
    launcher.manage("shell", "-c", "from django_celery_beat.models import IntervalSchedule, PeriodicTask\n" + code,
                    env=env)


def test_seeding_creates_once_then_changes_nothing_and_keeps_what_the_operator_owns(db):
    db_file, env = db
    assert seed(env) == [
        "created    heartbeat every 10 minutes: reports.tasks.heartbeat, every 10 minutes",
        "created    heartbeat nightly: reports.tasks.heartbeat, crontab '0 3 * * *' (Asia/Shanghai)",
        "created    daily report mail: notifications.tasks.mail_daily_report, crontab '0 8 * * *' (Asia/Shanghai)",
        "3 created, 0 updated, 0 unchanged.",
    ]
    first = rows(db_file)
    assert sorted(first) == NAMES
    assert (first[EVERY_10]["every"], first[EVERY_10]["period"], first[EVERY_10]["enabled"]) == (10, "minutes", 1)
    assert first[EVERY_10]["expire_seconds"] == 300
    nightly = first[NIGHTLY]
    assert (nightly["minute"], nightly["hour"], nightly["crontab_tz"], nightly["enabled"]) == ("0", "3",
                                                                                           "Asia/Shanghai", 1)
    # Chapter 09: the daily report, mailed at 08:00 in CELERY_TIMEZONE, with no arguments (yesterday's).
    daily = first[DAILY]
    assert (daily["task"], daily["minute"], daily["hour"], daily["day_of_week"], daily["crontab_tz"]) == \
        ("notifications.tasks.mail_daily_report", "0", "8", "*", "Asia/Shanghai")
    assert (daily["args"], daily["kwargs"], daily["enabled"], daily["expire_seconds"]) == ("[]", "{}", 1, 4 * 3600)
    assert daily["crontab_id"] != nightly["crontab_id"], "two schedules, two crontab rows"
    schedules, mark = schedule_rows(db_file), beats_mark(db_file)
    assert mark is not None, "creating rows through save() tells beat"

    # A second run: nothing to do, nothing written -- not a row, not a schedule, not beat's mark.
    assert seed(env) == ["unchanged  heartbeat every 10 minutes", "unchanged  heartbeat nightly",
                         "unchanged  daily report mail", "0 created, 0 updated, 3 unchanged."]
    assert rows(db_file) == first
    assert schedule_rows(db_file) == schedules and beats_mark(db_file) == mark

    # The operator switches the nightly task off and stretches the other to 30 minutes in the admin.
    operator(env, "t = PeriodicTask.objects.get(name='heartbeat nightly'); t.enabled = False; t.save()\n"
                  "t = PeriodicTask.objects.get(name='heartbeat every 10 minutes')\n"
                  "t.interval = IntervalSchedule.objects.create(every=30, period='minutes'); t.save()\n")
    # The next deployment: the schedule is the code's again; the switch stays the operator's.
    assert seed(env) == [
        "updated    heartbeat every 10 minutes: schedule every 30 minutes -> every 10 minutes",
        "unchanged  heartbeat nightly: enabled=False kept (the operator's; --reset to undo)",
        "unchanged  daily report mail",
        "0 created, 1 updated, 2 unchanged.",
    ]
    after = rows(db_file)
    assert after[EVERY_10]["every"] == 10 and after[NIGHTLY]["enabled"] == 0
    assert seed(env)[-1] == "0 created, 0 updated, 3 unchanged."
    assert rows(db_file)[NIGHTLY]["enabled"] == 0, "a plain run never switches a task back on"

    # --reset: the code's `enabled` too.
    assert seed(env, "--reset")[:2] == ["unchanged  heartbeat every 10 minutes",
                                        "updated    heartbeat nightly: enabled False -> True (--reset)"]
    assert rows(db_file)[NIGHTLY]["enabled"] == 1

    # A new release changes a schedule in the code: one update, the same row (never a second one).
    printed = in_code(env, "SCHEDULES['heartbeat every 10 minutes']['interval']['every'] = 5\n"
                           "SCHEDULES['heartbeat nightly']['crontab']['hour'] = '4'")
    assert printed == [
        "updated    heartbeat every 10 minutes: schedule every 10 minutes -> every 5 minutes",
        "updated    heartbeat nightly: schedule crontab '0 3 * * *' (Asia/Shanghai) -> "
        "crontab '0 4 * * *' (Asia/Shanghai)",
        "unchanged  daily report mail",
        "0 created, 2 updated, 1 unchanged.",
    ]
    changed = rows(db_file)
    assert sorted(changed) == NAMES
    assert {name: row["id"] for name, row in changed.items()} == {name: row["id"] for name, row in first.items()}
    assert changed[EVERY_10]["every"] == 5 and changed[NIGHTLY]["hour"] == "4"
    assert beats_mark(db_file) > mark, "an update goes through save(): beat hears of it"


def test_an_unknown_task_fails_the_deployment_and_writes_nothing(db):
    db_file, env = db
    before = rows(db_file), schedule_rows(db_file), beats_mark(db_file)
    with pytest.raises(ProcessError) as failed:
        in_code(env, "SCHEDULES['typo'] = {'task': 'reports.tasks.hartbeat', 'interval': {'every': 1, "
                     "'period': 'days'}}")
    assert "unknown task(s) reports.tasks.hartbeat" in str(failed.value)
    assert (rows(db_file), schedule_rows(db_file), beats_mark(db_file)) == before
