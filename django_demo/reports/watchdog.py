"""Notice a report whose task is gone, so that its page cannot wait forever.

A report waits on a task that may never report back: its worker was killed
(SIGKILL, out of memory, the machine rebooted), or its message was lost. With
Celery's defaults the message was acknowledged when the task started, so
nothing brings it back. The pages call ``notice_lost()`` whenever they read a
report, and mark it failed (with a retry button) when

- Celery recorded the task as failed although the report is not (the worker's
  child process died under it: WorkerLostError), or
- a running report has shown no progress for REPORT_LOST_AFTER_SECONDS, or
- a pending report has not been started for REPORT_QUEUE_TIMEOUT_SECONDS
  (no worker running, or the message is gone).
"""

import logging
import uuid
from datetime import timedelta

from celery.result import AsyncResult
from django.conf import settings
from django.utils import timezone

from .models import Report
from .tasks import report_path

logger = logging.getLogger(__name__)

CRASHED = "worker 在生成报表时意外退出，任务没有完成。"
SILENT = "任务丢失：{seconds:g} 秒没有收到进度（worker 可能被停止了）。"
NEVER_STARTED = "等了 {seconds:g} 秒仍没有 worker 接手这个任务（worker 在运行吗？）。"


def remove_partial_files(report: Report) -> None:
    """The temporary file a task killed while writing left behind (tasks.write_csv)."""
    stem = report_path(report.pk, report.task_id).stem
    for leftover in report_path(report.pk, report.task_id).parent.glob(f".{stem}-*.part"):
        leftover.unlink(missing_ok=True)


def notice_lost(report: Report) -> Report:
    """``report``, marked failed if its task is lost (see the module's docstring)."""
    if report.status in Report.TERMINAL:
        return report
    now = timezone.now()
    reason = None
    if report.task_id and AsyncResult(report.task_id).state in ("FAILURE", "REVOKED"):
        reason = CRASHED
    elif report.status == Report.Status.RUNNING:
        seconds = settings.REPORT_LOST_AFTER_SECONDS
        if report.heartbeat is None or report.heartbeat < now - timedelta(seconds=seconds):
            reason = SILENT.format(seconds=seconds)
    else:
        seconds = settings.REPORT_QUEUE_TIMEOUT_SECONDS
        sent = report.heartbeat or report.created  # the view sets the heartbeat when it sends
        if sent < now - timedelta(seconds=seconds):
            reason = NEVER_STARTED.format(seconds=seconds)
    if reason is None:
        return report
    error_id = uuid.uuid4().hex[:8]
    # Only if the task has not moved meanwhile (the same state, the same heartbeat).
    given_up = Report.objects.filter(pk=report.pk, status=report.status, task_id=report.task_id,
                                     heartbeat=report.heartbeat).update(
        status=Report.Status.FAILED, message=reason, error_id=error_id, finished=now)
    if given_up:
        logger.warning("report %s: task %s is lost (%s); error id %s", report.pk, report.task_id,
                       report.status, error_id)
        remove_partial_files(report)
    report.refresh_from_db()
    return report
