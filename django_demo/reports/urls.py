from django.urls import path

from . import views

app_name = "reports"

urlpatterns = [
    path("", views.create_report, name="create"),
    path("reports/<uuid:pk>/", views.report_detail, name="detail"),
    path("reports/<uuid:pk>/status/", views.report_status, name="status"),
    path("reports/<uuid:pk>/retry/", views.retry_report, name="retry"),
    path("reports/<uuid:pk>/download/", views.download_report, name="download"),
]
