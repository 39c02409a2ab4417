from django.contrib import admin

from .models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["subject", "channel", "recipient", "status", "attempts", "created", "sent_at"]
    list_filter = ["channel", "status", "delivery"]
    # The ids in the worker's log (notification UUID, task id, Message-ID) find the row here.
    search_fields = ["subject", "recipient", "task_id", "message_id"]
    readonly_fields = ["id", "status", "attempts", "history", "message_id", "reason", "task_id", "created",
                       "sent_at"]
