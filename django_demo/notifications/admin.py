"""The notifications in Django's admin: found by the ids in the worker's log, and
failed ones sent again («重新发送») once the server they needed is back."""

from django.contrib import admin, messages
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from .models import Notification
from .views import BROKER_DOWN, send_on_commit


def resend(notification: Notification, user: str) -> None:
    """Set the failed ``notification`` pending again and send its task once committed
    (a new task id). Its history stays, with an entry that says who sent it again."""
    notification.status = Notification.Status.PENDING
    notification.reason = "重新发送中"
    notification.sent_at = None
    notification.history = [*notification.history, {
        "attempt": notification.attempts, "at": timezone.now().isoformat(), "outcome": "resent",
        "detail": f"sent again from the admin by {user}"}]
    send_on_commit(notification)


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["subject", "channel", "recipient", "status", "attempts", "created", "sent_at"]
    list_filter = ["channel", "status", "delivery"]
    # The ids in the worker's log (notification UUID, task id, Message-ID) find the row here.
    search_fields = ["subject", "recipient", "task_id", "message_id"]
    readonly_fields = ["id", "status", "attempts", "history", "message_id", "reason", "task_id", "created",
                       "sent_at"]
    actions = ["resend_failed"]

    @admin.action(description="重新发送（只对“失败”的通知）")
    def resend_failed(self, request, queryset):
        """Each selected failed row: pending again, its task sent once the row is committed.
        Rows that are not failed are left alone (a pending one is still being sent)."""
        failed = list(queryset.filter(status=Notification.Status.FAILED))
        skipped = queryset.count() - len(failed)
        sent = 0
        for notification in failed:
            before = Notification.objects.get(pk=notification.pk)
            try:
                with transaction.atomic():
                    resend(notification, request.user.get_username())
            except OperationalError:
                # Committed, then not sent: the row goes back to what it was, nothing waits for nothing.
                before.save()
                self.message_user(request, BROKER_DOWN, messages.ERROR)
                break
            sent += 1
        if sent:
            self.message_user(request, f"已重新发送 {sent} 条通知。", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} 条不是“失败”状态，没有重新发送。", messages.WARNING)
