"""A word count: a text, cut into pieces that a chord counts in parallel (chapter 08).

The row keeps what the chord needs to be found again: the id of its header
(the group of pieces, saved as a GroupResult in django_celery_results' table)
and the id of its callback (the merge). The progress page restores the group
by that id and asks it how many pieces are done.
"""

import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse


class WordCount(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "统计中"
        DONE = "done", "已完成"
        FAILED = "failed", "失败"

    TERMINAL = (Status.DONE, Status.FAILED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="wordcounts", verbose_name="所有者")

    # What was asked for. The tasks read the text from here: ids, not texts, travel in the messages.
    text = models.TextField("文本")
    pieces = models.PositiveSmallIntegerField("段数", default=4)
    fail_piece = models.PositiveSmallIntegerField("故意失败的段（演示用）", null=True, blank=True)

    # The chord, by its ids (chosen by the view before it is sent, see views.start_on_commit).
    group_id = models.CharField("头部的 GroupResult ID", max_length=255, blank=True)
    task_id = models.CharField("回调（合并）的任务 ID", max_length=255, blank=True)

    # What came of it: the merge writes the result; a failed chord is recorded by the status view.
    status = models.CharField("状态", max_length=10, choices=Status.choices, default=Status.RUNNING)
    top = models.JSONField("最常见的词", default=list, blank=True)
    words = models.PositiveIntegerField("词数", null=True, blank=True)
    message = models.CharField("失败说明", max_length=300, blank=True)

    created = models.DateTimeField("创建于", auto_now_add=True)
    finished = models.DateTimeField("结束于", null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = "词频统计"
        verbose_name_plural = "词频统计"

    def __str__(self) -> str:
        return f"{self.pieces} 段 ({self.get_status_display()})"

    def get_absolute_url(self) -> str:
        return reverse("wordcounts:detail", args=[self.pk])
