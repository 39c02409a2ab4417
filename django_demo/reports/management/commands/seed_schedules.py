"""Create or update the project's periodic tasks in django-celery-beat's tables (chapter 06).

    python manage.py seed_schedules            # after `migrate`, in every deployment
    python manage.py seed_schedules --reset    # also switch each one back on (or off) as in SCHEDULES

Run it as often as you like: each run makes the database say what SCHEDULES
says, and a second run with nothing changed writes nothing at all (not even the
"schedule changed" mark beat watches). Each task is found by its unique
``name``, so a run never adds a second row.

Who owns what
-------------
The code (SCHEDULES below) owns, for each name it lists: the task, the
schedule (interval or crontab, and its values), args, kwargs, queue,
expire_seconds and description. A change in the code is written on the next
run; a change an operator made to these in the admin is put back.

The operator owns ``enabled``: a task is created enabled, and after that
the command leaves it alone, so a task switched off in the admin stays off
across deployments. ``--reset`` puts ``enabled`` back to the code's value too.
Beat's own bookkeeping (last_run_at, total_run_count) is never touched, nor
is any periodic task whose name SCHEDULES does not list: to retire one, delete
or disable it in the admin.

Each task's name is checked against the tasks the project's Celery app knows
before anything is written, and all rows are written in one transaction: a typo
fails the deployment instead of leaving a task that beat sends and no worker
knows.

Why not a data migration: a migration runs once per database, so changing a
schedule later needs another migration; and it works on historical models,
whose save() is not PeriodicTask.save(): no validation, and no PeriodicTasks
mark, so a running beat does not notice the change until its next full
re-read (every 5 minutes).
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

#: The project's periodic tasks: name -> task, one schedule ("interval" or "crontab")
#: and optional args, kwargs, queue, expire_seconds, description, enabled (on creation).
SCHEDULES: dict[str, dict] = {
    "heartbeat every 10 minutes": {
        "task": "reports.tasks.heartbeat",
        "interval": {"every": 10, "period": IntervalSchedule.MINUTES},
        "expire_seconds": 300,      # a heartbeat later than 5 minutes says nothing any more
        "description": "A TaskResult row every 10 minutes: beat and a worker are alive.",
    },
    "heartbeat nightly": {
        "task": "reports.tasks.heartbeat",
        "crontab": {"minute": "0", "hour": "3"},     # 03:00 in CELERY_TIMEZONE
        "description": "A TaskResult row at 03:00: the night's schedule ran.",
    },
    "daily report mail": {
        "task": "notifications.tasks.mail_daily_report",
        "crontab": {"minute": "0", "hour": "8"},     # 08:00 in CELERY_TIMEZONE: yesterday's reports
        "expire_seconds": 4 * 3600,  # a morning report that has waited past noon is not sent any more
        "description": "Yesterday's reports as an XLSX workbook, mailed to REPORT_MAIL_TO (chapter 09).",
    },
}

#: The fields of a PeriodicTask the command owns (besides its schedule).
OWNED = ("task", "args", "kwargs", "queue", "expire_seconds", "description")
#: The schedule fields of a PeriodicTask: exactly one of them is set.
SCHEDULE_FIELDS = ("interval", "crontab", "solar", "clocked")
CRONTAB_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")   # cron's order


def _crontab_spec(spec: dict) -> dict:
    full = {"minute": "*", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*",
            "timezone": getattr(settings, "CELERY_TIMEZONE", None) or "UTC"}
    full.update({key: str(value) for key, value in spec.items()})
    return full


def wanted_schedule(entry: dict) -> tuple:
    """The schedule an entry asks for, as comparable values: ("interval", 10, "minutes")."""
    kinds = [kind for kind in ("interval", "crontab") if kind in entry]
    if len(kinds) != 1:
        raise CommandError(f"each entry needs exactly one of 'interval' or 'crontab', not {kinds or 'none'}")
    if kinds == ["interval"]:
        return ("interval", int(entry["interval"]["every"]), entry["interval"]["period"])
    spec = _crontab_spec(entry["crontab"])
    return ("crontab", *(spec[key] for key in CRONTAB_FIELDS), spec["timezone"])


def current_schedule(task: PeriodicTask) -> tuple | None:
    """The schedule a row has, as the same kind of values (None for solar/clocked)."""
    if task.interval_id:
        return ("interval", task.interval.every, task.interval.period)
    if task.crontab_id:
        cron = task.crontab
        return ("crontab", *(str(getattr(cron, key)) for key in CRONTAB_FIELDS), str(cron.timezone))
    return None


def describe(schedule: tuple | None) -> str:
    if schedule is None:
        return "another kind of schedule"
    if schedule[0] == "interval":
        return f"every {schedule[1]} {schedule[2]}"
    return f"crontab '{' '.join(schedule[1:6])}' ({schedule[6]})"


def schedule_row(schedule: tuple):
    """A schedule row with these values: the oldest one that exists, or a new one
    (the schedule tables have no unique constraint, so get_or_create could fail)."""
    if schedule[0] == "interval":
        values = {"every": schedule[1], "period": schedule[2]}
        model = IntervalSchedule
    else:
        values = dict(zip(CRONTAB_FIELDS, schedule[1:6], strict=True), timezone=schedule[6])
        model = CrontabSchedule
    return model.objects.filter(**values).order_by("pk").first() or model.objects.create(**values)


def wanted_fields(entry: dict) -> dict:
    return {
        "task": entry["task"],
        "args": json.dumps(entry.get("args", [])),
        "kwargs": json.dumps(entry.get("kwargs", {})),
        "queue": entry.get("queue"),
        "expire_seconds": entry.get("expire_seconds"),
        "description": entry.get("description", ""),
    }


def _same(field: str, current, wanted) -> bool:
    if field in ("args", "kwargs"):
        return json.loads(current or ("[]" if field == "args" else "{}")) == json.loads(wanted)
    return (current or None) == (wanted or None)


def known_tasks() -> set[str]:
    """The task names the project's Celery app registers (as its worker would)."""
    from django_demo import celery_app

    celery_app.loader.import_default_modules()     # autodiscover_tasks(): each app's tasks.py
    return set(celery_app.tasks)


class Command(BaseCommand):
    help = "Create or update the project's periodic tasks (django-celery-beat); safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true",
                            help="also set `enabled` back to the code's value (otherwise the operator's)")

    def handle(self, *args, reset: bool, **options):
        known = known_tasks()
        unknown = sorted({entry["task"] for entry in SCHEDULES.values()} - known)
        if unknown:
            raise CommandError(f"unknown task(s) {', '.join(unknown)}: no app of the project defines them "
                               "(a typo, or the app is not in INSTALLED_APPS). Nothing was written.")
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        with transaction.atomic():
            for name, entry in SCHEDULES.items():
                verdict, detail = self.seed(name, entry, reset=reset)
                counts[verdict] += 1
                self.stdout.write(f"{verdict:<9}  {name}" + (f": {detail}" if detail else ""))
        self.stdout.write(", ".join(f"{n} {verdict}" for verdict, n in counts.items()) + ".")

    def seed(self, name: str, entry: dict, *, reset: bool) -> tuple[str, str]:
        schedule = wanted_schedule(entry)
        fields = wanted_fields(entry)
        enabled = bool(entry.get("enabled", True))
        task = PeriodicTask.objects.filter(name=name).select_related("interval", "crontab").first()
        if task is None:
            task = PeriodicTask(name=name, enabled=enabled, **fields)
            self._set_schedule(task, schedule)
            task.save()              # save(): validated, and beat hears of it
            return "created", f"{fields['task']}, {describe(schedule)}"
        changes = []
        current = current_schedule(task)
        if current != schedule:
            changes.append(f"schedule {describe(current)} -> {describe(schedule)}")
            self._set_schedule(task, schedule)
        for field, value in fields.items():
            if not _same(field, getattr(task, field), value):
                changes.append(f"{field} {getattr(task, field)!r} -> {value!r}")
                setattr(task, field, value)
        if reset and task.enabled != enabled:
            changes.append(f"enabled {task.enabled} -> {enabled} (--reset)")
            task.enabled = enabled
        kept = "" if task.enabled == enabled else f"enabled={task.enabled} kept (the operator's; --reset to undo)"
        if not changes:
            return "unchanged", kept     # nothing saved: beat is not even told
        task.save()
        return "updated", "; ".join(changes + ([kept] if kept else []))

    @staticmethod
    def _set_schedule(task: PeriodicTask, schedule: tuple) -> None:
        for field in SCHEDULE_FIELDS:
            setattr(task, field, None)
        setattr(task, schedule[0], schedule_row(schedule))
