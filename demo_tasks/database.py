"""Chapter 12, scenario 10: database work in a long-lived Django worker.

Tasks of the course's Django project (``django_demo``) that a worker imports on
top of the project's own (``-I``: ``celery -A django_demo worker -I demo_tasks.database``),
so the project's other chapters keep their task list. ``@shared_task``: they bind to
the project's app, like the project's own tasks.

Each task asks the database server which of its processes serves this task's
connection (PostgreSQL's ``pg_backend_pid()``): a new number is a new connection.
Celery's Django fix-up (``celery/fixups/django.py``) closes the database
connections of the thread that runs the task (Django keeps one set per thread)
before and after each task, so a task never inherits a connection from the one
before it -- unless the project asks Celery to reuse connections
(``CELERY_DB_REUSE_MAX``). Another thread of the process (one it started itself)
and the worker's main process (its signal handlers) get nothing from the fix-up.
"""

from __future__ import annotations

import os
import threading

from celery import shared_task
from celery.signals import worker_process_init
from celery.utils.log import get_task_logger
from django.db import InterfaceError, OperationalError, connection

logger = get_task_logger(__name__)


def backend_pid(hold: float = 0.0) -> int:
    """One unit of database work: the server process serving this connection
    (PostgreSQL), after holding the connection busy for ``hold`` seconds."""
    with connection.cursor() as cursor:
        if hold:
            cursor.execute("SELECT pg_sleep(%s)", [hold])
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@shared_task
def database_work(hold: float = 0.0) -> dict:
    """A query (after ``hold`` seconds of another): which server process answered, in which worker process."""
    return {"backend": backend_pid(hold), "process": os.getpid()}


# The fix: a database error that a new connection can cure is retried, after a pause
# (the server may still be starting): 2, 4, 4, 4, 4 s, 18 s in all. Retrying is safe here
# because the work is read-only; a task that writes must be idempotent first (chapter 07).
@shared_task(bind=True, autoretry_for=(OperationalError, InterfaceError), max_retries=5,
             retry_backoff=2, retry_backoff_max=4, retry_jitter=False)
def database_work_retried(self, hold: float = 0.0) -> dict:
    """``database_work`` that retries when the database connection fails."""
    return {"backend": backend_pid(hold), "process": os.getpid(), "retries": self.request.retries}


# --- Code outside tasks: a thread of the worker's process ---------------------------

#: What the side thread saw: one entry per look, "backend PID" or the error.
_side_looks: list[str] = []
_side_wake = threading.Event()


def _side_thread() -> None:
    """Looks at the database whenever asked (``side_look``), from a thread of its own: Django
    gives it a connection of its own, which no task's fix-up ever closes."""
    while True:
        _side_wake.wait()
        _side_wake.clear()
        try:
            _side_looks.append(f"backend {backend_pid()}")
        except Exception as exc:  # what the thread sees is the point
            _side_looks.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}")


@worker_process_init.connect
def _start_side_thread(**_: object) -> None:
    threading.Thread(target=_side_thread, name="side-thread", daemon=True).start()


@shared_task
def side_look() -> list[str]:
    """Wake the process's side thread once, wait for its look; every look so far."""
    seen = len(_side_looks)
    _side_wake.set()
    for _ in range(100):
        if len(_side_looks) > seen:
            break
        threading.Event().wait(0.05)
    return list(_side_looks)
