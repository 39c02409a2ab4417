from django.contrib import admin

from .models import Photo


@admin.register(Photo)
class PhotoAdmin(admin.ModelAdmin):
    list_display = ("original_name", "owner", "format", "width", "height", "status", "created")
    list_filter = ("status", "format")
    readonly_fields = [field.name for field in Photo._meta.fields]
