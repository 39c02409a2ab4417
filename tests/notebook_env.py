"""What every notebook gets under test (nbval) and under `make notebooks`:
its own broker on a free port and its own throwaway Django database and media
folder, handed to the kernel through the environment, as `make lab` does."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import launcher
from tests.helpers import patched_environ


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
