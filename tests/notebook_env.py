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
def notebook_environment():
    broker = launcher.start_embedded()
    scratch = Path(tempfile.mkdtemp(prefix="celery-course-notebook-"))
    values = {
        "REDIS_URL": broker.url,
        "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
        "MEDIA_ROOT": str(scratch / "media"),
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield values
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)
