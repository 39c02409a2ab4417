"""Fixtures that start real processes: brokers on free ports and workers.
(The per-notebook broker lives in the root conftest.py.)

Each pytest-xdist worker is a session of its own: it gets its own brokers and ports."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def demo_app(broker):
    """demo_tasks.tasks, imported with REDIS_URL pointing at the session's broker.
    (An app keeps the connections it opened: re-pointing it later does not work.)"""
    os.environ["REDIS_URL"] = broker.url
    from demo_tasks import tasks

    assert tasks.app.conf.broker_url == broker.url, \
        "demo_tasks.tasks was imported before the demo_app fixture set REDIS_URL"
    yield tasks
    os.environ.pop("REDIS_URL", None)


@pytest.fixture(scope="session")
def retries_app(broker):
    """demo_tasks.retries (chapter 07), imported with REDIS_URL pointing at the session's
    broker. Every test module that uses it shares it: it can be imported only once."""
    os.environ["REDIS_URL"] = broker.url
    from demo_tasks import retries

    assert retries.app.conf.broker_url == broker.url, \
        "demo_tasks.retries was imported before the retries_app fixture set REDIS_URL"
    yield retries


@pytest.fixture(scope="session")
def workflows_app(broker):
    """demo_tasks.workflows (chapter 08), imported with REDIS_URL pointing at the session's
    broker. Every test module that uses it shares it: it can be imported only once."""
    os.environ["REDIS_URL"] = broker.url
    from demo_tasks import workflows

    assert workflows.app.conf.broker_url == broker.url, \
        "demo_tasks.workflows was imported before the workflows_app fixture set REDIS_URL"
    yield workflows


@pytest.fixture(scope="module")
def demo_worker(demo_app, broker):
    """A real `celery -A demo_tasks.tasks worker` process for one test module."""
    worker = launcher.start_worker("demo_tasks.tasks", broker=broker, fast=True)
    yield worker
    worker.cleanup()
