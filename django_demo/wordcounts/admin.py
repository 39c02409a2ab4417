from django.contrib import admin

from .models import WordCount


@admin.register(WordCount)
class WordCountAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "pieces", "status", "created", "finished"]
    list_filter = ["status"]
    # The ids on the page find the row here, and the tasks under "Task results" / "Group results".
    search_fields = ["group_id", "task_id"]
    readonly_fields = ["id", "group_id", "task_id", "top", "words", "created", "finished"]
