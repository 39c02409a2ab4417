"""Chapter 06's exercise checks. They look at real schedules and real runs:

1. ``weekday_mornings``: a crontab for 8:30 on working days; its fields, and
   the next run it computes from two fixed "nows";
2. ``rescheduled``: the chapter's PeriodicTask, enabled again every 2 seconds
   through ``save()``; the check waits for the running beat and worker of the
   chapter to run it twice more and measures the gap between the two runs from
   their TaskResult rows.

Check 2 changes the chapter's database, so it cleans up after itself: whatever
the attempt, it puts the task back as the chapter left it before the exercise
(disabled, every second, through ``save()``; the notebook's objects of that
task are read again from the database) and waits until beat has noticed
(``dj_beat``'s log), so every attempt starts from the same place and no run of
one attempt is counted in the next. Run again with nothing changed since (only
the check cell ran: no cell that mentions ``rescheduled``, the answer's object
and the task's row as the check left them), it says again what it said: its own
clean-up is not the learner's answer.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import selfcheck

exercises = selfcheck.Exercises(6)

#: How long check 2 waits for two more runs (a busy machine is slow, not wrong).
WAIT = 20.0
#: At most this many runs after the answer before the verdict: with a 1 s schedule, about that many seconds.
MAX_RUNS = 5
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
        problems.append(f"它在星期 {sorted(cron.day_of_week)} 运行（0 是星期日，1 是星期一）："
                        "要 day_of_week=\"mon-fri\"")
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


@dataclass
class _Judged:
    """What check 2 saw and said last time, and what its clean-up left."""

    where: tuple            # (the chapter's database, the task's pk)
    answer: object          # the learner's object (``rescheduled``)
    answer_state: tuple     # its fields after the clean-up
    row_state: tuple        # the row's fields after the clean-up
    cell: int | None        # the check cell's number in the kernel's history (In)
    problems: list[str]


_last: _Judged | None = None

#: Fields beat writes by itself (its sync), which no answer is about.
_BEATS_OWN = {"last_run_at", "total_run_count", "date_changed"}


def _state(task) -> tuple:
    return tuple(getattr(task, f.attname) for f in task._meta.concrete_fields if f.attname not in _BEATS_OWN)


def _cell(ns: dict) -> int | None:
    inputs = ns.get("In")
    return len(inputs) - 1 if isinstance(inputs, list) else None


def _answer_ran_since(ns: dict, cell: int | None) -> bool:
    """Has a cell that mentions ``rescheduled`` (an answer) run since the check cell ``cell``?"""
    inputs = ns.get("In")
    if not isinstance(inputs, list) or cell is None:
        return False
    return any("rescheduled" in source for source in inputs[cell + 1:-1])


def _put_back(ns: dict, pk: int) -> None:
    """The task as the chapter left it before the exercise: disabled, every second,
    through save() (beat hears of it); the notebook's objects of it read again."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every_second = (IntervalSchedule.objects.filter(every=1, period=IntervalSchedule.SECONDS).order_by("pk").first()
                    or IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS))
    row = PeriodicTask.objects.get(pk=pk)
    was_enabled = row.enabled
    if was_enabled or row.interval_id != every_second.pk or row.crontab_id or row.solar_id or row.clocked_id:
        beat = ns.get("dj_beat")     # the chapter's beat (a launcher Proc): its log says when it noticed
        mark = beat.mark() if hasattr(beat, "mark") and beat.running() else None
        row.enabled = False
        row.interval, row.crontab, row.solar, row.clocked = every_second, None, None, None
        row.save()
        if was_enabled and mark is not None:
            _wait_until_settled(beat, mark, row.name)
    for value in list(ns.values()):
        if isinstance(value, PeriodicTask) and value.pk == pk:
            value.refresh_from_db()


def _wait_until_settled(beat, mark: int, name: str) -> None:
    """Until beat has noticed the change (it sends the task no more) and the worker
    has run every message beat sent for it: nothing of this attempt reaches the next."""
    from django_celery_results.models import TaskResult

    deadline = time.monotonic() + WAIT
    while "Schedule changed" not in beat.log(since=mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    sent = f"Sending due task {name} ("
    while (TaskResult.objects.filter(periodic_task_name=name).count() < beat.log().count(sent)
           and time.monotonic() < deadline):
        time.sleep(0.1)


@exercises.register(2)
def rescheduled(ns: dict) -> list[str]:
    global _last
    problems = selfcheck.given(ns, "rescheduled", "重新启用、改成每 2 秒一次并 save() 过的 PeriodicTask")
    if problems:
        return problems
    from django_celery_beat.models import PeriodicTask

    answer = ns["rescheduled"]
    if not isinstance(answer, PeriodicTask):
        return [f"`rescheduled` 是 {type(answer).__name__}：要本章的 PeriodicTask 对象（periodic_task）"]
    task = PeriodicTask.objects.filter(pk=answer.pk).first()
    if task is None:
        return ["数据库里没有这个定时任务了：不要删除它，改它的 interval 和 enabled"]
    where = (os.environ.get("DATABASE_URL"), task.pk)
    last = _last
    if (last is not None and last.where == where and last.answer is answer and _state(answer) == last.answer_state
            and _state(task) == last.row_state and not _answer_ran_since(ns, last.cell)):
        last.cell = _cell(ns)       # the same answer as last time: the same verdict
        return list(last.problems)
    _last = None
    try:
        problems = _judge(task)
    finally:
        _put_back(ns, task.pk)
    _last = _Judged(where, answer, _state(answer), _state(PeriodicTask.objects.get(pk=task.pk)), _cell(ns),
                    list(problems))
    return problems


def _judge(task) -> list[str]:
    from django_celery_beat.models import IntervalSchedule
    from django_celery_results.models import TaskResult

    problems = []
    if not task.enabled:
        problems.append("数据库里它还是停用的：设 enabled = True，再 save()（只改对象的属性不会写进数据库）")
    interval = task.interval
    if interval is None or (interval.every, interval.period) != (2, IntervalSchedule.SECONDS):
        shown = f"{interval.every} {interval.period}" if interval else "没有 interval"
        problems.append(f"数据库里它的时间表是 {shown}：要一个 every=2, period=SECONDS 的 IntervalSchedule，"
                        "赋给 interval 再 save()")
    if problems:
        return problems

    def runs():
        return list(TaskResult.objects.filter(periodic_task_name=task.name, status="SUCCESS")
                    .order_by("date_done").values_list("date_done", flat=True))

    def mean_gap(window) -> float:
        return (window[-1] - window[0]) / timedelta(seconds=1) / (len(window) - 1)

    before = len(runs())
    deadline = time.monotonic() + WAIT
    # Three runs, two gaps: on a busy machine the worker may finish one run late and the next
    # at once, so one gap alone can look short; their mean is the schedule's period. Runs that
    # the old 1 s schedule sent before beat read the change (and a backlog the worker is still
    # finishing) come first: the verdict is the latest three runs, once one such window shows
    # 2 s or MAX_RUNS runs have come (an unchanged schedule keeps showing 1 s).
    done = runs()
    while time.monotonic() < deadline:
        done = runs()
        if len(done) >= before + 3 and (mean_gap(done[-3:]) >= 1.5 or len(done) >= before + MAX_RUNS):
            break
        time.sleep(0.2)
    if len(done) < before + 3:
        return [f"{WAIT:g} 秒里它只运行了 {len(done) - before} 次：改完要调用 save()（QuerySet.update() 不通知 beat），"
                "beat 和 worker 还在运行吗？"]
    gap = mean_gap(done[-3:])
    if gap < 1.5:
        return [f"相邻两次运行平均只隔了 {gap:.2f} 秒：beat 还在用每 1 秒的时间表。数据库里已经是 2 秒，beat 却不知道——"
                "它只在 save()（或 admin 里保存）之后重新读取，QuerySet.update() 不通知它"]
    return []
