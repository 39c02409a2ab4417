"""What the tests share: the repository's paths, environment patches, Django
set up in the test process, and deadlines that turn a hang into a clear failure.

Readiness waits, the default broker URL and ``manage.py`` live in the launcher
(``Proc.wait_until``, ``launcher.DEFAULT_URL``, ``launcher.manage``): tests use
those, as the notebooks do.
"""

from __future__ import annotations

import os
import sys
import textwrap
import threading
from collections.abc import Callable
from contextlib import contextmanager

import pytest

import launcher
from launcher.paths import DJANGO_DIR, REPO_ROOT

__all__ = ["DJANGO_DIR", "REPO_ROOT", "UNREACHABLE_BROKER", "configure_django", "patched_environ",
           "returns_within", "script"]

#: A port where nothing listens (discard): messages can never reach a learner's 6379.
UNREACHABLE_BROKER = "redis://127.0.0.1:9/0"


def _set_environ(values: dict) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextmanager
def patched_environ(values: dict):
    """Set (or, for None, unset) environment variables; restore them afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(saved)


def configure_django() -> None:
    """Set Django up in the test process (for pytest-django's client and test
    database), without leaving DJANGO_SETTINGS_MODULE in os.environ: notebook
    kernels and Celery programs started by other tests inherit the environment,
    and Celery installs its Django fix-up whenever that variable is set."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    overrides = {"DJANGO_SETTINGS_MODULE": "django_demo.settings", "REDIS_URL": UNREACHABLE_BROKER,
                 "DEBUG": "true", "DATABASE_URL": None, "MEDIA_ROOT": None}
    with patched_environ(overrides):
        django.setup()  # reads the settings now, while the variables are set


def returns_within(seconds: float, call: Callable, what: str):
    """Run ``call()`` and return what it returns, or raise what it raises.

    A bad input must fail fast: if ``call`` has not finished after ``seconds``
    (a generous deadline, so that a loaded machine never trips it), the test
    fails saying that ``what`` hung. How fast it really is belongs in a benchmark."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"deadline: {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{what} did not return within {seconds:g} s: it hangs instead of failing fast")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def script(code: str, name: str = "script") -> launcher.Proc:
    """A small Python program as a background process (its output goes to its log)."""
    return launcher.Proc(name, [sys.executable, "-u", "-c", textwrap.dedent(code)])
