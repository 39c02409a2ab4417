"""URLs: the admin, logging in and out, the word counts (chapter 08), the notifications
(chapter 09), photos and videos (chapter 10), and the report pages at the site root."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # login/, logout/ (and password change) with Django's own views.
    path("accounts/", include("django.contrib.auth.urls")),
    path("wordcounts/", include("wordcounts.urls")),
    path("notifications/", include("notifications.urls")),
    path("gallery/", include("gallery.urls")),
    path("videos/", include("videos.urls")),
    path("", include("reports.urls")),
]
