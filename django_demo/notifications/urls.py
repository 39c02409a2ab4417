from django.urls import path
from django.views.generic import RedirectView

from . import views

app_name = "notifications"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="notifications:create"), name="index"),
    path("new", views.create_notification, name="create"),
    path("<uuid:pk>/", views.notification_detail, name="detail"),
]
