"""Fixtures that start real processes: brokers on free ports and workers.
(The per-notebook broker lives in the root conftest.py.)

Each pytest-xdist worker is a session of its own: it gets its own brokers and ports."""

from __future__ import annotations

import importlib
import os

import pytest

import launcher
from tests.helpers import configure_django


def pytest_configure(config):
    # pytest-django's documented way for settings that are not in the environment.
    configure_django()


@pytest.fixture(scope="session")
def broker():
    b = launcher.start_embedded()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def module_broker():
    """A broker for one test module, so that its queues start empty."""
    b = launcher.start_embedded()
    yield b
    b.stop()


def import_on(broker, module: str):
    """demo_tasks.<module>, imported with REDIS_URL pointing at ``broker``. The module
    reads REDIS_URL when it is imported, and an app keeps the connections it opened
    (re-pointing it later does not work): it is imported once per test process, by
    its session fixture, and every test module that uses it shares it."""
    os.environ["REDIS_URL"] = broker.url
    imported = importlib.import_module(f"demo_tasks.{module}")
    assert imported.app.conf.broker_url == broker.url, \
        f"demo_tasks.{module} was imported before its session fixture set REDIS_URL"
    return imported


@pytest.fixture(scope="session")
def demo_app(broker):
    """demo_tasks.tasks (chapters 01-04)."""
    return import_on(broker, "tasks")


@pytest.fixture(scope="session")
def retries_app(broker):
    """demo_tasks.retries (chapter 07)."""
    return import_on(broker, "retries")


@pytest.fixture(scope="session")
def workflows_app(broker):
    """demo_tasks.workflows (chapter 08)."""
    return import_on(broker, "workflows")


@pytest.fixture(scope="module")
def demo_worker(demo_app, broker):
    """A real `celery -A demo_tasks.tasks worker` process for one test module."""
    worker = launcher.start_worker("demo_tasks.tasks", broker=broker, fast=True)
    yield worker
    worker.cleanup()


@pytest.fixture(scope="session")
def learner_lab():
    """The run's one `make lab` (tests/learner_mode.py), started by the first chapter
    that needs it, in whichever test process; stopped when the run ends."""
    from tests.learner_mode import LearnerLab, attach

    lab = LearnerLab(attach())
    yield lab
    lab.close()
