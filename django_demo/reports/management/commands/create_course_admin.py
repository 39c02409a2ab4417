"""Create (or update) the local user for the admin and the report pages.

    COURSE_ADMIN_PASSWORD=... python manage.py create_course_admin
    python manage.py create_course_admin --username me --password-file ~/.my-password

There is no default password: one printed in a repository is everybody's.
`make lab` and the chapters pass the one generated for this installation
(``.secrets/admin-password``) in COURSE_ADMIN_PASSWORD. The password never
goes on the command line, where `ps` shows it to every user of the machine.

Refused when DEBUG is false: on a server, use `manage.py createsuperuser`.
"""

import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create or update a superuser for local use only (refused when DEBUG is false)."

    def add_arguments(self, parser):
        # No abbreviations: `--password SECRET` must fail, not read a file named SECRET.
        parser.allow_abbrev = False
        parser.add_argument("--username", default=os.environ.get("COURSE_ADMIN_USER", "admin"))
        parser.add_argument("--password-file", type=Path,
                            help="a file holding the password (default: COURSE_ADMIN_PASSWORD)")
        parser.add_argument("--email", default="admin@example.com")

    def handle(self, *args, username, password_file, email, **options):
        if not settings.DEBUG:
            raise CommandError("DEBUG is false: refusing to create a local admin. "
                               "Use `manage.py createsuperuser` on a server.")
        if password_file is not None:
            try:
                password = password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise CommandError(f"--password-file {password_file}: {exc.strerror}.") from None
        else:
            password = os.environ.get("COURSE_ADMIN_PASSWORD", "").strip()
        if not password:
            raise CommandError("No password: set COURSE_ADMIN_PASSWORD or give --password-file "
                               "(make lab passes the one in .secrets/admin-password).")
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        user.email = email
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        verb = "Created" if created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} admin user {username!r} (local use only)."))
