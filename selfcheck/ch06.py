"""Chapter 06's exercise checks. They look at real schedules and real runs:

1. ``weekday_mornings``: a crontab for 8:30 on working days; its fields, and
   the next run it computes from two fixed "nows";
2. ``rescheduled``: the chapter's PeriodicTask, enabled again every 2 seconds
   through ``save()``; the check waits for the running beat and worker of the
   chapter to run it twice more, measures the gap between the two runs from
   their TaskResult rows, then disables the task again.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import selfcheck

exercises = selfcheck.Exercises(6)

#: How long check 2 waits for two more runs (a busy machine is slow, not wrong).
WAIT = 20.0
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _shanghai_app():
    """A Celery app whose crontabs are read in Shanghai time (never made current)."""
    from celery import Celery

    app = Celery("ch06-check", set_as_current=False)
    app.conf.timezone = "Asia/Shanghai"
    return app


@exercises.register(1)
def weekday_mornings(ns: dict) -> list[str]:
    from celery.schedules import crontab

    problems = selfcheck.given(ns, "weekday_mornings", "一个 crontab：工作日（周一到周五）早上 8:30")
    if problems:
        return problems
    cron = ns["weekday_mornings"]
    if not isinstance(cron, crontab):
        return [f"`weekday_mornings` 是 {type(cron).__name__}：要用 celery.schedules.crontab(...)"]
    problems = []
    if cron.minute != {30} or cron.hour != {8}:
        problems.append(f"它在 {sorted(cron.hour)} 点 {sorted(cron.minute)} 分运行：要 hour=8, minute=30")
    if cron.day_of_week != {1, 2, 3, 4, 5}:
        problems.append(f"它在星期 {sorted(cron.day_of_week)} 运行（0 是星期日）：要 day_of_week=\"mon-fri\"")
    if cron.day_of_month != set(range(1, 32)) or cron.month_of_year != set(range(1, 13)):
        problems.append("不要限制日期和月份（day_of_month、month_of_year 保持默认）")
    if problems:
        return problems
    # Its next run, computed by the learner's crontab itself from two fixed moments.
    for now, expected in [(datetime(2025, 1, 3, 9, 0, tzinfo=SHANGHAI), datetime(2025, 1, 6, 8, 30, tzinfo=SHANGHAI)),
                          (datetime(2025, 1, 6, 8, 0, tzinfo=SHANGHAI), datetime(2025, 1, 6, 8, 30, tzinfo=SHANGHAI))]:
        probe = crontab(minute=cron._orig_minute, hour=cron._orig_hour, day_of_week=cron._orig_day_of_week,
                        nowfun=lambda now=now: now, app=_shanghai_app())
        got = now + probe.remaining_estimate(now)
        if got != expected:
            problems.append(f"从 {now:%m-%d %H:%M} 算起，下一次应是 {expected:%m-%d %H:%M}，它算出 {got:%m-%d %H:%M}")
    return problems


@exercises.register(2)
def rescheduled(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "rescheduled", "重新启用、改成每 2 秒一次并 save() 过的 PeriodicTask")
    if problems:
        return problems
    from django_celery_beat.models import IntervalSchedule, PeriodicTask
    from django_celery_results.models import TaskResult

    task = ns["rescheduled"]
    if not isinstance(task, PeriodicTask):
        return [f"`rescheduled` 是 {type(task).__name__}：要本章的 PeriodicTask 对象（periodic_task）"]
    task = PeriodicTask.objects.filter(pk=task.pk).first()
    if task is None:
        return ["数据库里没有这个定时任务了：不要删除它，改它的 interval 和 enabled"]
    problems = []
    if not task.enabled:
        problems.append("数据库里它还是停用的：设 enabled = True，再 save()")
    interval = task.interval
    if interval is None or (interval.every, interval.period) != (2, IntervalSchedule.SECONDS):
        shown = f"{interval.every} {interval.period}" if interval else "没有 interval"
        problems.append(f"它的时间表是 {shown}：要一个 every=2, period=SECONDS 的 IntervalSchedule")
    if problems:
        return problems

    def runs():
        return list(TaskResult.objects.filter(periodic_task_name=task.name, status="SUCCESS")
                    .order_by("date_done").values_list("date_done", flat=True))

    try:
        before = len(runs())
        deadline = time.monotonic() + WAIT
        while len(runs()) < before + 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        done = runs()
    finally:
        # Stop it again, through save() so that beat hears of it.
        task.refresh_from_db()
        task.enabled = False
        task.save()
    if len(done) < before + 2:
        return [f"{WAIT:g} 秒里它只运行了 {len(done) - before} 次：改完要调用 save()（QuerySet.update() 不通知 beat），"
                "beat 和 worker 还在运行吗？"]
    gap = (done[before + 1] - done[before]) / timedelta(seconds=1)
    if gap < 1.5:
        return [f"两次运行只隔了 {gap:.2f} 秒：beat 用的还是每 1 秒的时间表吗？"]
    return []
