# TaskResult (django_celery_results) and PeriodicTask (django_celery_beat)
# are registered in the admin by their own packages.
from django.contrib import admin

from .models import Report


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ["id", "title", "status", "progress", "created", "finished"]
    list_filter = ["status"]
    search_fields = ["title", "task_id"]
    readonly_fields = ["task_id", "created", "finished"]
