#!/usr/bin/env python
"""Django's command-line utility for the course's demo project."""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_demo.settings")
    try:
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        raise ImportError(
            "Couldn't import Django. Is it installed and is the course's virtual "
            "environment active (`make install`, then `source .venv/bin/activate`)?"
        ) from exc
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
