from django.contrib import admin

from .models import Video


@admin.register(Video)
class VideoAdmin(admin.ModelAdmin):
    list_display = ("__str__", "owner", "height", "status", "created", "finished")
    list_filter = ("status",)
    readonly_fields = [field.name for field in Video._meta.fields]
