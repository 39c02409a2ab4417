"""The exercises' pytest set-up (chapter 11): Celery's pytest plugin, with the exercises' own app."""

import os

import pytest

# Celery 5.7 does not load its pytest plugin by itself: name it here.
pytest_plugins = ("celery.contrib.pytest",)


@pytest.fixture(scope="session")
def celery_app():
    """The app under test: exercise_tasks' own. (The plugin's default is a test app of its own:
    neither the tasks of exercise_tasks' app nor its settings are on it.)"""
    from exercise_tasks import app

    return app


@pytest.fixture(scope="session")
def celery_worker_parameters():
    """The worker in a thread listens to this file's queue only, and does not wait for
    celery.ping (a task the exercises' app does not have)."""
    return {"queues": (os.environ.get("EXERCISE_QUEUE", "ch11-exercises"),), "perform_ping_check": False}
