# TaskResult (django_celery_results) and PeriodicTask (django_celery_beat)
# are registered in the admin by their own packages.
from django.contrib import admin

from .models import Report


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "status", "progress", "created", "finished"]
    list_filter = ["status"]
    # The error id the page shows finds the report (and the log lines) here.
    search_fields = ["title", "task_id", "error_id"]
    readonly_fields = ["id", "task_id", "error_id", "heartbeat", "created", "finished"]
