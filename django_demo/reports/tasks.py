"""The report task. @shared_task, not @app.task: the app does not import the
project's Celery app, so it stays reusable; the task binds to whichever app
is current (django_demo.celery_app, made current by django_demo/__init__.py)."""

import csv
import os
import tempfile
import time
import uuid
from pathlib import Path

from celery import shared_task
from celery.exceptions import Ignore
from celery.utils.log import get_task_logger
from django.conf import settings
from django.utils import timezone

from .models import Report

# Lines logged through it name the task and its id (Celery's task log format).
logger = get_task_logger(__name__)

#: What the page says when the task raised something we did not expect: no
#: exception text (it may hold paths, SQL or personal data); the details are
#: in the worker's log, under the error id.
UNEXPECTED = "生成报表时出错。"


class ReportError(Exception):
    """Raised on purpose by a report that asked to fail (the demo's failure).
    Its message is written for the page, so the page may show it."""


def report_path(report_id, task_id: str) -> Path:
    """Where a run of the task writes its file: one name per report and run,
    so a run given up on never touches the file of the run that replaced it."""
    return Path(settings.MEDIA_ROOT) / "reports" / f"report-{report_id}-{task_id[:8]}.csv"


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` to ``path`` all at once or not at all: into a temporary
    file of its own in the same folder, renamed over ``path`` when complete
    (a rename within a folder is atomic). A half-written file never carries
    the final name, and two runs never write into the same temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".part")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["row", "value"])
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@shared_task(bind=True)
def generate_report(self, report_id: str, step_seconds: float | None = None) -> str | None:
    """Build the report one row per step, reporting progress, then write it as CSV.

    Progress goes to two places: Celery's own state (update_state: the
    TaskResult row, Flower, AsyncResult(id).info) and the Report row, which
    the page's status endpoint reads.

    Safe to run twice (a message delivered again, a task sent twice): only the
    run whose id the report names, and only while the report is still pending,
    takes it on; every later write checks that the report is still this run's.
    A finished report is never reset. A run the report is not waiting for
    raises Ignore: Celery then records nothing for it, so a copy of a message
    never overwrites what the first run stored under the same task id."""
    step_seconds = settings.REPORT_STEP_SECONDS if step_seconds is None else step_seconds
    mine = Report.objects.filter(pk=report_id, task_id=self.request.id)
    if not mine.filter(status=Report.Status.PENDING).update(
            status=Report.Status.RUNNING, progress=0, heartbeat=timezone.now()):
        logger.info("report %s is not waiting for this task: nothing to do", report_id)
        raise Ignore()
    running = mine.filter(status=Report.Status.RUNNING)
    report = Report.objects.get(pk=report_id)
    total = report.rows
    rows = []
    try:
        for step in range(1, total + 1):
            time.sleep(step_seconds)  # the "expensive" work of one row
            if report.fail_on_purpose and step > total // 2:
                raise ReportError(f"第 {step} 行出错（演示用的故意失败）。")
            rows.append({"row": step, "value": step * step})
            self.update_state(state="PROGRESS", meta={"current": step, "total": total})
            if not running.update(progress=round(100 * step / total), heartbeat=timezone.now()):
                logger.warning("report %s was given up on (lost, or retried): stopping", report_id)
                return None
        path = report_path(report_id, self.request.id)
        write_csv(path, rows)
    except Exception as exc:
        error_id = uuid.uuid4().hex[:8]
        # The details (with the traceback) go to the worker's log under the error id.
        logger.exception("report %s failed, error id %s", report_id, error_id)
        message = str(exc) if isinstance(exc, ReportError) else UNEXPECTED
        running.update(status=Report.Status.FAILED, message=message, error_id=error_id,
                       finished=timezone.now())
        raise  # the task ends in FAILURE, with its traceback in the TaskResult row

    relative = path.relative_to(settings.MEDIA_ROOT).as_posix()
    if not running.update(status=Report.Status.DONE, progress=100, file=relative,
                          heartbeat=timezone.now(), finished=timezone.now()):
        # Given up on while writing: the file belongs to no finished report.
        path.unlink(missing_ok=True)
        return None
    return relative


# --- Chapter 06: a task that django-celery-beat runs on a schedule -------------

@shared_task
def heartbeat() -> str:
    """Sent by beat from a PeriodicTask row (chapter 06). Each run leaves a
    TaskResult row; the result is the time it ran, in ISO format."""
    return timezone.now().isoformat()


@shared_task(track_started=False)
def report_exists(report_id: str) -> bool:
    """Does the worker see this Report row? Chapter 05 uses it to show why a
    task sent inside a transaction can run before the row is committed.
    (track_started=False: recording STARTED is a write, and on SQLite a write
    waits for the sender's transaction -- which would hide the race.)"""
    found = Report.objects.filter(pk=report_id).exists()
    # Logged before the result is stored: chapter 05 waits for this line, then commits.
    logger.info("report %s visible to the worker: %s", report_id, found)
    return found

