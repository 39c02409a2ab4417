"""A report someone asked for, and what became of it."""

import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse


class Report(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "排队中"
        RUNNING = "running", "生成中"
        DONE = "done", "已完成"
        FAILED = "failed", "失败"

    TERMINAL = (Status.DONE, Status.FAILED)

    # A random id, not 1, 2, 3...: an address cannot be guessed from another one.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Whose report it is: the pages show and serve a report to its owner only.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="reports", verbose_name="所有者")

    # What was asked for (the form's fields).
    title = models.CharField("标题", max_length=100)
    rows = models.PositiveSmallIntegerField("行数", default=5)
    fail_on_purpose = models.BooleanField("故意失败（演示用）", default=False)

    # What the task did with it. This is the domain's state, kept in our own
    # table; Celery's task states (PENDING, STARTED, ...) describe the message.
    status = models.CharField("状态", max_length=10, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField("进度 (%)", default=0)
    # What the page shows when it failed: a short message of ours and an id to
    # find the details in the log, never the exception's text.
    message = models.CharField("失败说明", max_length=200, blank=True)
    error_id = models.CharField("错误编号", max_length=32, blank=True)
    file = models.CharField("文件（相对 MEDIA_ROOT）", max_length=255, blank=True)
    # Chosen by the view before the task is sent (see views.create_report); a
    # task whose id is not this one (an old attempt) leaves the report alone.
    task_id = models.CharField("任务 ID", max_length=255, blank=True)
    # The last sign of life: set when the task is sent, when it starts and after every row.
    heartbeat = models.DateTimeField("最近进度", null=True, blank=True)

    created = models.DateTimeField("创建于", auto_now_add=True)
    finished = models.DateTimeField("结束于", null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = "报表"
        verbose_name_plural = "报表"

    def __str__(self) -> str:
        return f"{self.title} ({self.get_status_display()})"

    def get_absolute_url(self) -> str:
        return reverse("reports:detail", args=[self.pk])

    @property
    def download_url(self) -> str | None:
        if self.status == self.Status.DONE and self.file:
            return reverse("reports:download", args=[self.pk])
        return None

    @property
    def retry_url(self) -> str | None:
        return reverse("reports:retry", args=[self.pk]) if self.status == self.Status.FAILED else None

    def as_status(self) -> dict:
        """What the JSON status endpoint answers (and the page's script reads)."""
        return {
            "status": self.status,
            "progress": self.progress,
            "message": self.message or None,
            "error_id": self.error_id or None,
            "download_url": self.download_url,
            "retry_url": self.retry_url,
        }
