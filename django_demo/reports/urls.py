from django.urls import path

from . import views

app_name = "reports"

urlpatterns = [
    path("", views.create_report, name="create"),
    path("reports/<int:pk>/", views.report_detail, name="detail"),
    path("reports/<int:pk>/status/", views.report_status, name="status"),
    path("reports/<int:pk>/download/", views.download_report, name="download"),
]
