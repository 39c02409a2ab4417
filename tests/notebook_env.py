"""What every notebook gets under test (nbval) and under `make notebooks`: what
`make lab` gives a kernel, nothing more. A broker (REDIS_URL; here a fresh one
on a free port), a session marker and a temporary folder of the session's.
Everything else (its Redis database, a Django database, scratch folders) the
chapter's own preparation makes (launcher.prepare_chapter).

Also the one list of the variables a developer's shell may hold that would
change what a test or a notebook sees (DEVELOPER_NAMES, DEVELOPER_PREFIXES):
the root conftest.py clears them for the whole test run, notebook_environment()
keeps them from every kernel (`make notebooks` runs without conftest.py), and
tests/commands.py leaves them out of a learner's fresh terminal."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import MutableMapping
from contextlib import contextmanager

import launcher
from launcher.credentials import SECRETS_VARIABLE
from launcher.procs import SESSION_VARIABLE, sweep
from launcher.scratch import remove_orphans
from tests.helpers import patched_environ

# --- a developer's variables -------------------------------------------------------------
#
# Why: a test must see what it sees on a fresh clone in CI, whatever the shell that
# runs it has set. A developer who uses the course has some of these in their shell
# (FLOWER_BASIC_AUTH, COURSE_ADMIN_PASSWORD, REDIS_URL pointing at their own Redis,
# COURSE_SECRETS_DIR, DEBUG, ...); a shell inside `make lab` has the lab's session
# marker (CELERY_COURSE_SESSION), whose sweep would stop the tests' processes. Each
# would change a password a test expects, the broker a test talks to, a setting of a
# Django process the tests start, or a command a notebook shows.
#
# Built from every read of the environment in launcher/, demo_tasks/, django_demo/,
# selfcheck/, instruments/ and services/ (tests/test_isolation.py scans them and fails on
# one that is missing here), and the programs the course runs:
#   launcher:    REDIS_URL (broker), COURSE_SECRETS_DIR, FLOWER_BASIC_AUTH, COURSE_ADMIN_USER,
#                COURSE_ADMIN_PASSWORD (credentials), LAB_PORT, LAB_BROKER_PORT (lab),
#                CELERY_COURSE_SESSION, CELERY_COURSE_OWNER (procs, owner, scratch), and every
#                setting (launcher.shown.is_setting) it hands on to the processes it starts;
#   demo_tasks:  REDIS_URL, JIEBA_CACHE_DIR; selfcheck: REDIS_URL;
#   services:    DINGTALK_SECRET (the bot receiver's signing secret, chapter 09);
#   django_demo: DJANGO_SETTINGS_MODULE, DEBUG, SECRET_KEY[_FILE], ALLOWED_HOSTS,
#                CSRF_TRUSTED_ORIGINS, DATABASE_URL, DATABASE_PASSWORD[_FILE], REDIS_URL,
#                REDIS_PASSWORD[_FILE], TIME_ZONE, STATIC_ROOT, MEDIA_ROOT, REPORT_*, WORDCOUNT_*,
#                DINGTALK_*, NOTIFY_* (chapter 09's notifications),
#                EMAIL_BACKEND, EMAIL_FILE_PATH, EMAIL_HOST, DEFAULT_FROM_EMAIL, SECURE_*,
#                BEHIND_TLS_PROXY, CELERY_TASK_DEFAULT_QUEUE, COURSE_ADMIN_*;
#   compose:     COURSE_ENV;
#   Celery, Flower, Django themselves: CELERY_* (CELERY_BROKER_URL, CELERY_CONFIG_MODULE, ...),
#                C_FORCE_ROOT, C_FAKEFORK, FLOWER_*, DJANGO_* (DJANGO_ALLOW_ASYNC_UNSAFE, ...);
#   a kernel:    PYTHONPATH (what it imports), MPLBACKEND (ipykernel keeps a set one, and a
#                plot then shows no picture), JUPYTER*/JPY_* (which kernels and config
#                JupyterLab finds).
# Kept on purpose: PATH, HOME, LANG, TMPDIR (the run sets its own), CHROMIUM and
# PLAYWRIGHT_BROWSERS_PATH (where this machine's browser is: launcher/browser.py),
# CI, PYTEST_* (pytest-xdist's own), TEST_REPORT_LOST_AFTER_SECONDS (a knob of the tests).

DEVELOPER_NAMES = frozenset({
    "DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "TIME_ZONE", "STATIC_ROOT", "MEDIA_ROOT",
    "DEFAULT_FROM_EMAIL", "BEHIND_TLS_PROXY", "JIEBA_CACHE_DIR", "PYTHONPATH", "MPLBACKEND",
    "C_FORCE_ROOT", "C_FAKEFORK",
    "EXERCISE_QUEUE", "RATE_URL",  # chapter 11's exercise_tasks.py (the check sets them for each run)
})
DEVELOPER_PREFIXES = (
    "REDIS_", "DATABASE_", "SECRET_", "DJANGO_", "CELERY_", "FLOWER_", "COURSE_", "LAB_", "REPORT_", "WORDCOUNT_",
    "DINGTALK_", "NOTIFY_", "EMAIL_", "SECURE_", "VIDEO_", "JUPYTER", "JPY_",
)


def is_developer_setting(name: str) -> bool:
    """Would this variable, set in a developer's shell, change what a test sees?"""
    return name in DEVELOPER_NAMES or name.startswith(DEVELOPER_PREFIXES)


def clear_developer_settings(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Remove every developer setting from ``environ`` (default: os.environ); returns what was removed."""
    environ = os.environ if environ is None else environ
    return {name: environ.pop(name) for name in sorted(environ) if is_developer_setting(name)}


@contextmanager
def notebook_environment():
    broker = launcher.start_embedded()
    session = f"notebook-{uuid.uuid4().hex[:12]}"
    session_tmp = tempfile.mkdtemp(prefix="celery-course-notebook-")
    # Nothing of a developer's shell or of earlier tests in this process (the test run's
    # COURSE_SECRETS_DIR included: a kernel uses the learner's .secrets/, whose path the
    # chapters print; see launcher/credentials.py).
    values = {name: None for name in os.environ if is_developer_setting(name)}
    values.update({"REDIS_URL": broker.url, SESSION_VARIABLE: session, "TMPDIR": session_tmp,
                   SECRETS_VARIABLE: None})
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
