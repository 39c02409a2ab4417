"""A report someone asked for, and what became of it."""

from django.db import models
from django.urls import reverse


class Report(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "排队中"
        RUNNING = "running", "生成中"
        DONE = "done", "已完成"
        FAILED = "failed", "失败"

    # What was asked for (the form's fields).
    title = models.CharField("标题", max_length=100)
    rows = models.PositiveSmallIntegerField("行数", default=5)
    fail_on_purpose = models.BooleanField("故意失败（演示用）", default=False)

    # What the task did with it.
    status = models.CharField("状态", max_length=10, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField("进度 (%)", default=0)
    error = models.TextField("错误", blank=True)
    file = models.CharField("文件（相对 MEDIA_ROOT）", max_length=255, blank=True)
    # Chosen by the view before the task is sent (see views.create_report).
    task_id = models.CharField("任务 ID", max_length=255, blank=True)

    created = models.DateTimeField("创建于", auto_now_add=True)
    finished = models.DateTimeField("结束于", null=True, blank=True)

    class Meta:
        ordering = ["-created", "-pk"]
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

    def as_status(self) -> dict:
        """What the JSON status endpoint answers (and the page's script reads)."""
        return {
            "status": self.status,
            "progress": self.progress,
            "error": self.error or None,
            "download_url": self.download_url,
        }
