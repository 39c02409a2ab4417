from django.urls import path

from . import views

app_name = "gallery"

urlpatterns = [
    path("", views.upload_photo, name="upload"),
    path("<uuid:pk>/", views.photo_detail, name="detail"),
    path("<uuid:pk>/status/", views.photo_status, name="status"),
    path("<uuid:pk>/thumbnails/<str:name>.jpg", views.thumbnail, name="thumbnail"),
]
