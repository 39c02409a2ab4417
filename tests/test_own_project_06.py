"""Chapter 06's own-project blocks: two tasks and CELERY_BEAT_SCHEDULE added to the
project of chapter 05's five steps, assembled as printed (tests/own_project.py).
The interval entry: the first "Sending due task" of a real ``celery -A proj beat``
and the worker's result. The crontab entry: loaded from the assembled settings by
the project's Celery app and asked ``is_due``/``remaining_estimate`` at fixed instants."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests import own_project
from tests.own_project import checks

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def chapter():
    # beat from the start: its first interval counts from then, while the other tests run.
    with own_project.running("06", beat=True) as running:
        yield running


@checks("06:proj/settings.py")
def test_the_nightly_crontab_runs_at_three_in_shanghai(chapter):
    # Each instant: (now, last run); beat asks is_due(last run) with now as the schedule's "now".
    instants = {
        "a minute before": ("2025-01-03T02:59:00+08:00", "2025-01-02T03:00:00+08:00"),
        "at three": ("2025-01-03T03:00:05+08:00", "2025-01-02T03:00:00+08:00"),
        "three in UTC": ("2025-01-03T03:00:05+00:00", "2025-01-03T03:00:00+08:00"),   # 11:00 in Shanghai
        "just ran": ("2025-01-03T03:00:06+08:00", "2025-01-03T03:00:05+08:00"),
    }
    answers = chapter.project.django(f"""
from datetime import datetime

from proj import celery_app

entry = celery_app.conf.beat_schedule["clear-sessions-nightly"]
schedule = entry["schedule"]
schedule.app = celery_app      # as beat's ScheduleEntry does
result = {{"task": entry["task"], "timezone": str(celery_app.conf.timezone), "at": {{}}}}
for label, (now, last) in {instants!r}.items():
    now, last = datetime.fromisoformat(now), datetime.fromisoformat(last)
    schedule.nowfun = lambda now=now: now
    due, next_check = schedule.is_due(last)
    result["at"][label] = [due, next_check, schedule.remaining_estimate(last).total_seconds()]
""")
    assert answers["task"] == "myapp.tasks.clear_sessions" and answers["timezone"] == "Asia/Shanghai", answers
    at = answers["at"]
    assert at["a minute before"][:2] == [False, 60.0], at
    assert at["at three"][0] is True, at
    # 03:00 UTC is not 03:00 here: with the default timezone (UTC) these two would be due.
    assert at["three in UTC"][0] is False and at["just ran"][0] is False, at
    # The next run after the last one at 03:00 on 2 January is 03:00 on 3 January, Shanghai time.
    now = datetime.fromisoformat(instants["a minute before"][0])
    assert now + timedelta(seconds=at["a minute before"][2]) == datetime(2025, 1, 3, 3, 0, tzinfo=SHANGHAI), at


@checks("06:myapp/tasks.py")
def test_the_nightly_task_clears_expired_sessions(chapter):
    result = chapter.project.django("""
from datetime import timedelta

from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone
from myapp.tasks import clear_sessions

for expires in (timezone.now() - timedelta(days=1), timezone.now() + timedelta(days=1)):
    session = SessionStore()
    session.create()
    Session.objects.filter(session_key=session.session_key).update(expire_date=expires)
before = Session.objects.count()
returned = clear_sessions.delay().get(timeout=15)
result = {"before": before, "after": Session.objects.count(), "returned": returned}
""")
    assert result == {"before": 2, "after": 1, "returned": None}, result


@checks("06:myapp/tasks.py", "06:proj/settings.py")
def test_beat_sends_the_heartbeat_and_the_worker_runs_it(chapter):
    # Last in this file: beat's first interval has mostly gone by while the other tests ran.
    sent = chapter.beat.wait_for_log("Sending due task", 15, since=0)
    assert "Sending due task heartbeat (myapp.tasks.heartbeat)" in sent, sent
    done: list[str] = []

    def heartbeat_succeeded() -> bool:
        done[:] = [line for line in chapter.worker.log().splitlines()
                   if "myapp.tasks.heartbeat[" in line and " succeeded in " in line]
        return bool(done)

    chapter.worker.wait_until(heartbeat_succeeded, 10, waiting_for="the heartbeat's result")
    returned = done[0].rsplit(": ", 1)[-1].strip("'")
    assert datetime.fromisoformat(returned).tzinfo is not None, done[0]
