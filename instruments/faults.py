"""Chapter 12: inject a fault into real Celery processes and count every task.

A scenario sends ``n`` tasks of ``demo_tasks.reliability.work`` to a real
worker, waits until ``k`` of them are running (the ledger says so: never a
sleep), does one thing to the worker (a kill, a shutdown), lets the system
settle (a fresh worker, when the first one is gone, takes what is left), and
counts from the ledger, for every task sent, how many times it started and
finished::

    run = run_scenario("早确认 + 整组 SIGKILL", KILL_GROUP)
    run.counts()   # {"sent": 4, "once": 2, "twice": 0, "lost": 2}
    run.lost == run.running_at_fault

Every scenario gets a Valkey of its own (``launcher.start_embedded()``),
stopped at the end, so a kill, a restart or a queue left full never reaches
the chapter's broker; its settings reach the workers on their command line
(``-- task.acks_late=true``), so each worker's ``display`` shows them.

Two scenarios use the course's Django project instead: ``database_restarts`` (a PostgreSQL
of its own, launcher.postgres, stopped under a worker) and ``report_killed`` (chapter 05's
report page in Chromium, its worker SIGKILLed mid-report).

A chapter runs them all in one other process while its learner reads (``Background``:
``python -m instruments.faults SCENARIO...`` writes one JSON result per scenario).

"Settled" is a condition, not a time: the queue and Redis's unacknowledged
messages are empty, and no living worker holds (``inspect reserved``) or runs
(``inspect active``) a task -- twice in a row, a poll apart, since a message
moving from one place to the next is briefly in none of them.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from celery import Celery

import launcher
from demo_tasks import reliability
from instruments.tables import Measured, Table
from launcher.scratch import current_scratch

APP = "demo_tasks.reliability"
#: Celery's default queue, and where kombu's Redis transport keeps what is taken but unacknowledged.
QUEUE = "celery"
UNACKED = "unacked"
#: How long a scenario waits for the system to settle after the fault: the visibility
#: timeout plus time to run what comes back.
SETTLE_TIMEOUT = reliability.VISIBILITY_TIMEOUT + 30


class ScenarioError(RuntimeError):
    """A scenario could not get where it had to (never started k tasks, never settled)."""


@dataclass(frozen=True)
class Fault:
    """What is done to the worker once ``k`` tasks run: ``label`` says it (in the
    table), ``apply(worker)`` does it and returns when its effect is over."""

    label: str
    #: Does it; returns the tasks it hit when it knows them (a pool child's), else None:
    #: then the tasks hit are those running at the fault that had not finished when the worker was gone.
    apply: Callable[[launcher.Proc, Ledger], list[str] | None]
    #: Does the worker survive it (a pool child killed) -- else a fresh worker settles the rest.
    worker_survives: bool = False


def _kill_group(worker: launcher.Proc, ledger: Ledger) -> None:
    worker.send_signal(signal.SIGKILL, group=True)
    worker.popen.wait(10)


def _kill_main(worker: launcher.Proc, ledger: Ledger) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.popen.wait(10)


def _kill_child(worker: launcher.Proc, ledger: Ledger) -> list[str]:
    """SIGKILL the pool process running the first running task (the OOM killer picks one process)."""
    task_id, pid = next(iter(ledger.pids_running().items()))
    os.kill(pid, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(pid)], timeout=10) if psutil.pid_exists(pid) else None
    return [task_id]


def _shutdown(sig: int) -> Callable[[launcher.Proc, Ledger], None]:
    def apply(worker: launcher.Proc, ledger: Ledger) -> None:
        worker.send_signal(sig)
        worker.popen.wait(60)
    return apply


def _runtime_stop(grace: float) -> Callable[[launcher.Proc, Ledger], None]:
    """A container runtime's stop: SIGTERM to the main process, SIGKILL to all after ``grace`` s."""
    def apply(worker: launcher.Proc, ledger: Ledger) -> None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.popen.wait(grace)
        except subprocess.TimeoutExpired:  # the grace is over
            worker.send_signal(signal.SIGKILL, group=True)
            worker.popen.wait(10)
    return apply


#: The worker's whole process group SIGKILLed: `docker kill`, a cgroup's OOM kill, `kill -9 -PGID`.
KILL_GROUP = Fault("整组 SIGKILL", _kill_group)
#: Only the main process SIGKILLed (`kill -9 PID`); on Linux its pool children die with it.
KILL_MAIN = Fault("主进程 SIGKILL", _kill_main)
#: Warm shutdown: SIGTERM to the main process (`celery control shutdown`, Ctrl+C once).
WARM = Fault("SIGTERM（温关闭）", _shutdown(signal.SIGTERM))
#: Cold shutdown: SIGQUIT to the main process.
COLD = Fault("SIGQUIT（冷关闭）", _shutdown(signal.SIGQUIT))
#: One pool process SIGKILLed under a living main process: what the OOM killer does to the biggest process.
KILL_CHILD = Fault("子进程 SIGKILL", _kill_child, worker_survives=True)


def runtime_stop(grace: float) -> Fault:
    """`docker stop -t GRACE` / Kubernetes' terminationGracePeriodSeconds: SIGTERM, then SIGKILL."""
    return Fault(f"SIGTERM，{grace:g} 秒后整组 SIGKILL", _runtime_stop(grace))


@dataclass
class Run:
    """One scenario, run: what was sent and what the ledger says happened to each task."""

    title: str
    fault: str
    settings: tuple[str, ...]
    sent: list[str]
    #: The tasks that had started and not finished when the fault came.
    running_at_fault: list[str]
    #: The tasks the fault hit: running in a process it killed, or cancelled by it.
    hit: list[str]
    started: dict[str, int]
    finished: dict[str, int]
    #: The state the result backend holds for each task ("" when it holds none).
    states: dict[str, str]
    #: The workers' commands, as a learner types them, and their logs.
    commands: list[str] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)
    #: What else the scenario observed (e.g. whether the pool children outlived their parent).
    notes: dict[str, object] = field(default_factory=dict)
    #: Every step the ledger recorded ({"id", "step", "pid", "t"}), in order.
    steps: list[dict] = field(default_factory=list)

    def restart_gaps(self) -> dict[str, float]:
        """For each task that started again: seconds from its first start to its second."""
        starts: dict[str, list[float]] = {}
        for step in self.steps:
            if step["step"] == "started":
                starts.setdefault(step["id"], []).append(step["t"])
        return {t: times[1] - times[0] for t, times in starts.items() if len(times) >= 2}

    def _with(self, finishes: Callable[[int], bool]) -> list[str]:
        return [t for t in self.sent if finishes(self.finished.get(t, 0))]

    @property
    def once(self) -> list[str]:
        return self._with(lambda n: n == 1)

    @property
    def twice(self) -> list[str]:
        return self._with(lambda n: n >= 2)

    @property
    def lost(self) -> list[str]:
        return self._with(lambda n: n == 0)

    @property
    def rerun(self) -> list[str]:
        """Tasks that started more than once: whatever they did before the fault, they did again."""
        return [t for t in self.sent if self.started.get(t, 0) >= 2]

    def counts(self) -> dict[str, int]:
        return {"sent": len(self.sent), "once": len(self.once), "twice": len(self.twice),
                "lost": len(self.lost), "rerun": len(self.rerun)}

    def row(self) -> list[object]:
        """The summary table's row: 场景, 设置, 故障, 发出, 完成一次, 完成两次, 丢失, 重新执行."""
        c = self.counts()
        return [self.title, " ".join(self.settings) or "（默认）", self.fault,
                c["sent"], c["once"], c["twice"], c["lost"], c["rerun"]]

    def state_counts(self) -> dict[str, int]:
        """How many tasks the result backend holds in each state ("无记录" when none)."""
        out: dict[str, int] = {}
        for t in self.sent:
            state = self.states.get(t) or "无记录"
            out[state] = out.get(state, 0) + 1
        return dict(sorted(out.items()))


#: The summary table's headers (Run.row()).
HEADERS = ["场景", "设置", "故障", "发出", "完成一次", "完成两次", "丢失", "重新执行"]


def table(runs: Sequence[Run], *, states: bool = False, caption: str | None = None) -> Table:
    """The runs as a table (``states``: with what the result backend holds for them)."""
    headers = HEADERS + (["结果后端里的状态"] if states else [])
    rows = [run.row() + ([" ".join(f"{k} {v}" for k, v in run.state_counts().items())] if states else [])
            for run in runs]
    return Table(headers, rows, caption=caption)


def verdicts(runs: Sequence[Run]) -> None:
    """Print, for each run, whether the lost tasks are exactly those the fault hit; where none was
    lost, whether the re-run ones are."""
    for run in runs:
        if run.lost:
            said = f"丢失的 {len(run.lost)} 个正是故障打中的任务：{sorted(run.lost) == sorted(run.hit)}"
        elif run.rerun:
            same = sorted(run.rerun) == sorted(run.hit)
            said = f"一个也没丢；重新执行的 {len(run.rerun)} 个正是故障打中的任务：{same}"
        else:
            said = "一个也没丢，也没有任务重新执行"
        print(f"{run.title}：{said}")


def log_lines(text: str, *needles: str) -> str:
    """The lines of a worker's log that contain one of ``needles``, paths relative; a file of an
    installed package named from the package on (``kombu/transport/redis.py``), wherever it is."""
    import re

    from launcher.shown import relative_paths

    lines = (re.sub(r'[^\s"]*site-packages/', '', line) for line in relative_paths(text).splitlines())
    return "\n".join(line for line in lines if any(n in line for n in needles))


class Ledger:
    """The ledger demo_tasks.reliability.work writes, read on a scenario's broker."""

    def __init__(self, broker: launcher.Broker):
        self.client = broker.client(timeout=5, decode_responses=True)

    def started(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.client.hgetall(reliability.STARTED_KEY).items()}

    def finished(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.client.hgetall(reliability.FINISHED_KEY).items()}

    def steps(self) -> list[dict]:
        return [json.loads(s) for s in self.client.lrange(reliability.STEPS_KEY, 0, -1)]

    def running(self) -> list[str]:
        """Tasks started more often than finished, in the order they started."""
        started, finished = self.started(), self.finished()
        order = [s["id"] for s in self.steps() if s["step"] == "started"]
        return list(dict.fromkeys(t for t in order if started.get(t, 0) > finished.get(t, 0)))

    def pids_running(self) -> dict[str, int]:
        """The pid of the process running each running task (its latest start)."""
        pids = {s["id"]: s["pid"] for s in self.steps() if s["step"] == "started"}
        return {t: pids[t] for t in self.running()}

    def queued(self) -> int:
        return self.client.llen(QUEUE)

    def unacked(self) -> int:
        return self.client.hlen(UNACKED)

    def state(self, task_id: str) -> str:
        meta = self.client.get(f"celery-task-meta-{task_id}")
        return json.loads(meta)["status"] if meta else ""

    def close(self) -> None:
        self.client.close()


def worker_args(settings: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """A worker's extra arguments: options, then the settings after ``--``."""
    return [*extra, *(["--", *settings] if settings else [])]


def start_worker(broker: launcher.Broker, name: str, settings: Sequence[str] = (), *,
                 concurrency: int = 2, extra: Sequence[str] = (), env: dict[str, str] | None = None) -> launcher.Proc:
    return launcher.start_worker(APP, name=name, broker=broker, fast=True, concurrency=concurrency,
                                 extra_args=worker_args(settings, extra), env=env)


def wait_running(ledger: Ledger, k: int, worker: launcher.Proc, timeout: float = 30) -> list[str]:
    """Wait until ``k`` tasks run at once (started, not finished); return them."""
    running: list[str] = []

    def enough() -> bool:
        running[:] = ledger.running()
        return len(running) >= k

    worker.wait_until(enough, timeout, waiting_for=f"{k} tasks running at once")
    return running


def settled(ledger: Ledger, sender: Celery, workers: Sequence[launcher.Proc], queue_only: bool = False) -> bool:
    """Nothing queued, nothing taken-but-unacknowledged, nothing held or run by a living worker
    (``queue_only``: Redis's unacknowledged messages not counted -- another worker holds some on purpose)."""
    if ledger.queued() or (ledger.unacked() and not queue_only):
        return False
    alive = [w for w in workers if w.running()]
    if not alive:
        return True
    # limit: return as soon as every living worker answered (else inspect waits its whole timeout).
    nodes = [node_name(w) for w in alive]
    inspect = sender.control.inspect(destination=nodes, timeout=2.0, limit=len(nodes))
    try:
        replies = (inspect.active(), inspect.reserved())
    except launcher.connection_errors(sender):
        return False  # a connection pooled before the broker restarted: the next poll makes a new one
    return all(reply is not None and len(reply) == len(nodes) and not any(reply.values()) for reply in replies)


def node_name(worker: launcher.Proc) -> str:
    """The worker's node name (``w1@host``), from its process name ``worker-w1``."""
    return f"{worker.name.removeprefix('worker-')}@{socket.gethostname()}"


def wait_settled(ledger: Ledger, sender: Celery, workers: Sequence[launcher.Proc],
                 timeout: float = SETTLE_TIMEOUT, queue_only: bool = False) -> None:
    in_a_row = [0]

    def twice() -> bool:
        in_a_row[0] = in_a_row[0] + 1 if settled(ledger, sender, workers, queue_only) else 0
        return in_a_row[0] >= 2

    if not launcher.wait_for(twice, timeout, interval=0.2):
        raise ScenarioError(
            f"The scenario did not settle within {timeout:g} s: {ledger.queued()} queued, "
            f"{ledger.unacked()} unacknowledged, running {ledger.running()}. "
            "Is a worker still alive and consuming? The workers' logs:\n"
            + "\n".join(w.tail(10) for w in workers))


def tear_down(workers: Sequence[launcher.Proc], *started: object, folder: Path | None = None) -> None:
    """The end of every scenario, whatever happened in it: its workers first (side by side, warm,
    while their brokers still run), then each of ``started`` in the order given -- a ledger or an
    app is closed, a broker or a server stopped; None stands for what never started -- then its
    data folder is removed."""
    launcher.stop_together(workers)
    for thing in started:
        if thing is not None:
            (thing.close if isinstance(thing, (Ledger, Celery)) else thing.stop)()
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def run_scenario(title: str, fault: Fault, *, settings: Sequence[str] = (), n: int = 4,
                 seconds: float = 1.0, k: int = 2, concurrency: int = 2,
                 env: dict[str, str] | None = None, timeout: float = 30) -> Run:
    """Send ``n`` tasks of ``seconds`` each to a worker with ``settings``; once ``k`` run,
    apply ``fault``; settle (a fresh worker with the same settings takes over unless
    the first survives); count. ``env``: variables for the first worker (``REMAP_SIGTERM``).
    Everything it started is stopped, on errors too."""
    if not 1 <= k <= min(n, concurrency):
        raise ValueError(f"k={k} tasks can never run at once with n={n} tasks sent to a worker of "
                         f"concurrency={concurrency}: choose 1 <= k <= min(n, concurrency).")
    broker = launcher.start_embedded()
    sender = Celery(APP, broker=broker.url, backend=broker.url, set_as_current=False)
    ledger = Ledger(broker)
    workers: list[launcher.Proc] = []
    try:
        workers.append(start_worker(broker, "w1", settings, concurrency=concurrency, env=env))
        first = workers[0]
        sent = [sender.send_task(reliability.work.name, args=(seconds,)).id for _ in range(n)]
        running = wait_running(ledger, k, first, timeout)
        children = first.children()
        mark = first.mark()
        hit = fault.apply(first, ledger)
        if hit is None:
            finished = ledger.finished()
            hit = [t for t in running if not finished.get(t)]
        notes: dict[str, object] = {}
        if not fault.worker_survives:
            # Did the pool children outlive their parent? (On Linux they get SIGKILL with it.)
            notes["children_alive"] = launcher.wait_for(lambda: not _any_alive(children), 5) is False
            # How it ended: 0 when it shut down by itself, -9 when SIGKILL ended it.
            notes["exit_code"] = first.popen.returncode
            workers.append(start_worker(broker, "w2", settings, concurrency=concurrency))
        wait_settled(ledger, sender, workers)
        return Run(title, fault.label, tuple(settings), sent, running, hit, ledger.started(), ledger.finished(),
                   {t: ledger.state(t) for t in sent}, [w.display for w in workers],
                   {node_name(w).split('@')[0]: w.log(mark if w is first else 0) for w in workers}, notes,
                   ledger.steps())
    finally:
        tear_down(workers, ledger, sender, broker)


def side_by_side(*calls: Callable[[], object]) -> list:
    """Run scenarios at the same time, each in a thread of its own (each has its own
    Valkey and workers, so they cannot meet), and return their results in order.
    Each thread starts and stops its own processes (launcher.procs: a process started
    from a thread gets SIGTERM when that thread ends, so nothing outlives its scenario)."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


class Background:
    """Scenarios started at once in ONE other process (``python -m instruments.faults``), a few
    at a time, in the order given, while the caller goes on; ``results(*calls)`` waits for
    those it names. A chapter starts all of its scenarios in its preparation and each section
    collects its own: the whole chapter takes about as long as a few scenarios, not all of them
    one after the other. Another process, not threads of a Jupyter kernel: the scenarios start,
    kill and stop dozens of processes and connections, which a kernel's own sockets must never
    share a process with. That process is a launcher.Proc: ``launcher.stop_all()`` (a chapter
    prepared again, the kernel's end) stops it, and it stops everything it started."""

    def __init__(self, *calls: Callable[[], object], threads: int = 4):
        self.names = [call.__name__ for call in calls]
        unknown = [name for name in self.names if globals().get(name) is not calls[self.names.index(name)]]
        if unknown:
            raise ValueError(f"not scenarios of instruments.faults: {', '.join(unknown)}")
        # In a folder of its own (launcher.Proc's), where it writes one SCENARIO.json per result.
        self.proc = launcher.Proc("scenarios", [sys.executable, "-m", "instruments.faults", "--threads",
                                                str(threads), *self.names])
        self.folder = self.proc.workdir

    def results(self, *calls: Callable[[], object], timeout: float = 300) -> list:
        """The results of ``calls`` (waiting for them); a scenario's error is raised here."""
        missing = [call.__name__ for call in calls if call.__name__ not in self.names]
        if missing:
            raise KeyError(f"not started in the background: {', '.join(missing)}")
        files = [self.folder / f"{call.__name__}.json" for call in calls]
        self.proc.wait_until(lambda: all(f.exists() for f in files), timeout,
                             waiting_for=f"the results of {', '.join(c.__name__ for c in calls)}")
        return [_load(f) for f in files]

    def cancel(self) -> None:
        """Stop the scenarios (and every process they started)."""
        self.proc.stop()


#: The results a scenario can return, by class name (what the background process writes).
def _result_types() -> dict[str, type]:
    return {cls.__name__: cls for cls in (Run, PrefetchRun, SendRun, BackendRun, MemoryRun, DatabaseRun, ReportRun)}


def _dump(result: object, path: Path) -> None:
    """Write a scenario's result (a dataclass) as JSON, atomically: a reader never sees half a file."""
    import dataclasses

    data = {"type": type(result).__name__, "fields": dataclasses.asdict(result)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def _load(path: Path) -> object:
    data = json.loads(path.read_text(encoding="utf-8"))
    if "error" in data:
        raise ScenarioError(f"scenario {path.stem} failed: {data['error']}")
    fields = data["fields"]
    for name in ("settings", "options"):
        if name in fields:
            fields[name] = tuple(fields[name])
    return _result_types()[data["type"]](**fields)


def main(argv: Sequence[str]) -> int:
    """``python -m instruments.faults [--threads N] SCENARIO...``: run the scenarios (N at a
    time), writing each result to SCENARIO.json in the current folder as it comes."""
    import argparse
    import traceback

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("scenarios", nargs="+")
    args = parser.parse_args(argv)
    calls = [globals()[name] for name in args.scenarios]
    # SIGTERM (launcher's stop): stop every process the scenarios started, then leave at once
    # (the scenario threads must not go on starting new ones).
    def stop(*_: object) -> None:
        launcher.stop_all()
        os._exit(143)

    signal.signal(signal.SIGTERM, stop)

    def run(call: Callable[[], object]) -> None:
        path = Path(f"{call.__name__}.json")
        try:
            _dump(call(), path)
        except Exception as exc:  # written for the reader, who raises it
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}),
                           encoding="utf-8")
            tmp.replace(path)

    with ThreadPoolExecutor(max_workers=args.threads, thread_name_prefix="scenario") as pool:
        list(pool.map(run, calls))
    return 0


@dataclass
class PrefetchRun:
    """Short tasks queued behind a long one: which worker took them, how long each waited."""

    title: str
    settings: tuple[str, ...]
    options: tuple[str, ...]
    #: The short tasks worker a took (held behind its long task), and all of them.
    held: list[str]
    shorts: list[str]
    #: Seconds from sending each short task to its finish.
    waits: dict[str, float]
    commands: list[str] = field(default_factory=list)
    #: Did every short task worker a held start only once the long task had finished?
    held_waited: bool = True

    def row(self) -> list[object]:
        waits = sorted(self.waits.values())
        return [self.title, " ".join([*self.options, *self.settings]) or "（默认）", len(self.shorts),
                len(self.held), Measured(f"{waits[len(waits) // 2]:.2f} 秒"), Measured(f"{waits[-1]:.2f} 秒")]


PREFETCH_HEADERS = ["做法", "设置", "短任务", "被扣在 a 的", "等待（中位数）", "等待（最长）"]


def prefetch_hostages(title: str, *, settings: Sequence[str] = (), options: Sequence[str] = (),
                      shorts: int = 6, short_seconds: float = 0.1, long_seconds: float = 3.0,
                      timeout: float = 60) -> PrefetchRun:
    """Worker a (one process) gets a long task and ``shorts`` short ones; once the long one
    runs, worker b (one process, idle) starts and takes whatever a did not. The long task
    (demo_tasks.reliability.hold) takes ``long_seconds`` and ends only once b is done and the
    queue is empty: so the
    short tasks a holds then -- it prefetched them -- wait behind it, however slowly b
    started, and how many that is depends only on a's settings."""
    broker = launcher.start_embedded()
    sender = Celery(APP, broker=broker.url, backend=broker.url, set_as_current=False)
    ledger = Ledger(broker)
    workers: list[launcher.Proc] = []
    release = "release-long-task"
    try:
        workers.append(start_worker(broker, "a", settings, concurrency=1, extra=options))
        long_id = sender.send_task(reliability.hold.name, args=(release, timeout, long_seconds)).id
        sent_at: dict[str, float] = {}
        for _ in range(shorts):
            task_id = sender.send_task(reliability.work.name, args=(short_seconds,)).id
            sent_at[task_id] = time.time()
        wait_running(ledger, 1, workers[0])
        workers.append(start_worker(broker, "b", settings, concurrency=1, extra=options))
        wait_settled(ledger, sender, workers[1:], timeout=timeout, queue_only=True)
        ledger.client.rpush(release, "done")
        ids = [long_id, *sent_at]
        if not launcher.wait_for(lambda: all(ledger.finished().get(t) for t in ids), timeout):
            raise ScenarioError(f"Not every task finished within {timeout:g} s: {ledger.finished()}")
        steps = ledger.steps()
        long_pid = next(s["pid"] for s in steps if s["id"] == long_id)
        started_by = {s["id"]: s["pid"] for s in steps if s["step"] == "started"}
        finished_at = {s["id"]: s["t"] for s in steps if s["step"] == "finished"}
        started_at = {s["id"]: s["t"] for s in steps if s["step"] == "started"}
        held = [t for t in sent_at if started_by[t] == long_pid]
        return PrefetchRun(title, tuple(settings), tuple(options), held, list(sent_at),
                           {t: finished_at[t] - sent_at[t] for t in sent_at}, [w.display for w in workers],
                           all(started_at[t] >= finished_at[long_id] for t in held))
    finally:
        tear_down(workers, ledger, sender, broker)


def data_folder(name: str) -> Path:
    """An empty folder for a broker's data: in the chapter's scratch folder when there is one
    (a learner finds it in JupyterLab's file browser), else a temporary one. Remove it when done."""
    scratch = current_scratch()
    folder = scratch / name if scratch else Path(tempfile.mkdtemp(prefix=f"{name}-"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def persistence(folder: Path) -> tuple[str, ...]:
    """Valkey's options to write every command to an append-only file in ``folder`` before answering."""
    return ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(folder))


def broker_restart(title: str, *, persistent: bool, n: int = 4) -> Run:
    """Scenario 6: ``n`` tasks wait in the queue (no worker yet); the broker is SIGKILLed (a
    crash, an OOM kill of the Redis container) and started again on the same port, with
    its data folder; then a worker comes and takes what is there. ``persistent``: the
    broker writes every command to its append-only file before it answers
    (``--appendonly yes --appendfsync always``); else nothing ever reaches the disk."""
    folder = data_folder("valkey-data-5") if persistent else None
    args = persistence(folder) if folder else ()
    shown = "--appendonly yes --appendfsync always" if persistent else '--save "" --appendonly no'
    broker = launcher.start_embedded(extra_args=args)
    sender = Celery(APP, broker=broker.url, backend=broker.url, set_as_current=False)
    ledger = Ledger(broker)
    restarted: launcher.Broker | None = None
    workers: list[launcher.Proc] = []
    try:
        sent = [sender.send_task(reliability.work.name, args=(0.1,)).id for _ in range(n)]
        queued_before = ledger.queued()
        ledger.close()
        broker.proc.send_signal(signal.SIGKILL)
        broker.proc.popen.wait(10)
        broker.stop()
        restarted = launcher.start_embedded(broker.port, extra_args=args)
        ledger = Ledger(restarted)
        queued_after = ledger.queued()
        workers.append(start_worker(restarted, "w1"))
        wait_settled(ledger, sender, workers)
        return Run(title, "Broker 被 SIGKILL，在同一端口重启", (shown,), sent, [], list(sent), ledger.started(),
                   ledger.finished(), {t: ledger.state(t) for t in sent},
                   [restarted.proc.display, workers[0].display], {"w1": workers[0].log()},
                   {"queued_before": queued_before, "queued_after": queued_after}, ledger.steps())
    finally:
        tear_down(workers, ledger, sender, broker, restarted, folder=folder)


@dataclass
class SendRun:
    """Scenario 7: a caller sends while the broker is down."""

    title: str
    #: One (outcome, seconds) per attempt: "sent", or the exception as the caller gets it.
    attempts: list[tuple[str, float]]
    policy: dict


def send_while_down(title: str, *, retry: bool = True, attempts: int = 2) -> SendRun:
    """The broker is SIGKILLed; the caller then tries ``attempts`` sends (``retry``: Celery's
    publish retry policy, ``task_publish_retry_policy``; else one try). Then the broker comes
    back on the same port and one more send goes through."""
    broker = launcher.start_embedded()
    sender = Celery(APP, broker=broker.url, set_as_current=False)  # no result backend: only the publish
    restarted: launcher.Broker | None = None
    try:
        broker.proc.send_signal(signal.SIGKILL)
        broker.proc.popen.wait(10)
        broker.stop()
        outcomes = []
        for _ in range(attempts):
            started = time.monotonic()
            try:
                sender.send_task(reliability.work.name, args=(0.1,), retry=retry)
                outcome = "sent"
            except Exception as exc:  # what the caller gets is the point
                outcome = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
            outcomes.append((outcome, time.monotonic() - started))
        restarted = launcher.start_embedded(broker.port)
        started = time.monotonic()
        sender.send_task(reliability.work.name, args=(0.1,), retry=retry)
        outcomes.append(("sent", time.monotonic() - started))
        with restarted.client(timeout=5) as conn:
            if conn.llen(QUEUE) != 1:
                raise ScenarioError(f"After the broker came back, {conn.llen(QUEUE)} messages are queued, not 1")
        return SendRun(title, outcomes, dict(sender.conf.task_publish_retry_policy))
    finally:
        tear_down([], sender, broker, restarted)


def broker_outage(title: str, *, settings: Sequence[str] = (), n: int = 2, seconds: float = 2.0) -> Run:
    """Scenario 7: ``n`` tasks run when the broker (persistent: every command in its append-only
    file) is SIGKILLed; it is started again on the same port at once. A worker that survives
    reconnects; one that does not is replaced by a fresh one, as a process supervisor would
    (systemd's Restart=, a container's restart policy). Then settle and count."""
    folder = data_folder("valkey-data-7-" + hashlib.sha1(title.encode()).hexdigest()[:8])  # one per scenario
    broker = launcher.start_embedded(extra_args=persistence(folder))
    sender = Celery(APP, broker=broker.url, backend=broker.url, set_as_current=False)
    ledger = Ledger(broker)
    restarted: launcher.Broker | None = None
    workers: list[launcher.Proc] = []
    try:
        workers.append(start_worker(broker, "w1", settings))
        first = workers[0]
        sent = [sender.send_task(reliability.work.name, args=(seconds,)).id for _ in range(n)]
        running = wait_running(ledger, n, first)
        mark = first.mark()
        ledger.close()
        broker.proc.send_signal(signal.SIGKILL)
        broker.proc.popen.wait(10)
        broker.stop()
        first.wait_until(lambda: "Connection to broker lost" in first.log(mark), 30,
                         waiting_for="a log line saying the connection to the broker was lost")
        restarted = launcher.start_embedded(broker.port, extra_args=persistence(folder))
        ledger = Ledger(restarted)
        # A new client for the restarted server: the old one's pooled connections are dead.
        sender.close()
        sender = Celery(APP, broker=restarted.url, backend=restarted.url, set_as_current=False)
        launcher.wait_for(lambda: not first.running() or "Connected to" in first.log(mark), 30)
        survived = first.running()
        if not survived:
            workers.append(start_worker(restarted, "w2", settings))
        wait_settled(ledger, sender, workers)
        finished = ledger.finished()
        hit = [t for t in running if not survived or not finished.get(t)]
        return Run(title, "Broker 被 SIGKILL，立刻在同一端口重启（持久化）", tuple(settings), sent, running, hit,
                   ledger.started(), finished, {t: ledger.state(t) for t in sent}, [w.display for w in workers],
                   {node_name(w).split("@")[0]: w.log(mark if w is first else 0) for w in workers},
                   {"worker_survived": survived, "exit_code": first.popen.returncode}, ledger.steps())
    finally:
        tear_down(workers, ledger, sender, broker, restarted, folder=folder)


@dataclass
class BackendRun:
    """Scenario 8: the result backend goes down while tasks run, and comes back (empty)."""

    title: str
    settings: tuple[str, ...]
    sent: list[str]
    finished: dict[str, int]
    #: What the backend holds for each task once it is back and the worker is idle ("" for nothing).
    states: dict[str, str]
    #: What ``AsyncResult(id).get(timeout=...)`` gave the caller: the value, or the exception's name.
    seen: dict[str, str]
    commands: list[str] = field(default_factory=list)
    log: str = ""

    def row(self) -> list[object]:
        stored = sum(1 for t in self.sent if self.states.get(t) == "SUCCESS")
        got = sum(1 for t in self.sent if not self.seen[t].endswith("Error"))
        return [self.title, " ".join(self.settings) or "（默认）", len(self.sent),
                sum(1 for t in self.sent if self.finished.get(t)), stored, got]


BACKEND_HEADERS = ["做法", "设置", "发出", "执行完（账本）", "结果存进了后端", "调用方 get() 拿到了结果"]


def backend_outage(title: str, *, settings: Sequence[str] = (), n: int = 2, seconds: float = 1.0) -> BackendRun:
    """The broker stays up; the result backend (a Valkey of its own) is SIGKILLed while ``n``
    tasks run, and started again (empty) on the same port once each worker process has
    failed to store a result at least once (its log says so)."""
    broker = launcher.start_embedded()
    backend = launcher.start_embedded()
    sender = Celery(APP, broker=broker.url, backend=backend.url, set_as_current=False)
    ledger = Ledger(broker)
    workers: list[launcher.Proc] = []
    restarted: launcher.Broker | None = None
    try:
        workers.append(start_worker(broker, "w1", settings, env={"CELERY_RESULT_BACKEND": backend.url}))
        worker = workers[0]
        results = [sender.send_task(reliability.work.name, args=(seconds,)) for _ in range(n)]
        wait_running(ledger, n, worker)
        mark = worker.mark()
        backend.proc.send_signal(signal.SIGKILL)
        backend.proc.popen.wait(10)
        backend.stop()
        needle = "Failed operation" if any("always_retry=true" in s for s in settings) else "raised exception"
        worker.wait_until(lambda: worker.log(mark).count(needle) >= n, 30,
                          waiting_for=f"{n} log lines with {needle!r} (a result not stored)")
        restarted = launcher.start_embedded(backend.port)
        wait_settled(ledger, sender, workers)
        seen = {}
        for result in results:
            try:
                seen[result.id] = repr(result.get(timeout=2))
            except Exception as exc:  # what the caller sees is the point
                seen[result.id] = type(exc).__name__
        states = {}
        with restarted.client(timeout=5, decode_responses=True) as conn:
            for result in results:
                meta = conn.get(f"celery-task-meta-{result.id}")
                states[result.id] = json.loads(meta)["status"] if meta else ""
        ids = [r.id for r in results]
        # Let go of the results while their backend is there: a result that was waited for
        # unsubscribes when it is garbage collected, and would complain on stderr (in some
        # later cell) if its server were gone by then.
        for result in results:
            result.backend.remove_pending_result(result)
        results.clear()
        gc.collect()
        return BackendRun(title, tuple(settings), ids, ledger.finished(), states, seen,
                          [worker.display], worker.log(mark))
    finally:
        tear_down(workers, ledger, sender, broker, backend, restarted)


@dataclass
class MemoryRun:
    """Scenario 9: a task that leaks, and the pool process's resident memory after each run."""

    title: str
    options: tuple[str, ...]
    #: One record per task, in order: {"pid", "rss_mb"}.
    records: list[dict]
    commands: list[str] = field(default_factory=list)

    @property
    def processes(self) -> int:
        """How many pool processes ran the tasks (a recycled one is replaced by a new one)."""
        return len({r["pid"] for r in self.records})

    def peak(self) -> float:
        return max(r["rss_mb"] for r in self.records)


def memory_growth(title: str, *, options: Sequence[str] = (), tasks: int = 6, mb: int = 40) -> MemoryRun:
    """``tasks`` runs of ``leak(mb)`` on a worker with one pool process and ``options``
    (``--max-tasks-per-child``, ``--max-memory-per-child``), one after the other."""
    broker = launcher.start_embedded()
    sender = Celery(APP, broker=broker.url, backend=broker.url, set_as_current=False)
    ledger = Ledger(broker)
    workers: list[launcher.Proc] = []
    try:
        workers.append(start_worker(broker, "w1", concurrency=1, extra=options))
        for _ in range(tasks):
            sender.send_task(reliability.leak.name, args=(mb,))
        if not launcher.wait_for(lambda: ledger.client.llen(reliability.MEMORY_KEY) >= tasks, 60):
            raise ScenarioError(f"Only {ledger.client.llen(reliability.MEMORY_KEY)} of {tasks} leak tasks ran "
                                f"within 60 s. The worker's log:\n{workers[0].tail(15)}")
        records = [json.loads(r) for r in ledger.client.lrange(reliability.MEMORY_KEY, 0, -1)]
        return MemoryRun(title, tuple(options), records, [workers[0].display])
    finally:
        tear_down(workers, ledger, sender, broker)


def _any_alive(procs: Sequence[psutil.Process]) -> bool:
    return any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)


# --- The chapter's scenarios: one function each, called by the notebook and the tests ---------

#: Late acknowledgement: the message is acknowledged when the task has finished, not when it starts.
ACKS_LATE = "task.acks_late=true"
#: With acks_late: a task whose pool process died goes back to the queue instead of failing.
REJECT_ON_WORKER_LOST = "task.reject_on_worker_lost=true"
#: Celery 5.5+: a cold shutdown first gives running tasks this many seconds.
SOFT_SHUTDOWN = "worker.soft_shutdown_timeout=3"


def early_ack_killed() -> Run:
    """Scenario 1: the default (early acknowledgement), the worker's process group SIGKILLed."""
    return run_scenario("早确认，整组被杀", KILL_GROUP)


def early_ack_main_killed() -> Run:
    """Scenario 1, the Linux detail: only the main process SIGKILLed; its pool children die with it."""
    return run_scenario("早确认，只杀主进程", KILL_MAIN)


def late_ack_killed() -> Run:
    """Scenario 2: acks_late, the process group SIGKILLed; a fresh worker gets the tasks back."""
    return run_scenario("晚确认，整组被杀", KILL_GROUP, settings=(ACKS_LATE,))


def child_killed_early_ack() -> Run:
    """Scenario 3: one pool child SIGKILLed under a living main process, default settings."""
    return run_scenario("早确认，杀一个子进程", KILL_CHILD)


def child_killed_late_ack() -> Run:
    """Scenario 3 with acks_late only: WorkerLostError, the message acknowledged, the task failed."""
    return run_scenario("晚确认，杀一个子进程", KILL_CHILD, settings=(ACKS_LATE,))


def child_killed_late_ack_reject() -> Run:
    """Scenario 3 with acks_late and reject_on_worker_lost: the message goes back to the queue."""
    return run_scenario("晚确认 + 丢失即退回，杀一个子进程", KILL_CHILD, settings=(ACKS_LATE, REJECT_ON_WORKER_LOST))


def warm_shutdown() -> Run:
    """Scenario 4: SIGTERM: running tasks finish, what was prefetched goes back to the queue."""
    return run_scenario("温关闭", WARM)


def cold_shutdown() -> Run:
    """Scenario 4: SIGQUIT: running tasks are cancelled (and marked RETRY, though nothing retries them)."""
    return run_scenario("冷关闭", COLD)


def cold_shutdown_late_ack() -> Run:
    """Scenario 4: SIGQUIT with acks_late: the cancelled tasks go back to the queue."""
    return run_scenario("晚确认，冷关闭", COLD, settings=(ACKS_LATE,))


def soft_shutdown() -> Run:
    """Scenario 4: SIGQUIT with worker_soft_shutdown_timeout: running tasks get 3 s first."""
    return run_scenario("软关闭（冷关闭前等 3 秒）", COLD, settings=(SOFT_SHUTDOWN,))


def remapped_sigterm() -> Run:
    """Scenario 4: billiard's REMAP_SIGTERM=SIGQUIT makes SIGTERM a cold shutdown."""
    return run_scenario("REMAP_SIGTERM=SIGQUIT，再 SIGTERM", WARM, env={"REMAP_SIGTERM": "SIGQUIT"})


#: A container runtime's grace period, shorter than the tasks (Docker's default is 10 s, Kubernetes' 30 s).
GRACE = 1.0


def runtime_stop_early_ack() -> Run:
    """Scenario 4: a container stopped (SIGTERM, SIGKILL after the grace) with tasks longer than the grace."""
    return run_scenario("容器停止，任务比宽限期长", runtime_stop(GRACE), seconds=2 * GRACE + 1)


def runtime_stop_late_ack() -> Run:
    """Scenario 4: the same with acks_late: the killed tasks come back after the visibility timeout."""
    return run_scenario("晚确认，容器停止", runtime_stop(GRACE), settings=(ACKS_LATE,), seconds=2 * GRACE + 1)


#: The platform's grace and the soft shutdown of the scenario (and exercise) where a container's
#: SIGTERM becomes a soft, then cold shutdown: the soft part well inside the grace.
REMAP_GRACE = 5.0
REMAP_SOFT = "worker.soft_shutdown_timeout=0.5"


def runtime_stop_remap_soft() -> Run:
    """Scenario 4: acks_late, REMAP_SIGTERM=SIGQUIT and a soft shutdown shorter than the grace: the
    platform's SIGTERM becomes a soft, then cold shutdown; the cancelled tasks go back at once.
    Two tasks only, both running: with two more waiting behind them in the fresh worker's
    prefetch, those would wait and run longer than the visibility timeout, and run twice."""
    return run_scenario("晚确认 + REMAP_SIGTERM + 软关闭，容器停止", runtime_stop(REMAP_GRACE),
                        settings=(ACKS_LATE, REMAP_SOFT), n=2, k=2, seconds=REMAP_GRACE + 2,
                        env={"REMAP_SIGTERM": "SIGQUIT"})


def prefetch_default() -> PrefetchRun:
    """Scenario 5: the default prefetch (4 per process): short tasks held behind a long one."""
    return prefetch_hostages("默认预取")


def prefetch_one() -> PrefetchRun:
    """Scenario 5: --prefetch-multiplier=1 alone: the early-acknowledged long task frees a place."""
    return prefetch_hostages("预取 1", options=("--prefetch-multiplier=1",))


def prefetch_one_late_ack() -> PrefetchRun:
    """Scenario 5: --prefetch-multiplier=1 with acks_late: the long task holds the only place."""
    return prefetch_hostages("预取 1 + 晚确认", options=("--prefetch-multiplier=1",), settings=(ACKS_LATE,))


def prefetch_disabled() -> PrefetchRun:
    """Scenario 5: Celery 5.6+'s --disable-prefetch: a worker takes a message only for a free process."""
    return prefetch_hostages("不预取", options=("--disable-prefetch",))


#: Every scenario of part 1, by function name: what the tests and the summary table run.
KILLS = (early_ack_killed, early_ack_main_killed, late_ack_killed)
CHILD_KILLS = (child_killed_early_ack, child_killed_late_ack, child_killed_late_ack_reject)
SHUTDOWNS = (warm_shutdown, cold_shutdown, cold_shutdown_late_ack, soft_shutdown, remapped_sigterm,
             runtime_stop_early_ack, runtime_stop_late_ack, runtime_stop_remap_soft)
PREFETCH = (prefetch_default, prefetch_one, prefetch_one_late_ack, prefetch_disabled)


def broker_restart_volatile() -> Run:
    """Scenario 6: the broker without persistence (the course's default) crashes with tasks queued."""
    return broker_restart("Broker 重启，不持久化", persistent=False)


def broker_restart_persistent() -> Run:
    """Scenario 6: the same broker writing every command to its append-only file first."""
    return broker_restart("Broker 重启，AOF 持久化", persistent=True)


def send_with_retry() -> SendRun:
    """Scenario 7: sending while the broker is down, with Celery's publish retry policy (the default)."""
    return send_while_down("发布重试（默认）")


def send_without_retry() -> SendRun:
    """Scenario 7: the same with ``retry=False``."""
    return send_while_down("retry=False", retry=False)


def outage_early_ack() -> Run:
    """Scenario 7: the broker restarts under a busy worker (early acknowledgement): it reconnects."""
    return broker_outage("早确认，Broker 重启")


def outage_late_ack() -> Run:
    """Scenario 7: the same with acks_late (kombu 5.7: the worker dies; a fresh one re-runs the tasks)."""
    return broker_outage("晚确认，Broker 重启", settings=(ACKS_LATE,))


#: Retry storing results while the backend is away, at most 30 times, at most 1 s apart.
BACKEND_RETRY = ("result.backend_always_retry=true", "result.backend_max_retries=30",
                 "result.backend_max_sleep_between_retries_ms=1000")


def backend_down() -> BackendRun:
    """Scenario 8: the result backend goes down while tasks run (default settings)."""
    return backend_outage("默认")


def backend_down_retry() -> BackendRun:
    """Scenario 8: the same with result_backend_always_retry."""
    return backend_outage("一直重试", settings=BACKEND_RETRY)


#: A worker's pool process is replaced after a task that took its peak resident memory past this (KiB): 200 MB.
MAX_MEMORY_KIB = 200 * 1024


def memory_default() -> MemoryRun:
    """Scenario 9: a leaking task on a worker with default settings: its pool process only grows."""
    return memory_growth("默认")


def memory_max_tasks() -> MemoryRun:
    """Scenario 9: --max-tasks-per-child=3: a new pool process every 3 tasks."""
    return memory_growth("每 3 个任务换一个子进程", options=("--max-tasks-per-child=3",))


def memory_max_memory() -> MemoryRun:
    """Scenario 9: --max-memory-per-child: a new pool process after the task that took it past 200 MB."""
    return memory_growth("超过 200 MB 换一个子进程", options=(f"--max-memory-per-child={MAX_MEMORY_KIB}",))


def outage_late_ack_cancel() -> Run:
    """Scenario 7: acks_late and worker_cancel_long_running_tasks_on_connection_loss (True in Celery 6)."""
    return broker_outage("晚确认 + 断线即取消，Broker 重启",
                         settings=(ACKS_LATE, "worker.cancel_long_running_tasks_on_connection_loss=true"))


BROKER_RESTARTS = (broker_restart_volatile, broker_restart_persistent)
SENDS = (send_with_retry, send_without_retry)
OUTAGES = (outage_early_ack, outage_late_ack, outage_late_ack_cancel)
BACKENDS = (backend_down, backend_down_retry)
MEMORY = (memory_default, memory_max_tasks, memory_max_memory)


# --- Scenario 10: PostgreSQL restarted under a Django worker ------------------------------

DJANGO_APP = "django_demo"
#: The scenario's tasks, imported by the worker on top of the project's own (``-I``).
DATABASE_TASKS = "demo_tasks.database"
#: How long a task's query lasts when the server is restarted under it (the restart ends it).
HOLD = 3.0
#: What a worker's main process logs when it gave up on a task it could not store a result for.
GAVE_UP = "Pool callback raised exception"
DATABASE_HEADERS = ["情况", "任务", "PostgreSQL 停下时", "任务的状态（结果表）", "看到的"]


@dataclass
class DatabaseRun:
    """Scenario 10: one Django worker (django_demo, its results in the database) and a
    PostgreSQL server of its own, restarted (a fast shutdown) between tasks and during them."""

    title: str
    #: One per case, in order: {"case", "task", "when", "state", "seen"}.
    cases: list[dict]
    #: The server process (``pg_backend_pid()``) each of the first tasks was served by.
    backends: list[int]
    #: What the worker process's own thread saw, look after look.
    side: list[str]
    #: How many times the retrying task retried before it succeeded.
    retries: int
    commands: list[str] = field(default_factory=list)
    #: For each case the stop hit, the worker's first record of a state it could not store.
    logs: dict[str, str] = field(default_factory=dict)
    #: The server's log lines about the sessions it ended.
    server_log: str = ""
    #: How many of the server's fast shutdowns had to be forced (SIGKILL): 0 when each ended by itself.
    forced: int = 0

    def rows(self) -> list[list[str]]:
        return [[c["case"], c["task"], c["when"], c["state"], c["seen"]] for c in self.cases]


def _task_state(db, task_id: str) -> tuple[str, str]:
    """The TaskResult row's status and result (``("", "")`` without a row), read from the server."""
    import psycopg

    try:
        with psycopg.connect(db.url, connect_timeout=2) as conn:
            row = conn.execute("SELECT status, result FROM django_celery_results_taskresult WHERE task_id = %s",
                               [task_id]).fetchone()
    except psycopg.Error:
        return ("", "")  # the server is restarting
    return (row[0], row[1] or "") if row else ("", "")


def _in_query(db) -> bool:
    """Is a task's long query (``SELECT pg_sleep(...)``) running on the server right now?"""
    import psycopg

    try:
        with psycopg.connect(db.url, connect_timeout=2) as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                "AND query LIKE 'SELECT pg_sleep%%'").fetchone()[0] > 0
    except psycopg.Error:
        return False


def database_restarts(title: str = "PostgreSQL 在 worker 运行时重启") -> DatabaseRun:
    """The cases of scenario 10, one after the other on one server and one worker (one pool
    process): the server restarted between two tasks, under the worker's own thread, during a
    task, during a task that retries; then during a task with ``result_backend_always_retry``."""
    from launcher.credentials import local_django_env
    from launcher.postgres import start_postgres

    db = broker = sender = ledger = None
    workers: list[launcher.Proc] = []
    cases: list[dict] = []
    logs: dict[str, str] = {}
    try:
        db = start_postgres()
        broker = launcher.start_embedded()
        sender = Celery(DJANGO_APP, broker=broker.url, set_as_current=False)
        ledger = Ledger(broker)
        django = {k: v for k, v in local_django_env().items() if k in ("DEBUG", "SECRET_KEY")}
        env = {**django, "DATABASE_URL": db.url}
        launcher.manage("migrate", "--no-input", "-v", "0", env=env)

        def worker(name: str, settings: Sequence[str] = ()) -> launcher.Proc:
            workers.append(launcher.start_worker(DJANGO_APP, name=name, broker=broker, fast=True, concurrency=1,
                                                 extra_args=worker_args(settings, ["-I", DATABASE_TASKS]), env=env))
            return workers[-1]

        def run(task: str, *args: object, timeout: float = 30) -> tuple[str, str]:
            task_id = sender.send_task(f"{DATABASE_TASKS}.{task}", args=args).id
            if not launcher.wait_for(lambda: _task_state(db, task_id)[0] in ("SUCCESS", "FAILURE"), timeout, 0.1):
                raise ScenarioError(f"{task} did not finish within {timeout:g} s. The worker's log:\n"
                                    f"{workers[-1].tail(15)}")
            return _task_state(db, task_id)

        def down_during(case: str, task: str, w: launcher.Proc, back_after: str) -> tuple[str, str]:
            """Send ``task`` (HOLD s of query) and stop the server while its query runs; start it
            again once the worker logged ``back_after``; once the worker is idle: the task's state
            and result. The worker's first record of a state it could not store goes to logs[case]."""
            mark = w.mark()
            task_id = sender.send_task(f"{DATABASE_TASKS}.{task}", args=(HOLD,)).id
            w.wait_until(lambda: _in_query(db), 30, waiting_for=f"{task}'s query running on the server",
                         interval=0.1)
            db.shutdown()
            w.wait_until(lambda: back_after in w.log(mark), 60, waiting_for=f"{back_after!r} in the worker's log")
            db.start()
            w.wait_until(lambda: _task_state(db, task_id)[0] == "SUCCESS" or GAVE_UP in w.log(mark), 60,
                         waiting_for=f"{task} to succeed or be given up", interval=0.1)
            wait_settled(ledger, sender, [w])
            logs[case] = log_lines(w.log(mark), "outside body").partition("\n")[0]
            return _task_state(db, task_id)

        w1 = worker("w1")
        backends = [json.loads(run("database_work")[1])["backend"] for _ in range(2)]
        side = json.loads(run("side_look")[1])
        if not side or not side[0].startswith("backend "):
            raise ScenarioError(f"The worker's own thread did not reach the database: {side}. The worker's log:\n"
                                f"{w1.tail(15)}")
        backends.append(int(side[0].split()[-1]))  # "backend PID"
        db.restart()
        state, result = run("database_work")
        cases.append({"case": "两个任务之间", "task": "database_work", "when": "worker 空闲",
                      "state": state, "seen": "新连接" if json.loads(result)["backend"] not in backends
                      else "重启前的连接"})
        # The thread looks twice: the server's goodbye first, then what every later look gets.
        side = json.loads(run("side_look")[1])
        side = json.loads(run("side_look")[1])
        cases.append({"case": "worker 自己的线程（不是任务）", "task": "side_look 叫醒它", "when": "worker 空闲",
                      "state": "（线程没有结果）", "seen": " → ".join(side[1:])})
        state, _ = down_during("任务执行中", "database_work", w1, GAVE_UP)
        cases.append({"case": "任务执行中", "task": "database_work", "when": "任务的查询正在运行",
                      "state": state, "seen": _outside_body(logs["任务执行中"])})
        state, result = down_during("任务执行中，任务自己重试", "database_work_retried", w1, "Retry in")
        retried = json.loads(result) if state == "SUCCESS" else {}
        cases.append({"case": "任务执行中，任务自己重试", "task": "database_work_retried", "when": "任务的查询正在运行",
                      "state": state,
                      "seen": ("重试后成功，用的是新连接" if retried.get("backend") not in backends else "重试后成功")
                      if retried else _outside_body(logs["任务执行中，任务自己重试"])})
        w1.stop()
        w2 = worker("w2", ["result.backend_always_retry=true"])
        state, _ = down_during("任务执行中，存结果时重试", "database_work", w2, GAVE_UP)
        cases.append({"case": "任务执行中，存结果时重试", "task": "database_work", "when": "任务的查询正在运行",
                      "state": state, "seen": _outside_body(logs["任务执行中，存结果时重试"])})
        return DatabaseRun(title, cases, backends[:2], side, retried.get("retries", 0),
                           [db.proc.display, *(w.display for w in workers)], logs,
                           _server_lines(db.logs(), "received fast shutdown", "terminating connection"),
                           db.forced)
    finally:
        tear_down(workers, ledger, sender, broker, db)


def _server_lines(log: str, *needles: str) -> str:
    """PostgreSQL's log lines that contain one of ``needles``, without their time and pid, each once."""
    import re

    lines = (re.sub(r"^.*?\[\d+\] ", "", line) for line in log.splitlines() if any(n in line for n in needles))
    return "\n".join(dict.fromkeys(lines))  # each once: how many sessions a shutdown ended varies


def _outside_body(log: str) -> str:
    """What the worker said when it could not store a task's result (Celery's "Exception raised
    outside body"), or that it said nothing of the kind."""
    import re

    found = re.search(r"Exception raised outside body: (\w+)\('([^']*)'\)", log)
    return f"存结果时 {found[1]}: {found[2]}" if found else "（日志里没有存结果的错误）"


# --- Chapter 05's report, its worker killed mid-report -------------------------------------

#: The report: rows, seconds a row, and how long the page waits without progress before it
#: gives the report up (REPORT_LOST_AFTER_SECONDS, reports/watchdog.py).
REPORT_ROWS, REPORT_STEP, REPORT_LOST_AFTER = 10, 0.3, 3


@dataclass
class ReportRun:
    """Chapter 05's report page in a real browser; the worker's whole process group SIGKILLed
    while the report is half done; then a new worker and the page's 重试 button."""

    title: str
    #: The progress bar's value when the worker was killed.
    progress_at_kill: int
    #: What the page showed once it gave the report up: {"status", "error", "retry"}.
    page: dict
    #: Seconds from the kill to 失败 on the page (the watchdog's REPORT_LOST_AFTER, counted from
    #: the last progress, plus one poll).
    waited: float
    #: The report's files in MEDIA_ROOT/reports (hidden .part ones included) after the kill.
    files_after_kill: list[str]
    #: What the page showed after 重试 with a new worker: {"status", "download"}.
    page_after_retry: dict
    files_after_retry: list[str]
    commands: list[str] = field(default_factory=list)
    #: The web process's log line where the watchdog gave the report up.
    server_log: str = ""


def report_killed(title: str = "第 05 章的报表，worker 整组被杀") -> ReportRun:
    """The course's Django project (its own SQLite file, media folder and Valkey), a worker and
    the web server; in Chromium: log in, ask for a report of REPORT_ROWS rows, SIGKILL the worker's
    process group once the bar shows 20 %, wait for the page to say 失败, then start another
    worker and press 重试."""
    from playwright.sync_api import Error as PlaywrightError

    from launcher.browser import chromium
    from launcher.django_procs import django_env, start_django_server
    from launcher.paths import DJANGO_DIR

    folder = data_folder("report-killed")
    broker = None
    procs: list[launcher.Proc] = []
    media = folder / "media" / "reports"

    def files(report_id: str) -> list[str]:
        return sorted(p.name for p in media.iterdir() if report_id in p.name) if media.is_dir() else []

    def worker(name: str) -> launcher.Proc:
        procs.append(launcher.start_worker(DJANGO_APP, name=name, broker=broker, fast=True, cwd=str(DJANGO_DIR),
                                           env=env))
        return procs[-1]

    try:
        broker = launcher.start_embedded()
        env = django_env(folder, broker, REPORT_STEP_SECONDS=str(REPORT_STEP),
                         REPORT_LOST_AFTER_SECONDS=str(REPORT_LOST_AFTER))
        launcher.manage("migrate", "--noinput", env=env)
        launcher.manage("create_course_admin", env=env)
        w1 = worker("w1")
        server = start_django_server(DJANGO_DIR, env=env)
        procs.append(server)
        with chromium() as browser:
            context = browser.new_context(base_url=server.url, locale="zh-CN")
            context.set_default_timeout(60_000)
            page = context.new_page()
            page.goto("/")  # the login page first, as a person meets it
            page.get_by_label("用户名").fill(env["COURSE_ADMIN_USER"])
            page.get_by_label("密码").fill(env["COURSE_ADMIN_PASSWORD"])
            page.get_by_role("button", name="登录").click()
            page.wait_for_url(server.url + "/")
            page.get_by_label("标题").fill(title)
            page.get_by_label("行数").fill(str(REPORT_ROWS))
            page.get_by_role("button", name="生成报表").click()
            page.wait_for_url("**/reports/*/")
            report_id = page.url.rstrip("/").split("/")[-1]
            page.wait_for_function("() => Number(document.getElementById('progress').value) >= 20")
            killed = time.monotonic()
            w1.stop("kill")
            progress = int(page.locator("#progress").get_attribute("value"))
            page.wait_for_function("() => document.getElementById('status').textContent === '失败'")
            waited = time.monotonic() - killed
            shown = {"status": page.locator("#status").inner_text(),
                     "error": page.locator("#error-text").inner_text(),
                     "retry": page.locator("#retry").is_visible()}
            after_kill = files(report_id)
            worker("w2")
            with page.expect_navigation():
                page.locator("#retry").click()
            page.wait_for_function("() => document.getElementById('status').textContent === '已完成'")
            retried = {"status": page.locator("#status").inner_text(),
                       "download": page.locator("#download").is_visible()}
            context.close()
        return ReportRun(title, progress, shown, waited, after_kill, retried, files(report_id),
                         [procs[0].display, server.display],
                         log_lines(server.log(), "is lost (running)"))
    except PlaywrightError as exc:  # a page that never got where it had to: say what the processes said
        raise ScenarioError(f"The report page did not get there: {str(exc).splitlines()[0]}\n"
                            + "\n".join(f"--- {p.name}:\n{p.tail(10)}" for p in procs)) from None
    finally:
        tear_down(procs, broker, folder=folder)


def report_worker_killed() -> ReportRun:
    return report_killed()


REPORTS = (report_worker_killed,)


def database_restart() -> DatabaseRun:
    return database_restarts()


DATABASES = (database_restart,)

#: Every scenario the chapter's sections show, in the order they show them.
CHAPTER = (*KILLS, *CHILD_KILLS, *SHUTDOWNS, *PREFETCH, *BROKER_RESTARTS, *SENDS, *OUTAGES, *BACKENDS, *MEMORY,
           *DATABASES, *REPORTS)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
