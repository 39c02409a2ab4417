"""Stops as Celery documents them, with a real worker in the middle of a task:
warm (the task finishes), cold (it is cancelled and lost), kill, and a warm
stop that escalates."""

from __future__ import annotations

import os
import socket

import pytest

import launcher
from launcher.procs import group_alive
from tests.helpers import script


@pytest.fixture
def busy_worker(demo_app, broker):
    """A worker that is running slow_add(1, 1, seconds=3) right now: (worker, result)."""
    name = f"busy{os.getpid()}"
    worker = launcher.start_worker("demo_tasks.tasks", broker=broker, fast=True, name=name)
    result = demo_app.slow_add.delay(1, 1, seconds=3)
    inspect = demo_app.app.control.inspect(destination=[f"{name}@{socket.gethostname()}"], timeout=1)

    def running_it() -> bool:
        active = inspect.active() or {}
        return any(task["id"] == result.id for tasks in active.values() for task in tasks)

    assert launcher.wait_for(running_it, 30, interval=0.05), worker.tail(20)
    yield worker, result
    worker.cleanup()


def queued(broker) -> int:
    with broker.client() as conn:
        return conn.llen("celery")


def test_warm_stop_lets_the_running_task_finish_and_store_its_result(busy_worker):
    worker, result = busy_worker
    pgid = worker.pid
    worker.stop()  # warm is the default
    assert worker.stopped_by == "SIGTERM", worker.tail(20)
    assert "worker: Warm shutdown (MainProcess)" in worker.log()
    assert not group_alive(pgid)
    # The worker finished the task before it exited: its result is already stored.
    assert result.state == "SUCCESS" and result.get(timeout=1) == 2


def test_cold_stop_loses_the_running_task(busy_worker, broker):
    worker, result = busy_worker
    pgid = worker.pid
    worker.stop("cold")
    assert worker.stopped_by == "SIGQUIT", worker.tail(20)
    assert "worker: Cold shutdown (MainProcess)" in worker.log()
    assert not group_alive(pgid)
    # Celery cancels the running task and records RETRY ("cancelled by Celery")...
    assert result.state == "RETRY"
    # ... but nothing will ever retry it: the message was acknowledged when the
    # task started (Celery's default, early ack), so it is not back in the queue
    # and not waiting to be redelivered. The task is lost.
    assert queued(broker) == 0
    with broker.client() as conn:
        # (Only this task's message: the broker is shared with the process's other tests.)
        assert not [m for m in conn.hvals("unacked") if result.id.encode() in m]


def test_kill_ends_the_whole_group_at_once(busy_worker, broker):
    worker, result = busy_worker
    pgid = worker.pid
    worker.stop("kill")
    assert worker.stopped_by == "SIGKILL"
    assert "Warm shutdown" not in worker.log() and "Cold shutdown" not in worker.log()
    assert not group_alive(pgid)
    assert result.state == "PENDING"


def test_a_warm_stop_that_takes_too_long_escalates_to_cold(busy_worker):
    worker, result = busy_worker
    worker.stop(timeout=0.5)  # the task needs about 3 s more
    assert worker.stopped_by == "SIGQUIT"
    log = worker.log()
    assert log.index("Warm shutdown") < log.index("Cold shutdown")
    assert result.state == "RETRY"  # cancelled by the cold shutdown, as above


def test_stop_refuses_an_unknown_mode(broker):
    proc = script("import time; time.sleep(60)")
    try:
        with pytest.raises(ValueError, match="mode must be one of"):
            proc.stop("gentle")
    finally:
        proc.stop()
    assert proc.stopped_by == "SIGTERM"
