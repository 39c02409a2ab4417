"""A task that does what a task must not, for test_eager_mode.py: it is not part of
the project (django_demo has no such task, on purpose). The worker process imports
it with ``--include anti_patterns``; the test process imports it from this folder.
"""

from celery import shared_task

from reports.tasks import heartbeat


@shared_task
def waits_for_another_task() -> str:
    """Sends a task and waits for its result inside a task: a worker that waits for
    a task only a worker can run may wait for ever (all its processes waiting).
    Celery refuses with RuntimeError("Never call result.get() within a task!")."""
    return heartbeat.delay().get(timeout=10)
