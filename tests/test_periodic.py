"""Chapter 06: periodic tasks through real `celery beat` and worker processes.

- demo_tasks.periodic: its schedule, and beat + worker on an embedded broker;
- django-celery-beat: a PeriodicTask row in a migrated SQLite file, run by
  beat's DatabaseScheduler and a django_demo worker, then disabled; and a
  ClockedSchedule one-off, sent once at its time and disabled at beat's next re-read.

demo_tasks is imported only inside tests that use the demo_app fixture (it
must be imported after REDIS_URL is set). Django is never set up in this
process: the database is written through `manage.py shell` and read with the
sqlite3 module, as tests/test_django_worker.py does.
"""

from __future__ import annotations

import json
import re
import shelve
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import launcher
from launcher.django_procs import django_env, start_beat
from tests.django_stack import query
from tests.helpers import DJANGO_DIR

#: The time at the start of a Celery log line, by name (as chapter 06 reads it).
LOG_TIME = re.compile(r"^\[(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}):")

# --- demo_tasks.periodic -----------------------------------------------------------

def test_schedule_has_an_interval_and_a_crontab_entry(demo_app):
    from celery.schedules import crontab

    from demo_tasks import periodic

    # The chapter's own app: its schedule and time zone are not demo_tasks.tasks' business.
    assert periodic.app is not demo_app.app and periodic.app.main == "demo_tasks.periodic"
    assert "timezone" not in demo_app.app.conf.changes and not demo_app.app.conf.beat_schedule
    assert periodic.app.conf.broker_url == demo_app.app.conf.broker_url
    schedule = periodic.app.conf.beat_schedule
    assert sorted(schedule) == ["tick-every-minute", "tick-every-second"]

    interval = schedule["tick-every-second"]
    assert interval["task"] == periodic.tick.name == "demo_tasks.periodic.tick"
    assert 1 <= interval["schedule"] <= 2
    assert interval["options"]["expires"] >= interval["schedule"]

    cron = schedule["tick-every-minute"]["schedule"]
    assert isinstance(cron, crontab) and cron.minute == set(range(60))
    assert str(periodic.app.conf.timezone) == "Asia/Shanghai"
    # Right after a run the crontab entry is not due, and comes back within a minute.
    now = periodic.app.now()
    state = cron.is_due(now)
    assert not state.is_due and 0 < state.next <= 60
    assert timedelta(0) < cron.remaining_estimate(now) <= timedelta(seconds=60)


def test_beat_only_sends_and_the_worker_runs_the_ticks(demo_app, module_broker):
    from demo_tasks.periodic import TICKS_KEY, read_ticks

    client = module_broker.client(decode_responses=True)
    beat = launcher.start_beat("demo_tasks.periodic", broker=module_broker)
    worker = None
    try:
        assert "celery -A demo_tasks.periodic beat" in beat.display
        # No worker yet: the messages wait in the default queue, nothing runs.
        assert launcher.wait_for(lambda: client.llen("celery") >= 2, 15), beat.tail(20)
        names = {json.loads(m)["headers"]["task"] for m in client.lrange("celery", 0, -1)}
        assert names == {"demo_tasks.periodic.tick"}
        assert read_ticks(client) == []

        worker = launcher.start_worker("demo_tasks.periodic", broker=module_broker, fast=True)
        # The chapter's own app: its worker knows its own task, not chapter 03's.
        registered = worker.banner_section()
        assert "  . demo_tasks.periodic.tick" in registered and "demo_tasks.tasks" not in registered

        def every_second():
            return [t for t in read_ticks(client) if t["label"] == "every-second"]

        assert launcher.wait_for(lambda: len(every_second()) >= 4, 20, interval=0.1), worker.tail(20)
        beat.stop()
        sent = beat.log().count("Sending due task tick-every-second")
        assert sent >= 4
        # Every message beat sent is run exactly once by the one worker.
        assert launcher.wait_for(lambda: len(every_second()) == sent, 10), (sent, len(every_second()))
        assert "Received unregistered task" not in worker.log()
        # Beat's sends are about one second apart (the time read as the chapter reads it).
        times = [datetime.strptime(LOG_TIME.match(line)["time"], "%Y-%m-%d %H:%M:%S,%f")
                 for line in beat.log().splitlines() if "Sending due task tick-every-second" in line]
        # An interval entry is due one interval after its previous run was recorded,
        # which is just before that send was logged: the gaps are about 1 s or more
        # (a loaded machine makes them longer, hence no upper bound).
        gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
        assert all(g >= 0.9 for g in gaps), gaps
        # The schedule file beat wrote back when it stopped, read as the chapter reads it: our two
        # entries and celery.backend_cleanup, which beat adds for an app without a result backend too
        # (DisabledBackend cannot expire results by itself), and the time zone it was computed in.
        with shelve.open(str(beat.schedule_dir / "celerybeat-schedule"), flag="r") as saved:
            entries, saved_tz = saved["entries"], saved["tz"]
        assert sorted(entries) == ["celery.backend_cleanup", "tick-every-minute", "tick-every-second"]
        assert entries["tick-every-second"].total_run_count == sent
        assert saved_tz == "Asia/Shanghai"
    finally:
        launcher.stop_together([p for p in (worker, beat) if p is not None])
        client.delete(TICKS_KEY, "celery")
        client.close()
    assert not beat.schedule_dir.exists()


def test_beat_adds_backend_cleanup_unless_the_result_backend_expires_results_itself(demo_app, tmp_path):
    """celery/beat.py install_default_entries(): with result_expires set, the entry is added when
    the backend cannot expire results by itself -- no result backend at all included (chapter 06
    says so) -- and not for Redis, whose result keys carry their expiry."""
    from celery import Celery
    from celery.beat import PersistentScheduler

    from demo_tasks import periodic

    def entries(app, name):
        scheduler = PersistentScheduler(app=app, schedule_filename=str(tmp_path / name), lazy=False)
        try:
            return sorted(scheduler.schedule)
        finally:
            scheduler.close()

    assert type(periodic.app.backend).__name__ == "DisabledBackend"
    assert not periodic.app.backend.supports_autoexpire and periodic.app.conf.result_expires
    assert entries(periodic.app, "standalone") == ["celery.backend_cleanup", "tick-every-minute",
                                                   "tick-every-second"]
    with_redis = Celery("with-redis", broker=periodic.app.conf.broker_url,
                        backend=periodic.app.conf.broker_url, set_as_current=False)
    assert with_redis.backend.supports_autoexpire
    assert entries(with_redis, "redis") == []


# --- django-celery-beat: the schedule in the database ------------------------------------

#: Two periodic tasks on the same schedule: "heartbeat", disabled in the test, and
#: "control", which stays enabled: its sends show when beat has had the chances
#: to send a heartbeat that a disabled one must let pass.
CREATE_HEARTBEAT = """
from django_celery_beat.models import IntervalSchedule, PeriodicTask
every, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
PeriodicTask.objects.create(name="heartbeat", task="reports.tasks.heartbeat", interval=every)
PeriodicTask.objects.create(name="control", task="reports.tasks.heartbeat", interval=every)
"""
#: Sends after beat noticed the change that a disabled heartbeat must sit out.
CONTROL_SENDS = 3

#: A one-off at a clock time a few seconds ahead, created while beat runs (chapter 06's
#: ClockedSchedule): beat hears of it through PeriodicTasks, as of any save().
CREATE_ONE_OFF = """
from datetime import timedelta
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, PeriodicTask
at = ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(seconds=3))
PeriodicTask.objects.create(name="once", task="reports.tasks.heartbeat", clocked=at, one_off=True)
"""

DISABLE_HEARTBEAT = """
from django_celery_beat.models import PeriodicTask
task = PeriodicTask.objects.get(name="heartbeat")
task.enabled = False
task.save()
"""


def test_database_scheduler_runs_a_periodic_task_and_stops_when_it_is_disabled(tmp_path, module_broker):
    db = tmp_path / "db.sqlite3"
    env = django_env(tmp_path, module_broker)
    launcher.manage("migrate", "--noinput", env=env)
    launcher.manage("shell", "-c", CREATE_HEARTBEAT, env=env)

    def runs(name: str = "heartbeat") -> int:
        return query(db, "SELECT COUNT(*) FROM django_celery_results_taskresult "
                         "WHERE periodic_task_name = ? AND status = 'SUCCESS'", name)[0]

    def sends(name: str, since: int = 0) -> int:
        return beat.log(since).count(f"Sending due task {name} (reports.tasks.heartbeat)")

    started = []
    try:
        started.append(launcher.start_worker("django_demo", broker=module_broker, fast=True,
                                             cwd=str(DJANGO_DIR), env=env))
        beat = start_beat("django_demo", broker=module_broker, cwd=DJANGO_DIR, env=env,
                          scheduler="django_celery_beat.schedulers:DatabaseScheduler")
        started.append(beat)
        assert "django_celery_beat.schedulers.DatabaseScheduler" in beat.log()
        assert launcher.wait_for(lambda: runs() >= 2, 20, interval=0.1), beat.tail(20)

        # A ClockedSchedule one-off: sent once, not before its time, and run by the worker.
        launcher.manage("shell", "-v", "0", "-c", CREATE_ONE_OFF, env=env)
        assert launcher.wait_for(lambda: runs("once") == 1, 30, interval=0.1), beat.tail(20)
        due = datetime.fromisoformat(query(db, "SELECT clocked_time FROM django_celery_beat_clockedschedule")[0]
                                     ).replace(tzinfo=timezone.utc)
        sent_lines = [line for line in beat.log().splitlines() if "Sending due task once " in line]
        assert len(sent_lines) == 1, sent_lines
        # Beat's log is in the project's TIME_ZONE (Django sets the process's TZ); milliseconds, truncated.
        sent_at = datetime.strptime(LOG_TIME.match(sent_lines[0])["time"], "%Y-%m-%d %H:%M:%S,%f"
                                    ).replace(tzinfo=ZoneInfo("Asia/Shanghai"))
        assert sent_at >= due - timedelta(milliseconds=1), (sent_at, due)
        # Sent and run, the row is still enabled: beat disables a one-off only when it asks
        # is_due() again, at its next re-read of the schedule (the save() below causes one).
        assert query(db, "SELECT enabled FROM django_celery_beat_periodictask WHERE name = 'once'") == (1,)

        # While both are enabled, beat sends them at the same ticks: the control's
        # sends stand for the heartbeat's chances to be sent.
        assert abs(sends("heartbeat") - sends("control")) <= 1, beat.tail(20)
        mark = beat.mark()
        launcher.manage("shell", "-c", DISABLE_HEARTBEAT, env=env)   # save(): the signal tells beat
        beat.wait_for_log("DatabaseScheduler: Schedule changed.", 30, since=mark)
        noticed = beat.mark()
        sent = sends("heartbeat")
        # That nothing happens is shown by what beat did meanwhile, not by a fixed wait:
        # the control task, due every second like the heartbeat, is sent again and
        # again (the positive control: the same wait sees a send of an enabled task).
        assert launcher.wait_for(lambda: sends("control", noticed) >= CONTROL_SENDS, 30, interval=0.1), \
            beat.tail(20)
        assert sends("heartbeat") == sent, "beat kept sending a disabled task"
        assert launcher.wait_for(lambda: runs() == sent, 10), (runs(), sent)
        enabled, count = query(db, "SELECT enabled, total_run_count FROM django_celery_beat_periodictask "
                                   "WHERE name = 'heartbeat'")
        # Beat writes its counters back when it re-reads the changed schedule.
        assert (enabled, count) == (0, sent)
        # The re-read disabled the one-off (its counter reset, last_run_at cleared by save()); beat
        # has looked at its schedule again and again since, and never sent it a second time.
        assert query(db, "SELECT enabled, total_run_count, last_run_at FROM django_celery_beat_periodictask "
                         "WHERE name = 'once'") == (0, 0, None)
        assert beat.log().count("Sending due task once ") == 1 and runs("once") == 1
    finally:
        launcher.stop_together(started)
