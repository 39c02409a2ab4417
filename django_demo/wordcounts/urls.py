from django.urls import path

from . import views

app_name = "wordcounts"

urlpatterns = [
    path("", views.create_wordcount, name="create"),
    path("<uuid:pk>/", views.wordcount_detail, name="detail"),
    path("<uuid:pk>/status/", views.wordcount_status, name="status"),
]
