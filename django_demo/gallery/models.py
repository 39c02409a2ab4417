"""A photo someone uploaded, and the thumbnails a task made of it (chapter 10).

The uploaded file is stored under MEDIA_ROOT with a name the server chooses
(``gallery/<photo id>/original.<ext>``, the extension from the content, never
from the name the browser sent), and served to its owner only, by a view.
"""

import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse


class Photo(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "排队中"
        RUNNING = "running", "生成中"
        DONE = "done", "已完成"
        FAILED = "failed", "失败"

    TERMINAL = (Status.DONE, Status.FAILED)

    # A random id: the address of one photo cannot be guessed from another's.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="photos", verbose_name="所有者")

    # What was uploaded. original_name is shown, never used as a path.
    original = models.CharField("原图（相对 MEDIA_ROOT）", max_length=255)
    original_name = models.CharField("上传时的文件名", max_length=200, blank=True)
    format = models.CharField("格式（按内容识别）", max_length=10)
    width = models.PositiveIntegerField("宽")
    height = models.PositiveIntegerField("高")
    size = models.PositiveIntegerField("字节数")

    # What the task made of it: {"small": {"file": ..., "width": ..., "height": ...}, ...}
    status = models.CharField("状态", max_length=10, choices=Status.choices, default=Status.PENDING)
    thumbnails = models.JSONField("缩略图", default=dict, blank=True)
    message = models.CharField("失败说明", max_length=200, blank=True)
    error_id = models.CharField("错误编号", max_length=32, blank=True)
    # Chosen by the view before the task is sent; a task with another id leaves the photo alone.
    task_id = models.CharField("任务 ID", max_length=255, blank=True)

    created = models.DateTimeField("上传于", auto_now_add=True)
    finished = models.DateTimeField("结束于", null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = "图片"
        verbose_name_plural = "图片"

    def __str__(self) -> str:
        return f"{self.original_name or self.pk} ({self.get_status_display()})"

    def get_absolute_url(self) -> str:
        return reverse("gallery:detail", args=[self.pk])

    def as_status(self) -> dict:
        """What the JSON status endpoint answers (and the page's script reads)."""
        return {
            "status": self.status,
            "message": self.message or None,
            "error_id": self.error_id or None,
            "thumbnails": {
                name: {"url": reverse("gallery:thumbnail", args=[self.pk, name]),
                       "width": thumb["width"], "height": thumb["height"]}
                for name, thumb in self.thumbnails.items()
            } if self.status == self.Status.DONE else {},
        }
