from django.urls import path

from . import views

app_name = "reports"

urlpatterns = [
    path("", views.create_report, name="create"),
    # Chapter 09: the day's reports as a workbook (before reports/<uuid>/, which it is not).
    path("reports/daily.xlsx", views.download_daily, name="daily"),
    path("reports/<uuid:pk>/", views.report_detail, name="detail"),
    path("reports/<uuid:pk>/status/", views.report_status, name="status"),
    path("reports/<uuid:pk>/retry/", views.retry_report, name="retry"),
    path("reports/<uuid:pk>/download/", views.download_report, name="download"),
]
