"""A real django_demo stack for tests: a migrated SQLite file, a worker, the server."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import launcher
from launcher.django_procs import django_env, start_django_server

DJANGO_DIR = Path(__file__).resolve().parent.parent / "django_demo"


@contextmanager
def django_stack(tmp: Path, broker, *, step_seconds: str, worker_name: str = "w1"):
    """Yield {"worker", "server", "env", "tmp", "db", "media"}; everything stops at the end."""
    env = django_env(tmp, broker, REPORT_STEP_SECONDS=step_seconds)
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=DJANGO_DIR,
                             env=dict(os.environ, **env), capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    started = []
    try:
        started.append(launcher.start_worker("django_demo", broker=broker, name=worker_name, fast=True,
                                             cwd=str(DJANGO_DIR), env=env))
        started.append(start_django_server(DJANGO_DIR, env=env))
        yield {"worker": started[0], "server": started[1], "env": env, "tmp": tmp,
               "db": tmp / "db.sqlite3", "media": tmp / "media"}
    finally:
        for proc in reversed(started):
            proc.cleanup()
