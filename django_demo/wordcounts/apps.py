from django.apps import AppConfig


class WordcountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "wordcounts"
    verbose_name = "词频统计"
