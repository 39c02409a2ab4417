"""Plausible wrong answers to chapter 06's exercises and a piece of the hint each
must get (tests/exercise_matrix.py runs them in a kernel where the chapter ran)."""

from tests.exercise_matrix import Wrong

WRONG = {
    1: [
        Wrong(["from celery.schedules import crontab\n"
               "weekday_mornings = crontab(minute=30, hour=8, day_of_week=\"0-4\")  # as weekday(): 0 = Monday\n"],
              hint="0 是星期日", why="Monday taken as day 0"),
        Wrong(["from celery.schedules import crontab\n"
               "weekday_mornings = crontab(minute=30, hour=8)\n"],
              hint="day_of_week=\"mon-fri\"", why="every day, weekends too"),
    ],
    2: [
        Wrong(["every_2s, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)\n"
               "periodic_task.interval = every_2s\n"
               "periodic_task.enabled = True\n"
               "rescheduled = periodic_task            # save() forgotten\n"],
              hint="数据库里它还是停用的", why="changed in memory, no save()"),
        Wrong(["import time\n"
               "runs_before = heartbeat_runs()\n"
               "periodic_task.enabled = True\n"
               "periodic_task.save()                   # on again, every second\n"
               "deadline = time.monotonic() + 15\n"
               "while heartbeat_runs() <= runs_before and time.monotonic() < deadline:\n"
               "    time.sleep(0.2)\n"
               "every_2s, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)\n"
               "# update(): no signal, beat keeps every second\n"
               "PeriodicTask.objects.filter(pk=periodic_task.pk).update(interval=every_2s)\n"
               "rescheduled = periodic_task\n"],
              hint="beat 还在用每 1 秒的时间表", why="interval changed by update()"),
    ],
}
