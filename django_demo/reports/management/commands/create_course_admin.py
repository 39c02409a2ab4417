"""Create (or update) an admin user for exploring the admin on your own machine.

    python manage.py create_course_admin            # admin / celery-course
    python manage.py create_course_admin --username me --password 's3cret!'

Refuses to run when DEBUG is false: a known password has no place on a server.
"""

import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

DEFAULT_USERNAME = "admin"
DEFAULT_PASSWORD = "celery-course"


class Command(BaseCommand):
    help = "Create or update a superuser for local use only (refused when DEBUG is false)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("COURSE_ADMIN_USER", DEFAULT_USERNAME))
        parser.add_argument("--password", default=os.environ.get("COURSE_ADMIN_PASSWORD", DEFAULT_PASSWORD))
        parser.add_argument("--email", default="admin@example.com")

    def handle(self, *args, username, password, email, **options):
        if not settings.DEBUG:
            raise CommandError("DEBUG is false: refusing to create an admin with a known password. "
                               "Use `manage.py createsuperuser` on a server.")
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        user.email = email
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        verb = "Created" if created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} admin user {username!r} (local use only)."))
