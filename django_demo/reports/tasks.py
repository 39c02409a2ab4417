"""The report task. @shared_task, not @app.task: the app does not import the
project's Celery app, so it stays reusable; the task binds to whichever app
is current (django_demo.celery_app, made current by django_demo/__init__.py)."""

import csv
import time
from pathlib import Path

from celery import shared_task
from celery.utils.log import get_task_logger
from django.conf import settings
from django.utils import timezone

from .models import Report

# Lines logged through it name the task and its id (Celery's task log format).
logger = get_task_logger(__name__)


class ReportError(Exception):
    """Raised on purpose by a report that asked to fail (the demo's failure)."""


def report_path(report: Report) -> Path:
    return Path(settings.MEDIA_ROOT) / "reports" / f"report-{report.pk}.csv"


@shared_task(bind=True)
def generate_report(self, report_id: int, step_seconds: float | None = None) -> str:
    """Build the report one row per step, reporting progress, then write it as CSV.

    Progress goes to two places: Celery's own state (update_state: the
    TaskResult row, Flower, AsyncResult(id).info) and the Report row, which
    the page's status endpoint reads."""
    step_seconds = settings.REPORT_STEP_SECONDS if step_seconds is None else step_seconds
    report = Report.objects.get(pk=report_id)
    Report.objects.filter(pk=report_id).update(status=Report.Status.RUNNING, progress=0)
    total = report.rows
    rows = []
    try:
        for step in range(1, total + 1):
            time.sleep(step_seconds)  # the "expensive" work of one row
            if report.fail_on_purpose and step > total // 2:
                raise ReportError(f"第 {step} 行出错：这是演示用的故意失败 (failed on purpose at row {step})")
            rows.append({"row": step, "value": step * step})
            self.update_state(state="PROGRESS", meta={"current": step, "total": total})
            Report.objects.filter(pk=report_id).update(progress=round(100 * step / total))

        path = report_path(report)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        with partial.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["row", "value"])
            writer.writeheader()
            writer.writerows(rows)
        partial.replace(path)  # never a half-written file under the final name
    except Exception as exc:
        Report.objects.filter(pk=report_id).update(
            status=Report.Status.FAILED, error=f"{type(exc).__name__}: {exc}", finished=timezone.now())
        raise  # the task ends in FAILURE, with its traceback in the TaskResult row

    relative = path.relative_to(settings.MEDIA_ROOT).as_posix()
    Report.objects.filter(pk=report_id).update(
        status=Report.Status.DONE, progress=100, file=relative, finished=timezone.now())
    return relative


# --- Chapter 06: a task that django-celery-beat runs on a schedule -------------

@shared_task
def heartbeat() -> str:
    """Sent by beat from a PeriodicTask row (chapter 06). Each run leaves a
    TaskResult row; the result is the time it ran, in ISO format."""
    return timezone.now().isoformat()


@shared_task(track_started=False)
def report_exists(report_id: int) -> bool:
    """Does the worker see this Report row? Chapter 05 uses it to show why a
    task sent inside a transaction can run before the row is committed.
    (track_started=False: recording STARTED is a write, and on SQLite a write
    waits for the sender's transaction -- which would hide the race.)"""
    found = Report.objects.filter(pk=report_id).exists()
    # Logged before the result is stored: chapter 05 waits for this line, then commits.
    logger.info("report %s visible to the worker: %s", report_id, found)
    return found
