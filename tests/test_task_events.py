"""Chapter 08's event recorder (instruments.task_events) against a real worker.

The worker runs demo_tasks.retries (chapter 07's app: its `sleep`, `divide` and
`fetch_manual_retry` tasks) with task events on (-E), and imports
instruments.task_events (-I) so that its pool processes announce the tasks they
start. Times are checked only from below or against each other.
"""

from __future__ import annotations

import logging
import threading

import psutil
import pytest
from celery import Celery, group

import launcher
from instruments.task_events import (
    POOL_EVENT,
    THREAD_NAME,
    EventRecorder,
    RecorderError,
    TaskRecord,
    build_records,
    lanes,
)
from tests.helpers import UNREACHABLE_BROKER

#: Nothing listens on port 9 (discard) here: a connection is refused at once.
NOWHERE = "http://127.0.0.1:9/"


@pytest.fixture(scope="module")
def retries(retries_app, broker):
    broker.flush()  # this module's queues and results start empty
    yield retries_app


@pytest.fixture(scope="module")
def worker(retries, broker):
    w = launcher.start_worker("demo_tasks.retries", broker=broker, fast=True, concurrency=2,
                              extra_args=["-E", "-I", "instruments.task_events"])
    yield w
    w.cleanup()


def max_overlap(records) -> int:
    """The largest number of tasks running at one instant (a task ending at the
    instant another starts does not overlap it)."""
    edges = sorted([(r.started, 1) for r in records] + [(r.finished, -1) for r in records])
    running = peak = 0
    for _, step in edges:  # at equal times, -1 sorts first: ends before starts
        running += step
        peak = max(peak, running)
    return peak


def overlap(a: TaskRecord, b: TaskRecord) -> bool:
    return a.started < b.finished and b.started < a.finished


def test_a_group_of_four_sleeps_runs_two_at_a_time_on_the_two_pool_processes(retries, worker):
    with EventRecorder(retries.app) as recorder:
        result = group(retries.sleep.s(0.5) for _ in range(4)).apply_async()
        ids = [r.id for r in result.results]
        assert recorder.wait_for(ids, timeout=30)
    assert result.get(timeout=10) == [0.5] * 4

    records = recorder.tasks()
    assert set(records) == set(ids)  # nothing lost although the group was sent right after __enter__
    pool = {child.pid for child in psutil.Process(worker.pid).children()}
    assert len(pool) == 2
    for record in records.values():
        assert record.name == "demo_tasks.retries.sleep" and record.state == "SUCCESS"
        assert record.hostname.startswith("w1@")
        assert record.received <= record.started < record.finished
        assert record.finished - record.started >= 0.5 and record.runtime >= 0.5
        assert record.pid in pool  # the pool process, not the worker's main process

    # Celery's own task-started event names the main process, which publishes every
    # event; the pool process's own event (pool-task-started) names the one that ran it.
    events = recorder.events()
    assert {e["pid"] for e in events if e["type"] == "task-started"} == {worker.pid}
    assert sorted(e["uuid"] for e in events if e["type"] == POOL_EVENT) == sorted(ids)

    # Concurrency 2: never more than two at once, and the two processes did work side by side.
    assert max_overlap(records.values()) == 2
    for a in records.values():
        for b in records.values():
            if a is not b and overlap(a, b):
                assert a.pid != b.pid, (a, b)

    rows = lanes(records)
    assert sorted(rows.values()) == [0, 1]
    assert {pid for _, pid in rows} == pool


def test_failures_and_retries_are_recorded(retries, worker):
    with EventRecorder(retries.app) as recorder:
        failing = retries.divide.delay(1, 0)
        retried = retries.fetch_manual_retry.delay(NOWHERE, countdown=0.1)
        assert recorder.wait_for([failing.id, retried.id], timeout=30)
    records = recorder.tasks()

    assert records[failing.id].state == "FAILURE" and records[failing.id].retries == 0
    assert records[failing.id].received <= records[failing.id].started <= records[failing.id].finished

    # Three retries (max_retries=3), then the service's error is the task's.
    record = records[retried.id]
    assert (record.state, record.retries) == ("FAILURE", 3)
    kinds = [e["type"] for e in recorder.events() if e["uuid"] == retried.id]
    assert kinds.count("task-received") == kinds.count("task-started") == 4
    assert kinds.count("task-retried") == 3 and kinds.count("task-failed") == 1
    assert record.received <= record.started < record.finished


def test_the_thread_is_gone_after_exit_and_a_recorder_enters_again(retries, worker, capfd, caplog):
    caplog.set_level(logging.DEBUG)  # as a kernel whose logging shows everything
    recorder = EventRecorder(retries.app)
    with recorder:
        first = recorder.thread
        assert first.is_alive() and recorder.ready_after > 0
        done = retries.add.delay(1, 2)
        assert recorder.wait_for([done.id], timeout=30)
    assert not first.is_alive()

    with recorder:  # the same recorder again: a new thread, a new recording
        second = recorder.thread
        assert second is not first and recorder.events() == []
        again = retries.add.delay(3, 4)
        assert recorder.wait_for([again.id], timeout=30)
    assert not second.is_alive()
    assert list(recorder.tasks()) == [again.id] and recorder.tasks()[again.id].state == "SUCCESS"

    with EventRecorder(retries.app) as other, EventRecorder(retries.app) as another:  # side by side
        both = retries.add.delay(5, 6)
        assert other.wait_for([both.id], timeout=30) and another.wait_for([both.id], timeout=30)
    assert not [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME)]
    # The threads printed nothing and logged nothing (in a kernel, that would land in another cell).
    assert capfd.readouterr() == ("", "")
    assert sorted({(r.name, r.levelname) for r in caplog.records if r.threadName.startswith(THREAD_NAME)}) == []


def test_an_unreachable_broker_is_an_error_of_the_cell_not_of_the_thread():
    app = Celery("unreachable", broker=UNREACHABLE_BROKER, set_as_current=False)
    # https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-connection-timeout
    app.conf.broker_connection_timeout = 0.5  # fail in about 2 s, not 6
    with pytest.raises(RecorderError, match="could not reach the broker"), EventRecorder(app, ready_timeout=10):
        pass
    assert not [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME)]


def test_lanes_sort_hosts_then_processes_by_their_first_task():
    records = [
        TaskRecord("a", hostname="w2@vm", pid=10, started=1.0),
        TaskRecord("b", hostname="w1@vm", pid=30, started=5.0),
        TaskRecord("c", hostname="w1@vm", pid=20, started=6.0),
        TaskRecord("d", hostname="w1@vm", pid=30, started=2.0),
        TaskRecord("e", hostname="w1@vm", pid=None, started=0.5),  # received, never started
    ]
    assert lanes(records) == {("w1@vm", 30): 0, ("w1@vm", 20): 1, ("w2@vm", 10): 2}
    assert lanes({r.uuid: r for r in records}) == lanes(records)
    assert lanes([]) == {}


def test_build_records_folds_events_in_arrival_order():
    events = [
        {"type": "task-received", "uuid": "t", "name": "x.y", "hostname": "w1@vm", "pid": 1, "timestamp": 1.0},
        {"type": "task-started", "uuid": "t", "hostname": "w1@vm", "pid": 1, "timestamp": 2.0},
        {"type": POOL_EVENT, "uuid": "t", "hostname": "w1@vm", "pid": 7, "timestamp": 2.1},
        {"type": "task-succeeded", "uuid": "t", "hostname": "w1@vm", "pid": 1, "timestamp": 3.0, "runtime": 0.9},
        {"type": "task-received", "uuid": "u", "name": "x.z", "hostname": "w1@vm", "pid": 1, "timestamp": 4.0},
    ]
    assert build_records(events) == {
        "t": TaskRecord("t", name="x.y", hostname="w1@vm", pid=7, received=1.0, started=2.0, finished=3.0,
                        state="SUCCESS", runtime=0.9),
        "u": TaskRecord("u", name="x.z", hostname="w1@vm", received=4.0, state="RECEIVED"),
    }
