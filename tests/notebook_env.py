"""What every notebook gets under test (nbval) and under `make notebooks`:
its own broker on a free port and its own throwaway Django database and media
folder, handed to the kernel through the environment, as `make lab` does."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import launcher


@contextmanager
def patched_environ(values: dict):
    """Set (or, for None, unset) environment variables; restore them afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def notebook_environment():
    broker = launcher.start_embedded()
    scratch = Path(tempfile.mkdtemp(prefix="celery-course-notebook-"))
    values = {
        "REDIS_URL": broker.url,
        "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
        "MEDIA_ROOT": str(scratch / "media"),
    }
    try:
        with patched_environ(values):
            yield values
    finally:
        broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)
