"""Fixtures that start real processes: brokers on free ports and workers.
(The per-notebook broker lives in the root conftest.py.)"""

from __future__ import annotations

import pytest

import launcher


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


@pytest.fixture(scope="module")
def demo_worker(module_broker, monkeypatch_module):
    """A real `celery -A demo_tasks.tasks worker` process, and the app pointed at its broker."""
    monkeypatch_module.setenv("REDIS_URL", module_broker.url)
    from demo_tasks.tasks import app

    app.conf.broker_url = app.conf.result_backend = module_broker.url
    worker = launcher.start_worker("demo_tasks.tasks", broker=module_broker, fast=True)
    yield worker
    worker.cleanup()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()
