"""Periodic tasks tested without waiting for them: the clock is moved, not watched.

The project's schedules are rows of django-celery-beat (chapter 06), written by
`manage.py seed_schedules` -- the same command the deployment runs, here on the
test database. Each row's ``.schedule`` is the object beat itself asks "is it
due?": ``is_due(last_run_at)`` answers (due now?, seconds until it should ask
again), ``remaining_estimate(last_run_at)`` how long until the next run. Both read
the clock, which time-machine moves to the instant a test chooses.

Time zones, explicitly: the project's CELERY_TIMEZONE is TIME_ZONE, Asia/Shanghai
(UTC+8 all year: no daylight saving time), and seed_schedules gives every crontab
that zone. A crontab's hour is an hour in ITS zone, not in the server's, not in UTC.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, PeriodicTask

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

BEIJING = ZoneInfo("Asia/Shanghai")
UTC = ZoneInfo("UTC")
DAY = 24 * 3600


@pytest.fixture
def daily_mail(settings):
    """The schedule of the project's "daily report mail": crontab 0 8 * * * (08:00)."""
    # The project's default zone, pinned: TIME_ZONE (and so CELERY_TIMEZONE) can be set
    # from the environment, and these tests are about Beijing time.
    settings.CELERY_TIMEZONE = "Asia/Shanghai"
    call_command("seed_schedules", stdout=io.StringIO())   # the deployment's command, its report kept quiet
    task = PeriodicTask.objects.get(name="daily report mail")
    assert (task.task, task.crontab.minute, task.crontab.hour) == ("notifications.tasks.mail_daily_report", "0", "8")
    assert str(task.crontab.timezone) == "Asia/Shanghai"   # seed_schedules: CELERY_TIMEZONE
    return task.schedule


def at(*when, tz=BEIJING):
    """Stop the clock at this instant (tick=False: it does not move while the test runs)."""
    return time_machine.travel(datetime(*when, tzinfo=tz), tick=False)


def test_the_daily_mail_is_due_at_eight_in_beijing(daily_mail):
    last_run = datetime(2026, 3, 1, 8, 0, tzinfo=BEIJING)   # yesterday's run
    with at(2026, 3, 2, 8, 0, 30):
        due, next_check = daily_mail.is_due(last_run)
    assert due is True
    assert next_check == pytest.approx(DAY - 30, abs=1)     # beat asks again tomorrow at 08:00


def test_not_due_a_minute_before(daily_mail):
    last_run = datetime(2026, 3, 1, 8, 0, tzinfo=BEIJING)
    with at(2026, 3, 2, 7, 59):
        due, next_check = daily_mail.is_due(last_run)
        remaining = daily_mail.remaining_estimate(last_run)
    assert due is False
    assert next_check == pytest.approx(60, abs=1)
    assert remaining == timedelta(minutes=1)


def test_eight_in_beijing_is_midnight_utc(daily_mail):
    # Read in UTC (a server's clock, its logs), the 08:00 mail goes out at 00:00.
    yesterday = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)                # 08:00 in Beijing
    with at(2026, 3, 2, 0, 0, 30, tz=UTC):
        assert daily_mail.is_due(yesterday)[0] is True
    # Whoever expects it at 08:00 UTC finds nothing due then: it ran eight hours ago,
    # and the next run is sixteen hours away.
    today = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    with at(2026, 3, 2, 8, 0, 30, tz=UTC):
        due, next_check = daily_mail.is_due(today)
    assert due is False
    assert next_check == pytest.approx(16 * 3600 - 30, abs=1)


def test_a_missed_run_is_made_up_when_beat_comes_back(daily_mail):
    # Beat was down at 08:00 and is started again at 09:15. A naive expectation: the
    # 08:00 run is skipped. No: the run after the last one (today 08:00) is in the past,
    # so it is due at once (unless beat_cron_starting_deadline says it is too late).
    last_run = datetime(2026, 3, 1, 8, 0, tzinfo=BEIJING)
    with at(2026, 3, 2, 9, 15):
        assert daily_mail.is_due(last_run)[0] is True


def test_day_of_week_1_is_monday_and_0_is_sunday():
    # A crontab as someone adds one in the admin: "every Monday at 07:30".
    # Celery counts days as cron does: 0 = Sunday, 1 = Monday ... 6 = Saturday.
    # Python's datetime.weekday() says 0 for Monday: day_of_week=0 is NOT Monday.
    monday = CrontabSchedule(minute="30", hour="7", day_of_week="1", timezone="Asia/Shanghai").schedule
    sunday = CrontabSchedule(minute="30", hour="7", day_of_week="0", timezone="Asia/Shanghai").schedule
    with at(2026, 2, 28, 8, 0):                                       # Saturday 08:00 in Beijing
        now = datetime.now(BEIJING)
        assert (now + monday.remaining_estimate(now)).strftime("%A %H:%M") == "Monday 07:30"
        assert (now + sunday.remaining_estimate(now)).strftime("%A %H:%M") == "Sunday 07:30"


def test_due_on_monday_morning_in_beijing_not_on_saturday():
    monday = CrontabSchedule(minute="30", hour="7", day_of_week="1", timezone="Asia/Shanghai").schedule
    last_run = datetime(2026, 2, 23, 7, 30, tzinfo=BEIJING)          # last Monday's run
    with at(2026, 2, 28, 7, 30, 5):                                   # Saturday 07:30: not due
        assert monday.is_due(last_run)[0] is False
        assert monday.remaining_estimate(last_run) == timedelta(days=2, seconds=-5)
    with at(2026, 3, 2, 7, 30, 5):                                    # Monday 07:30 in Beijing ...
        assert monday.is_due(last_run)[0] is True
        # ... is Sunday evening in UTC: a log in UTC shows this Monday task on a Sunday.
        assert datetime.now(UTC).strftime("%A %H:%M") == "Sunday 23:30"
