from django.urls import path

from . import views

app_name = "videos"

urlpatterns = [
    path("", views.create_video, name="create"),
    path("<uuid:pk>/", views.video_detail, name="detail"),
    path("<uuid:pk>/status/", views.video_status, name="status"),
    path("<uuid:pk>/events/", views.video_events, name="events"),
    path("<uuid:pk>/files/<str:name>", views.video_file, name="file"),
]
