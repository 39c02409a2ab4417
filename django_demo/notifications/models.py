"""A notification someone sent (by mail, to a DingTalk group, to the internal
webhook), and what became of it: every attempt is on the row."""

import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse


class Notification(models.Model):
    class Channel(models.TextChoices):
        EMAIL = "email", "邮件"
        DINGTALK = "dingtalk", "钉钉群机器人"
        WEBHOOK = "webhook", "内部 webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "发送中"
        SENT = "sent", "已发送"
        FAILED = "failed", "失败"

    class Delivery(models.TextChoices):
        # Plain retries: nothing is lost that a retry can still deliver, but a send
        # whose answer was lost (a timeout after the robot posted it) is posted again.
        AT_LEAST_ONCE = "at-least-once", "至少一次（可能重复）"
        # A claim in Redis before the first send, never released: a retry finds it and
        # gives up. Never twice, but a message whose first attempt did not arrive is lost.
        AT_MOST_ONCE = "at-most-once", "至多一次（可能丢失）"

    TERMINAL = (Status.SENT, Status.FAILED)

    # A random id, not 1, 2, 3...: an address cannot be guessed from another one.
    # It also makes the mail's Message-ID and the webhook's Idempotency-Key.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="notifications", verbose_name="发送人")

    channel = models.CharField("渠道", max_length=10, choices=Channel.choices, default=Channel.EMAIL)
    recipient = models.EmailField("收件人", blank=True, help_text="邮件的收件地址；机器人和 webhook 不需要。")
    subject = models.CharField("主题", max_length=150)
    body = models.TextField("正文", max_length=5000)
    # Only the robot has a choice (mail and webhook are at-least-once, and their
    # receivers drop the duplicates: the Message-ID, the Idempotency-Key).
    delivery = models.CharField("投递方式", max_length=15, choices=Delivery.choices, default=Delivery.AT_LEAST_ONCE)

    status = models.CharField("状态", max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField("尝试次数", default=0)
    # Every attempt: {"attempt", "at", "outcome" ("sent", "retry", "failed", "skipped",
    # "resent": sent again from the admin), "detail"}.
    history = models.JSONField("每次尝试", default=list, blank=True)
    message_id = models.CharField("Message-ID", max_length=255, blank=True)
    reason = models.CharField("说明", max_length=500, blank=True,
                              help_text="失败的原因（或服务器的回答）；成功时记下值得知道的事（例如发过不止一次）。")
    # Chosen by the view before the task is sent (as chapter 05's reports do).
    task_id = models.CharField("任务 ID", max_length=255, blank=True)

    created = models.DateTimeField("创建于", auto_now_add=True)
    sent_at = models.DateTimeField("发送于", null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = "通知"
        verbose_name_plural = "通知"

    def __str__(self) -> str:
        return f"{self.get_channel_display()}：{self.subject} ({self.get_status_display()})"

    def get_absolute_url(self) -> str:
        return reverse("notifications:detail", args=[self.pk])
