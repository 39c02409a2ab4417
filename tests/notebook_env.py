"""What every notebook gets under test (nbval) and under `make notebooks`: what
`make lab` gives a kernel, nothing more. A broker (REDIS_URL; here a fresh one
on a free port), a session marker and a temporary folder of the session's.
Everything else (its Redis database, a Django database, scratch folders) the
chapter's own preparation makes (launcher.prepare_chapter)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from contextlib import contextmanager

import launcher
from launcher.procs import SESSION_VARIABLE, sweep
from launcher.scratch import remove_orphans
from tests.helpers import patched_environ


@contextmanager
def notebook_environment():
    broker = launcher.start_embedded()
    session = f"notebook-{uuid.uuid4().hex[:12]}"
    session_tmp = tempfile.mkdtemp(prefix="celery-course-notebook-")
    values = {"REDIS_URL": broker.url, SESSION_VARIABLE: session, "TMPDIR": session_tmp,
              "DATABASE_URL": None, "MEDIA_ROOT": None}
    try:
        with patched_environ(values):
            yield values
    finally:
        # The kernel is gone (nbval kills it, so it could not stop what it
        # started): stop what carries the session's marker, then the broker.
        sweep(session)
        remove_orphans(session)
        broker.stop()
        shutil.rmtree(session_tmp, ignore_errors=True)
