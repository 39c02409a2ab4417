"""Applies to every test, notebooks included (so it lives at the repository root).

Tests never use port 6379 or the learner's REDIS_URL: every broker is an
embedded Valkey on a free loopback port, stopped when its user is done.
"""

from __future__ import annotations

import os

import pytest

import launcher

# A learner's REDIS_URL must not leak into the tests (they would share its queues).
os.environ.pop("REDIS_URL", None)


# --- nbval: one fresh broker per notebook -------------------------------------

_notebook_broker: dict = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before a notebook's kernel starts (its first cell), give it its own broker.
    The kernel inherits REDIS_URL, as it does under `make lab`."""
    notebook = item.parent
    if type(notebook).__name__ != "IPyNbFile" or _notebook_broker.get("file") is notebook:
        return
    _stop_notebook_broker()
    b = launcher.start_embedded()
    os.environ["REDIS_URL"] = b.url
    _notebook_broker.update(file=notebook, broker=b)


def _stop_notebook_broker():
    b = _notebook_broker.pop("broker", None)
    _notebook_broker.pop("file", None)
    os.environ.pop("REDIS_URL", None)
    if b is not None:
        b.stop()


def pytest_sessionfinish(session, exitstatus):
    _stop_notebook_broker()
