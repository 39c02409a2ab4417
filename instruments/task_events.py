"""Chapter 08: record a worker's task events, to draw who ran which task when.

A worker started with ``-E`` (``--task-events``) publishes an event at each step
of a task: ``task-received``, ``task-started``, then ``task-succeeded``,
``task-failed`` or ``task-retried``. ``celery events`` and Flower listen to the
same stream. ``EventRecorder`` listens in a background thread while a cell runs::

    worker = launcher.start_worker("demo_tasks.workflows", extra_args=["-E", "-I", "instruments.task_events"])
    with EventRecorder(app) as recorder:          # returns once it really listens
        result = group(sleep.s(0.5) for _ in range(4)).apply_async()
        recorder.wait_for([r.id for r in result.results], timeout=30)
    records = recorder.tasks()                    # {uuid: TaskRecord(name, hostname, pid, times, state)}
    rows = lanes(records.values())                # {(hostname, pid): row of the drawing}

Which *process* ran a task: Celery's own events do not say. Every event is
published by the worker's main process, so the ``pid`` of ``task-started`` is
that process, whatever pool process ran the task (measured with Celery 5.7 and
the prefork pool). The pool process itself knows: when a worker imports this
module (``-I instruments.task_events``, Celery's ``--include``), each pool
process announces every task it starts with one more event, ``pool-task-started``,
whose ``pid`` is its own. (Not a ``task-`` event on purpose: Flower would take
``task-pool...`` for a new task state.)

Events travel through the broker as publish/subscribe messages (with Redis, a
PUBLISH on a channel): nobody keeps them for a listener that was not
subscribed yet. So ``__enter__`` does not trust a sleep. It sends probe events
of its own, every 20 ms, until its thread receives one: from then on, every
event published after that probe reaches the recorder too. (Waiting until the
consumer is declared is not enough: kombu subscribes a Redis channel only
when it first polls the connection; a worker heartbeat needs a worker, and
``--without-heartbeat`` turns those off.)

The thread never prints: in a Jupyter kernel, a thread's output lands in
whatever cell runs at that moment. Its errors are kept and raised by
``__enter__``/``__exit__`` in the cell that owns the recorder.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from celery.events.state import TASK_EVENT_TO_STATE
from celery.signals import task_prerun

#: The event a pool process sends when it starts a task (see the module's docstring).
POOL_EVENT = "pool-task-started"
#: The recorder's own probe events; never recorded.
PROBE_EVENT = "recorder-probe"
#: Task states after which nothing more happens to a task (task-retried is not one:
#: the task comes back with the same id).
FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED", "REJECTED"})

#: How often the thread checks whether it was asked to stop (seconds): the longest
#: ``__exit__`` waits for it, and how often an idle recorder wakes up.
POLL_INTERVAL = 0.1
#: How often ``__enter__`` sends a probe while it waits for the thread to listen.
PROBE_INTERVAL = 0.02
THREAD_NAME = "celery-event-recorder"


# --- The pool process's own event -------------------------------------------------------

def _announce_pool_process(sender=None, task_id=None, task=None, **kwargs) -> None:
    """task_prerun runs in the process that runs the task (a prefork pool process):
    tell the event stream its pid. Connected when a worker imports this module."""
    if task is None or task.request.is_eager or not task.request.hostname:
        return  # apply() in a notebook or a test: not a worker, nobody to tell
    try:
        # Task.send_event: a dispatcher created here, so its pid is this process's.
        # retry=False: a lost event must never hold up the task it describes.
        task.send_event(POOL_EVENT, retry=False)
    except Exception:  # an event is best effort: the task runs anyway
        logging.getLogger(__name__).warning("could not send %s for task %s", POOL_EVENT, task_id, exc_info=True)


# weak=False: the handler lives as long as the process; dispatch_uid: connected once.
task_prerun.connect(_announce_pool_process, weak=False, dispatch_uid="instruments.task_events.pool")


# --- The recorder -------------------------------------------------------------------------

@dataclass
class TaskRecord:
    """One task as the events tell it. Times are epoch seconds (the worker's clock), or None."""

    uuid: str
    name: str | None = None
    hostname: str | None = None
    #: The pool process that ran it (pool-task-started), else the pid of task-started.
    pid: int | None = None
    received: float | None = None
    started: float | None = None
    finished: float | None = None
    #: The latest state: RECEIVED, STARTED, RETRY, SUCCESS, FAILURE, ...
    state: str | None = None
    #: Seconds the task body took, as the worker measured it (task-succeeded).
    runtime: float | None = None
    retries: int = 0


class RecorderError(RuntimeError):
    """The recorder could not start listening, or stopped listening too early."""


class _QuietInThread(logging.Filter):
    """Drops the log lines of recorder threads: kombu's "Connected to ..." (INFO),
    redis-py's notes on the connection (DEBUG). In a kernel whose logging shows
    them, they would appear in whatever cell runs at that moment."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.threadName.startswith(THREAD_NAME)


#: The loggers the thread's code paths use. (A logger's filter sees only its own
#: records, so each is named; tests/test_task_events.py checks at DEBUG that none is missing.)
THREAD_LOGGERS = ("kombu.mixins", "kombu.connection", "kombu.transport.redis", "redis.connection", "redis.client")
_QUIET = _QuietInThread()
for _name in THREAD_LOGGERS:
    logging.getLogger(_name).addFilter(_QUIET)  # a no-op when already there


class EventRecorder:
    """Records the task events of ``app``'s workers while the ``with`` block runs.

    Each ``with`` starts a new recording (the events of the previous one are dropped).
    """

    def __init__(self, app, *, ready_timeout: float = 10.0, stop_timeout: float = 5.0):
        self.app = app
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.thread: threading.Thread | None = None
        #: Seconds __enter__ took until the thread was proven to listen (measured).
        self.ready_after: float | None = None
        self._changed = threading.Condition()
        self._events: list[dict] = []
        self._token = ""
        self._ready = False
        self._error: BaseException | None = None
        self._receiver = None
        self._stopping = False

    # --- starting and stopping ---------------------------------------------------------

    def __enter__(self) -> EventRecorder:
        if self.thread is not None and self.thread.is_alive():
            raise RuntimeError("this EventRecorder is already recording")
        with self._changed:
            self._events, self._ready, self._error, self._receiver = [], False, None, None
            self._stopping = False
            self._token = uuidlib.uuid4().hex
        started = time.monotonic()
        self.thread = threading.Thread(target=self._run, name=f"{THREAD_NAME}-{self._token[:8]}", daemon=True)
        self.thread.start()
        try:
            self._wait_until_listening(started + self.ready_timeout)
        except BaseException:
            self._stop()
            raise
        self.ready_after = time.monotonic() - started
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        stopped = self._stop()
        if exc_type is not None:
            return  # the block's own error matters more
        if not stopped:
            raise RecorderError(f"the event recorder's thread did not stop within {self.stop_timeout:g} s")
        if self._error is not None:
            raise RecorderError(f"the event recorder stopped listening early: {self._error!r}; "
                               "events after that were not recorded") from self._error

    def _stop(self) -> bool:
        """Ask the thread to stop and wait for it; True if it is gone."""
        with self._changed:
            self._stopping = True
            if self._receiver is not None:
                # Checked by kombu's consume loop at least every POLL_INTERVAL.
                self._receiver.should_stop = True
            self._ready = False
            self._changed.notify_all()
        if self.thread is None:
            return True
        self.thread.join(self.stop_timeout)
        return not self.thread.is_alive()

    def _wait_until_listening(self, deadline: float) -> None:
        # Probes go out on a connection of their own (kombu connections are not
        # thread-safe), from a dispatcher that raises instead of buffering silently.
        with self.app.connection_for_write() as conn:
            dispatcher = None
            try:
                dispatcher = self.app.events.Dispatcher(
                    conn, hostname=f"event-recorder@{socket.gethostname()}", enabled=True,
                    buffer_while_offline=False)
                while not self._check_listening(deadline):
                    # Sent without the lock: the thread's handler takes it to note the probe.
                    dispatcher.send(PROBE_EVENT, recorder=self._token)
                    with self._changed:
                        if not self._ready:
                            self._changed.wait(max(0.0, min(PROBE_INTERVAL, deadline - time.monotonic())))
            except RecorderError:
                raise
            except Exception as exc:
                raise RecorderError(f"the event recorder could not reach the broker: {exc}") from exc
            finally:
                if dispatcher is not None:
                    dispatcher.close()

    def _check_listening(self, deadline: float) -> bool:
        """True once the thread received our probe; raises if it never will."""
        with self._changed:
            if self._ready:
                return True
            if self._error is not None:
                raise RecorderError(f"the event recorder could not listen: {self._error}") from self._error
            if not self.thread.is_alive():
                raise RecorderError("the event recorder's thread ended before it listened")
            if time.monotonic() >= deadline:
                raise RecorderError(f"the event recorder did not receive its own probe event within "
                                    f"{self.ready_timeout:g} s: is the broker reachable?")
            return False

    def _run(self) -> None:
        """The thread: consume events until should_stop. Never prints; errors are kept."""
        try:
            with self.app.connection_for_read() as conn:
                receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
                # No reconnecting behind the cell's back (kombu would retry forever,
                # logging a warning each time): a lost connection ends the recording.
                receiver.connect_max_retries = 0
                receiver.on_connection_error = self._on_connection_error
                receiver.on_decode_error = self._on_decode_error
                with self._changed:
                    self._receiver = receiver
                    receiver.should_stop = self._stopping  # __enter__ may have given up already
                # wakeup=False: no 'heartbeat' broadcast to the workers; the probes prove we listen.
                for _ in receiver.consume(limit=None, timeout=None, safety_interval=POLL_INTERVAL, wakeup=False):
                    pass
        except BaseException as exc:  # kept for the cell that owns the recorder: a thread must not print
            with self._changed:
                self._error = exc
                self._changed.notify_all()

    def _on_connection_error(self, exc, interval) -> None:
        with self._changed:
            self._error = exc

    def _on_decode_error(self, message, exc) -> None:
        with self._changed:
            self._error = exc

    def _on_event(self, event: dict) -> None:
        kind = event.get("type", "")
        with self._changed:
            if kind == PROBE_EVENT:
                if event.get("recorder") == self._token:
                    self._ready = True
            elif kind.startswith("task-") or kind == POOL_EVENT:
                self._events.append(dict(event))
            else:
                return  # worker-heartbeat, worker-online, ...: not what a timeline needs
            self._changed.notify_all()

    # --- what was recorded ---------------------------------------------------------------

    def events(self) -> list[dict]:
        """A copy of the task events received so far, in arrival order."""
        with self._changed:
            return [dict(e) for e in self._events]

    def tasks(self) -> dict[str, TaskRecord]:
        """One record per task id, built from the events received so far."""
        return build_records(self.events())

    def wait_for(self, uuids: Iterable[str], timeout: float) -> bool:
        """Wait until each task in ``uuids`` has finished (SUCCESS, FAILURE, REVOKED,
        REJECTED), and, on a worker whose pool processes announce themselves, until
        its pool-task-started event is in too (it travels apart from the others).
        False on timeout."""
        wanted = set(uuids)
        deadline = time.monotonic() + timeout

        def done() -> bool:
            records = build_records(self._events)
            announced = {e["uuid"] for e in self._events if e.get("type") == POOL_EVENT}
            announcing = {e.get("hostname") for e in self._events if e.get("type") == POOL_EVENT}
            return all(u in records and records[u].state in FINAL_STATES
                       and (records[u].hostname not in announcing or u in announced) for u in wanted)

        with self._changed:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0 or self._error is not None:
                    return False
                self._changed.wait(left)
            return True


def build_records(events: Iterable[Mapping]) -> dict[str, TaskRecord]:
    """Fold task events (in arrival order) into one TaskRecord per task id."""
    records: dict[str, TaskRecord] = {}
    pool_pids: dict[str, int] = {}
    for event in events:
        task_id = event.get("uuid")
        kind = event.get("type", "")
        if not task_id:
            continue
        if kind == POOL_EVENT:
            pool_pids[task_id] = event.get("pid")
            continue
        if not kind.startswith("task-"):
            continue
        record = records.setdefault(task_id, TaskRecord(uuid=task_id))
        record.hostname = event.get("hostname") or record.hostname
        record.name = event.get("name") or record.name
        stamp = event.get("timestamp")
        subject = kind[len("task-"):]
        state = TASK_EVENT_TO_STATE.get(subject)
        if state is not None:
            record.state = state
        if subject == "received" and record.received is None:
            record.received = stamp
        elif subject == "started":
            record.started = record.started if record.started is not None else stamp
            record.pid = record.pid if record.pid is not None else event.get("pid")
        elif subject == "retried":
            record.retries += 1
        if state in FINAL_STATES:
            record.finished = stamp
            record.runtime = event.get("runtime", record.runtime)
    for task_id, pid in pool_pids.items():
        if task_id in records and pid is not None:
            records[task_id].pid = pid
    return records


def lanes(tasks: Iterable[TaskRecord] | Mapping[str, TaskRecord]) -> dict[tuple[str, int], int]:
    """A row index for each (hostname, pid) that ran a task: sorted by host name,
    then by when the process first started a task (so a drawing reads top-down in time)."""
    records = tasks.values() if isinstance(tasks, Mapping) else tasks
    first: dict[tuple[str, int], float] = {}
    for record in records:
        if record.hostname is None or record.pid is None:
            continue
        key = (record.hostname, record.pid)
        start = record.started if record.started is not None else float("inf")
        first[key] = min(first.get(key, float("inf")), start)
    ordered = sorted(first, key=lambda key: (key[0], first[key], key[1]))
    return {key: row for row, key in enumerate(ordered)}


__all__ = ["FINAL_STATES", "POOL_EVENT", "EventRecorder", "RecorderError", "TaskRecord", "build_records", "lanes"]
