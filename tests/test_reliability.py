"""Chapter 12's fault harness (instruments.faults) against real processes.

Every scenario of the catalogue (KILLS, CHILD_KILLS, SHUTDOWNS, PREFETCH, BROKER_RESTARTS,
SENDS, OUTAGES, BACKENDS, MEMORY, DATABASES, REPORTS) runs once, on Valkeys and real `celery` workers of its
own, several at a time (THREADS) in a module-scoped fixture, and the tests below are
parametrized over the results, so the suite pays for each scenario once, and for all of
them about as long as for the longest few.

What they prove, per scenario: the counts the chapter prints (once, twice, lost,
rerun) and the states the result backend holds; the invariants that hold whatever
the machine (every task counted once; nothing is lost or run twice that the fault
did not hit; nothing lost where Celery promises it); that each worker's displayed
command carries the settings exactly as the chapter gives them; that a scenario
leaves no process and no data folder behind. For part 2: what a broker restart keeps
with and without persistence; what a caller gets when it sends to a broker that is
down, with Celery's publish retry policy and without, and how long it waits; what a
broker restart does to a busy worker (and the kombu 5.7 bug that kills a late-ack one);
what a result backend outage costs; how a leaking pool process grows and is replaced; what a
PostgreSQL restart does to a Django worker's tasks, its own thread and its results; what chapter
05's report page shows, in Chromium, when its worker's whole group is SIGKILLed mid-report.
Then the failure paths (clear errors within their timeouts, nothing left running) and
launcher.Proc's send_signal() and children().
"""

from __future__ import annotations

import inspect
import itertools
import os
import re
import signal
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import redis
from celery import Celery
from celery.app.defaults import DEFAULTS

import launcher
import launcher.postgres
from demo_tasks import reliability
from instruments import faults
from launcher import procs, scratch
from launcher.procs import group_alive, session_processes, sweep
from tests.helpers import alive, returns_within

LINUX = sys.platform.startswith("linux")
#: What every fault scenario sends, and how many run when the fault comes (run_scenario's defaults).
SENT, AT_ONCE = 4, 2
#: A variable every process started by a test here carries (launcher.procs.MARKERS, inherited
#: by pool children too), so a process that outlived its scenario is found even as an orphan.
MARK = "CELERY_COURSE_RELIABILITY_TEST"


# --- What each scenario must give ----------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    group: str
    counts: dict[str, int]
    #: How many tasks the result backend holds in each state (Run.state_counts()).
    states: dict[str, int]
    #: How many tasks the fault hit (killed or cancelled while running).
    hit: int
    #: The state the backend keeps for every lost task.
    lost_state: str | None
    #: How every worker's displayed command ends: the settings after ` -- `, exactly as given.
    tail: str
    #: What the first worker logs after the fault (None: a SIGKILLed worker says nothing).
    log: str | None
    #: How the first worker ended: 0 when it shut itself down, KILLED when SIGKILL ended it,
    #: None when it survived (a pool child killed under it).
    exit_code: int | None = 0
    #: Only on Linux (pool children die with their SIGKILLed parent there).
    linux_only: bool = False


def counts(once: int, lost: int, rerun: int = 0, twice: int = 0, sent: int = SENT) -> dict[str, int]:
    return {"sent": sent, "once": once, "twice": twice, "lost": lost, "rerun": rerun}


PLAIN = "--without-heartbeat"  # the last option of every worker without settings
LATE = " -- task.acks_late=true"
LOST_CHILD = "exited with 'signal 9 (SIGKILL)'"
KILLED = -signal.SIGKILL

EXPECTED = {
    "early_ack_killed": Expected("kills", counts(once=2, lost=2), {"STARTED": 2, "SUCCESS": 2}, 2,
                                 "STARTED", PLAIN, None, KILLED),
    "early_ack_main_killed": Expected("kills", counts(once=2, lost=2), {"STARTED": 2, "SUCCESS": 2}, 2,
                                      "STARTED", PLAIN, None, KILLED, linux_only=True),
    "late_ack_killed": Expected("kills", counts(once=4, lost=0, rerun=2), {"SUCCESS": 4}, 2,
                                None, LATE, None, KILLED),
    "child_killed_early_ack": Expected("child_kills", counts(once=3, lost=1), {"FAILURE": 1, "SUCCESS": 3}, 1,
                                       "FAILURE", PLAIN, LOST_CHILD, None),
    "child_killed_late_ack": Expected("child_kills", counts(once=3, lost=1), {"FAILURE": 1, "SUCCESS": 3}, 1,
                                      "FAILURE", LATE, LOST_CHILD, None),
    "child_killed_late_ack_reject": Expected(
        "child_kills", counts(once=4, lost=0, rerun=1), {"SUCCESS": 4}, 1, None,
        " -- task.acks_late=true task.reject_on_worker_lost=true", LOST_CHILD, None),
    "warm_shutdown": Expected("shutdowns", counts(once=4, lost=0), {"SUCCESS": 4}, 0, None, PLAIN,
                              "Warm shutdown"),
    "cold_shutdown": Expected("shutdowns", counts(once=2, lost=2), {"RETRY": 2, "SUCCESS": 2}, 2,
                              "RETRY", PLAIN, "Cold shutdown"),
    "cold_shutdown_late_ack": Expected("shutdowns", counts(once=4, lost=0, rerun=2), {"SUCCESS": 4}, 2,
                                       None, LATE, "Cold shutdown"),
    "soft_shutdown": Expected("shutdowns", counts(once=4, lost=0), {"SUCCESS": 4}, 0, None,
                              " -- worker.soft_shutdown_timeout=3", "Soft Shutdown, terminating in 3.0 seconds"),
    # SIGTERM was sent; REMAP_SIGTERM=SIGQUIT made it a cold shutdown.
    "remapped_sigterm": Expected("shutdowns", counts(once=2, lost=2), {"RETRY": 2, "SUCCESS": 2}, 2,
                                 "RETRY", PLAIN, "Cold shutdown"),
    # The grace ran out: SIGKILL ended the warm shutdown.
    "runtime_stop_early_ack": Expected("shutdowns", counts(once=2, lost=2), {"STARTED": 2, "SUCCESS": 2}, 2,
                                       "STARTED", PLAIN, "Warm shutdown", KILLED),
    "runtime_stop_late_ack": Expected("shutdowns", counts(once=4, lost=0, rerun=2), {"SUCCESS": 4}, 2,
                                      None, LATE, "Warm shutdown", KILLED),
    # REMAP_SIGTERM=SIGQUIT: the SIGTERM became a soft, then cold shutdown, over well within the grace;
    # the cancelled tasks went back at once. Two tasks only: a third would wait behind a 7 s one on the
    # fresh worker, past the visibility timeout, and run twice there.
    "runtime_stop_remap_soft": Expected("shutdowns", counts(once=2, lost=0, rerun=2, sent=2), {"SUCCESS": 2}, 2,
                                        None, f"{LATE} {faults.REMAP_SOFT}",
                                        "Soft Shutdown, terminating in 0.5 seconds"),
}
#: The scenarios whose first worker runs with REMAP_SIGTERM=SIGQUIT.
REMAPPED = {"remapped_sigterm", "runtime_stop_remap_soft"}
#: Short tasks worker a holds behind its long task, and how its workers' commands end.
PREFETCH_EXPECTED = {
    "prefetch_default": (4, PLAIN),
    "prefetch_one": (1, " --prefetch-multiplier=1"),
    "prefetch_one_late_ack": (0, " --prefetch-multiplier=1 -- task.acks_late=true"),
    "prefetch_disabled": (0, " --disable-prefetch"),
}


def default(function: Callable, parameter: str):
    """A parameter's default: what the chapter's scenarios run with."""
    return inspect.signature(function).parameters[parameter].default


#: A broker restart (broker_restart sends 4): counts, what the backend holds, what is queued after the
#: restart (before it: all 4), and the broker's persistence as the table shows it.
RESTART_EXPECTED = {
    "broker_restart_volatile": (counts(once=0, lost=4), {"无记录": 4}, 0, '--save "" --appendonly no'),
    "broker_restart_persistent": (counts(once=4, lost=0), {"SUCCESS": 4}, 4, "--appendonly yes --appendfsync always"),
}
#: Sending while the broker is down (send_while_down): how many sends fail (SEND_BOUNDS: how long each takes).
SEND_ATTEMPTS = default(faults.send_while_down, "attempts")
#: A broker restart under a busy worker (broker_outage sends 2): counts, and whether the first worker survived.
OUTAGE_SENT = default(faults.broker_outage, "n")
OUTAGE_EXPECTED = {
    "outage_early_ack": (counts(once=OUTAGE_SENT, lost=0, sent=OUTAGE_SENT), True),
    # kombu 5.7: the worker dies (test_kombu_5_7_bug_...); a fresh one runs every task again.
    "outage_late_ack": (counts(once=0, twice=OUTAGE_SENT, lost=0, rerun=OUTAGE_SENT, sent=OUTAGE_SENT), False),
    "outage_late_ack_cancel": (counts(once=0, twice=OUTAGE_SENT, lost=0, rerun=OUTAGE_SENT, sent=OUTAGE_SENT),
                               False),
}
#: A result backend outage (backend_outage sends 2 tasks of 1 s): the summary row after the title and settings
#: (sent, finished, stored, got by the caller), what the backend holds, what get() gives, the log line.
BACKEND_SENT = default(faults.backend_outage, "n")
BACKEND_EXPECTED = {
    "backend_down": ([BACKEND_SENT, BACKEND_SENT, 0, 0], "", "TimeoutError", "Exception raised outside body"),
    "backend_down_retry": ([BACKEND_SENT] * 4, "SUCCESS", repr(default(faults.backend_outage, "seconds")),
                           "Failed operation _store_result"),
}
#: A leaking task (memory_growth: 6 runs of leak(40) on one pool process).
LEAKS, LEAK_MB = default(faults.memory_growth, "tasks"), default(faults.memory_growth, "mb")
MEMORY_OPTIONS = {"memory_default": "", "memory_max_tasks": "--max-tasks-per-child=3",
                  "memory_max_memory": f"--max-memory-per-child={faults.MAX_MEMORY_KIB}"}

GROUPS = {"kills": faults.KILLS, "child_kills": faults.CHILD_KILLS, "shutdowns": faults.SHUTDOWNS,
          "prefetch": faults.PREFETCH, "broker_restarts": faults.BROKER_RESTARTS, "sends": faults.SENDS,
          "outages": faults.OUTAGES, "backends": faults.BACKENDS, "memory": faults.MEMORY,
          "databases": faults.DATABASES, "reports": faults.REPORTS}
SCENARIOS = [f.__name__ for f in (*faults.KILLS, *faults.CHILD_KILLS, *faults.SHUTDOWNS)]
PREFETCH = [f.__name__ for f in faults.PREFETCH]
RESTARTS = [f.__name__ for f in faults.BROKER_RESTARTS]
SENDS = [f.__name__ for f in faults.SENDS]
OUTAGES = [f.__name__ for f in faults.OUTAGES]
BACKENDS = [f.__name__ for f in faults.BACKENDS]
MEMORY = [f.__name__ for f in faults.MEMORY]
DATABASES = [f.__name__ for f in faults.DATABASES]
REPORTS = [f.__name__ for f in faults.REPORTS]


def test_every_scenario_of_the_catalogue_has_its_expectations():
    assert sorted(EXPECTED) == sorted(SCENARIOS)
    assert sorted(PREFETCH_EXPECTED) == sorted(PREFETCH)
    assert all(EXPECTED[f.__name__].group == group for group, fs in GROUPS.items() for f in fs
               if group in ("kills", "child_kills", "shutdowns"))
    for names, expected in ((RESTARTS, RESTART_EXPECTED), (SENDS, SEND_BOUNDS), (OUTAGES, OUTAGE_EXPECTED),
                            (BACKENDS, BACKEND_EXPECTED), (MEMORY, MEMORY_OPTIONS)):
        assert sorted(names) == sorted(expected)
    assert DATABASES == ["database_restart"] and len(DATABASE_CASES) == 5
    assert REPORTS == ["report_worker_killed"]
    assert sorted(g for phase in PHASES for g in phase) == sorted(GROUPS), "every group runs, once"
    assert sorted(f.__name__ for f in faults.CHAPTER) == sorted(f.__name__ for fs in GROUPS.values() for f in fs), \
        "the tests run every scenario the chapter shows"
    assert default(faults.broker_restart, "n") == default(faults.run_scenario, "n") == SENT


# --- Running every scenario once -----------------------------------------------------------

#: Each scenario's ledger (every start and finish), read when the scenario closes it, by broker URL.
LEDGERS: dict[str, list[dict]] = {}


class RecordingLedger(faults.Ledger):
    """faults.Ledger that keeps a copy of the ledger's steps when the scenario is done with it
    (its workers stopped, its Valkey not yet): PrefetchRun has the waits but not the long task's times."""

    def __init__(self, broker: launcher.Broker):
        super().__init__(broker)
        self.url = broker.url

    def close(self) -> None:
        try:
            LEDGERS[self.url] = self.steps()
        except redis.RedisError:  # the scenario failed with its broker; that error is the one to see
            pass
        finally:
            super().close()


@dataclass
class Catalogue:
    #: Each scenario's result, by its function's name.
    results: dict[str, object] = field(default_factory=dict)
    #: The processes the scenarios started that were still there when they returned (swept since).
    leftovers: list[str] = field(default_factory=list)
    #: Every data folder a scenario asked faults.data_folder() for.
    folders: list[Path] = field(default_factory=list)
    #: The folder of every PostgreSQL server a scenario started.
    databases: list[Path] = field(default_factory=list)


@dataclass
class Marked:
    #: The command lines of the marked processes still there at the end (swept since).
    leftovers: list[str] = field(default_factory=list)


def command_line(proc: psutil.Process) -> str | None:
    """What ``proc`` runs, None once it is gone."""
    try:
        return " ".join(proc.cmdline()) if proc.status() != psutil.STATUS_ZOMBIE else None
    except psutil.Error:
        return None


@contextmanager
def marked() -> Iterator[Marked]:
    """Every process started inside carries MARK=<token>; afterwards, those still there
    are swept and listed (``.leftovers``), orphans included."""
    token = uuid.uuid4().hex
    box = Marked()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(procs.MARKERS, MARK, token)
        try:
            yield box
        finally:
            left = session_processes(token, MARK)
            box.leftovers = [c for c in map(command_line, left) if c is not None]
            if left:
                sweep(token, timeout=5, variable=MARK)


#: The groups, in the order their scenarios start (the longest first), in phases run one after the
#: other, and how many scenarios run at once in a phase. All 30 at once overload two cores (a
#: scenario's timing breaks: a fault comes after the tasks it should hit have finished); one group
#: after the other (faults.side_by_side each) takes about twice as long.
PHASES = (("shutdowns", "databases", "reports", "kills", "outages", "sends", "child_kills", "memory", "backends",
           "broker_restarts", "prefetch"),)
#: As many as the notebook's background runs at once (faults.Background): the suite runs beside
#: other tests on 2 cores, some of them timing-sensitive.
THREADS = 4


def recording(data_folder: Callable[[str], Path], folders: list[Path]) -> Callable[[str], Path]:
    def record(name: str) -> Path:
        folder = data_folder(name)
        folders.append(folder)
        return folder
    return record


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    out = Catalogue()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(faults, "Ledger", RecordingLedger)
        mp.setattr(faults, "data_folder", recording(faults.data_folder, out.folders))
        start_postgres = launcher.postgres.start_postgres

        def recorded_postgres(**kwargs):
            db = start_postgres(**kwargs)
            out.databases.append(db.folder)
            return db

        mp.setattr(launcher.postgres, "start_postgres", recorded_postgres)
        # A scratch folder another test of this process left current would hold the data folders:
        # here they go to temporary folders (test_data_folder_... covers the scratch).
        mp.setattr(scratch, "_current", None)
        with marked() as box:
            for phase in PHASES:
                calls = [f for group in phase for f in GROUPS[group]]
                with ThreadPoolExecutor(max_workers=THREADS) as pool:
                    # faults.side_by_side, a few at a time: each scenario starts and stops its own processes
                    results = [f.result() for f in [pool.submit(call) for call in calls]]
                out.results.update({f.__name__: r for f, r in zip(calls, results, strict=True)})
    out.leftovers = box.leftovers
    return out


def result(request, name: str):
    return request.getfixturevalue("catalogue").results[name]


# --- The fault scenarios -------------------------------------------------------------------

@pytest.mark.parametrize("name", SCENARIOS)
def test_counts_and_states(request, name):
    run: faults.Run = result(request, name)
    want = EXPECTED[name]
    if want.linux_only and not LINUX:
        # macOS: pool children outlive their SIGKILLed parent, so what they finish varies.
        assert run.counts()["sent"] == SENT and len(run.hit) <= AT_ONCE
        return
    assert run.counts() == want.counts, run.logs
    assert run.state_counts() == want.states
    assert len(run.hit) == want.hit
    assert {run.states[t] for t in run.lost} == ({want.lost_state} if want.lost_state else set())
    assert {run.states[t] for t in run.once} == {"SUCCESS"}


@pytest.mark.parametrize("name", SCENARIOS)
def test_invariants(request, name):
    run: faults.Run = result(request, name)
    want = EXPECTED[name]
    c = run.counts()
    assert len(set(run.sent)) == c["sent"] == want.counts["sent"]
    assert c["once"] + c["twice"] + c["lost"] == c["sent"]
    assert len(run.running_at_fault) == AT_ONCE and set(run.running_at_fault) <= set(run.sent)
    assert set(run.hit) <= set(run.running_at_fault)
    # Nothing is lost, and nothing starts twice, that the fault did not hit (the visibility
    # timeout is longer than any task waits on a living worker).
    assert set(run.lost) <= set(run.hit)
    assert set(run.rerun) <= set(run.hit)
    assert set(run.twice) <= set(run.rerun)
    assert max(run.started.values()) <= 2, f"a task started more than twice: {run.started}"
    if want.linux_only and not LINUX:
        return
    if want.counts["lost"]:
        assert set(run.lost) == set(run.hit), "the lost tasks are exactly those the fault hit"
    else:  # Celery promises it: acks_late (+ reject_on_worker_lost for a pool child), warm, soft
        assert run.lost == []
        if want.counts["rerun"]:
            assert set(run.rerun) == set(run.hit), "every task the fault hit ran again"


@pytest.mark.parametrize("name", SCENARIOS)
def test_commands_show_the_settings_as_given(request, name):
    run: faults.Run = result(request, name)
    want = EXPECTED[name]
    tail = want.tail.removeprefix(" -- ")
    assert run.settings == (tuple(tail.split()) if want.tail.startswith(" -- ") else ())
    survives = want.group == "child_kills"
    assert len(run.commands) == (1 if survives else 2), "a fresh worker only when the first is gone"
    url = re.search(r"^REDIS_URL=(redis://127\.0\.0\.1:\d+/0) ", run.commands[0])
    assert url, run.commands[0]
    for command, node in zip(run.commands, ("w1", "w2")[:len(run.commands)], strict=True):
        assert command.endswith(want.tail), command
        assert f"celery -A demo_tasks.reliability worker --loglevel=INFO -n {node}@%h --concurrency=2 " in command
        assert command.startswith(f"REDIS_URL={url[1]} ")
        assert (" -- " in command) is want.tail.startswith(" -- ")
        remapped = name in REMAPPED and node == "w1"  # the fresh worker is a plain one
        assert (" REMAP_SIGTERM=SIGQUIT celery " in command) is remapped, command


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_worker_shows_the_fault_and_its_pool(request, name):
    run: faults.Run = result(request, name)
    want = EXPECTED[name]
    after_fault = run.logs["w1"]
    if want.log is None:  # SIGKILLed: no shutdown of any kind
        assert "shutdown" not in after_fault.lower(), after_fault
    else:
        assert want.log in after_fault, after_fault
    if want.group == "child_kills":
        assert run.notes == {}
        assert "WorkerLostError" in after_fault
    elif want.linux_only and not LINUX:
        assert isinstance(run.notes["children_alive"], bool) and run.notes["exit_code"] == want.exit_code
    else:  # Linux: prefork children get PR_SET_PDEATHSIG=SIGKILL; elsewhere the group or a shutdown ends them
        assert run.notes == {"children_alive": False, "exit_code": want.exit_code}


def test_the_scenarios_leave_no_process_behind(catalogue):
    assert catalogue.leftovers == []


def test_the_database_scenario_removes_its_servers_folder(catalogue):
    assert len(catalogue.databases) == len(DATABASES)
    assert [folder for folder in catalogue.databases if folder.exists()] == []


def test_the_scenarios_leave_no_data_folder_behind(catalogue):
    """The persistent broker_restart and every broker_outage made one (in a temporary folder: no
    scratch here), a new one each, and removed it, the restarted broker's append-only file with it;
    so did the report scenario, for its project's SQLite file and media."""
    folders = catalogue.folders
    persistent = [n for n in RESTARTS if RESTART_EXPECTED[n][2]]
    assert len(folders) == len(persistent) + len(OUTAGES) + len(REPORTS) == len(set(folders)), folders
    assert all(f.parent == Path(tempfile.gettempdir()) for f in folders), folders
    assert sorted(f.name.split("-")[0] for f in folders) == \
        sorted(["report"] * len(REPORTS) + ["valkey"] * (len(persistent) + len(OUTAGES))), folders
    assert [f for f in folders if f.exists()] == []


# --- Prefetch ------------------------------------------------------------------------------

def ledger_of(run: faults.PrefetchRun) -> list[dict]:
    url = re.match(r"REDIS_URL=(\S+) ", run.commands[0])
    assert url, run.commands[0]
    return LEDGERS[url[1]]


@pytest.mark.parametrize("name", PREFETCH)
def test_prefetch_holds_short_tasks_behind_the_long_one(request, name):
    run: faults.PrefetchRun = result(request, name)
    held, tail = PREFETCH_EXPECTED[name]
    assert len(run.shorts) == 6 and sorted(run.waits) == sorted(run.shorts)
    assert run.held == run.shorts[:held], "worker a holds the first short tasks sent (the queue is FIFO)"
    for command, node in zip(run.commands, "ab", strict=True):
        assert command.endswith(tail), command
        assert f" -n {node}@%h --concurrency=1 " in command
        assert (" -- " in command) is (" -- " in tail)


@pytest.mark.parametrize("name", PREFETCH)
def test_held_tasks_wait_for_the_long_one_and_the_others_do_not(request, name):
    run: faults.PrefetchRun = result(request, name)
    steps = ledger_of(run)
    started = {s["id"]: s for s in steps if s["step"] == "started"}
    finished = {s["id"]: s["t"] for s in steps if s["step"] == "finished"}
    (long_id,) = set(started) - set(run.shorts)
    long_pid, long_end = started[long_id]["pid"], finished[long_id]
    assert long_end > started[long_id]["t"]
    for t in run.shorts:
        sent_at = finished[t] - run.waits[t]
        if t in run.held:  # behind the long task, in worker a's only process
            assert started[t]["pid"] == long_pid and started[t]["t"] >= long_end
            assert run.waits[t] >= long_end - sent_at, "a held task waits out the long task's remaining time"
        else:  # worker b, free, ran it beside the long task
            assert started[t]["pid"] != long_pid
            assert started[t]["t"] < long_end, f"{t} waited behind the long task though a does not hold it"


# --- The broker restarts with tasks queued -------------------------------------------------

@pytest.mark.parametrize("name", RESTARTS)
def test_a_restarted_broker_keeps_the_queue_only_with_persistence(catalogue, name):
    run: faults.Run = catalogue.results[name]
    want, states, queued_after, shown = RESTART_EXPECTED[name]
    assert run.counts() == want, run.logs
    assert run.state_counts() == states
    assert run.notes == {"queued_before": SENT, "queued_after": queued_after}
    assert run.hit == run.sent and run.running_at_fault == [], "the crash hit every task: all were queued"
    assert run.settings == (shown,) and run.row()[1] == shown
    if queued_after:  # what came back ran once each, on the worker that came after the restart
        assert run.started == run.finished == dict.fromkeys(run.sent, 1)
        assert {run.states[t] for t in run.sent} == {"SUCCESS"}
    else:  # nothing reached the disk: no message to run, and nothing stored for the caller either
        assert run.started == run.finished == {} and run.steps == []
        assert {run.states[t] for t in run.sent} == {""}


@pytest.mark.parametrize("name", RESTARTS)
def test_the_broker_restarts_on_its_port_with_its_data_folder(catalogue, name):
    run: faults.Run = catalogue.results[name]
    valkey, worker = run.commands
    port = re.search(r" --port (\d+) ", valkey)
    assert port, valkey
    assert worker.startswith(f"REDIS_URL=redis://127.0.0.1:{port[1]}/0 celery -A demo_tasks.reliability worker ")
    folder = re.search(r" --appendonly yes --appendfsync always --dir (\S+)$", valkey)
    if RESTART_EXPECTED[name][2]:
        assert folder and Path(folder[1]) in catalogue.folders, valkey
    else:
        assert folder is None and "--appendonly yes" not in valkey, valkey


# --- Sending while the broker is down ------------------------------------------------------

#: Celery's own defaults, as the scenario's sender has them.
RETRY_POLICY = DEFAULTS["task_publish_retry_policy"]
CONNECTION_TIMEOUT = DEFAULTS["broker_connection_timeout"]
#: How long a send may take that does not wait out a timeout: generous, for a loaded machine.
QUICK = 5.0


def policy_pauses(policy: dict) -> float:
    """What a publish retried under ``policy`` sleeps, at least, before it gives up: one pause per retry."""
    return sum(min(policy["interval_start"] + i * policy["interval_step"], policy["interval_max"])
               for i in range(policy["max_retries"]))


#: How long each failed send takes: with Celery's default publish retry policy, its pauses
#: (0 + 0.2 + 0.4 s) and little more; with retry=False, more than broker_connection_timeout (4 s):
#: kombu still retries the connection (after 2 s, then 4 s more) until that much time has passed.
SEND_BOUNDS = {"send_with_retry": (0.9 * policy_pauses(RETRY_POLICY), QUICK),
               "send_without_retry": (CONNECTION_TIMEOUT, 15.0)}


@pytest.mark.parametrize("name", SENDS)
def test_a_send_to_a_broker_that_is_down_raises_and_one_after_it_is_back_goes_through(catalogue, name):
    run: faults.SendRun = catalogue.results[name]
    *failed, (last, last_seconds) = run.attempts
    assert len(failed) == SEND_ATTEMPTS, run.attempts
    for outcome, _ in failed:
        assert outcome.startswith("kombu.exceptions.OperationalError: "), outcome
        if LINUX:  # the errno's text is the platform's
            assert re.fullmatch(r"kombu\.exceptions\.OperationalError: "
                                r"Error 111 connecting to 127\.0\.0\.1:\d+\. Connection refused\.", outcome)
    assert last == "sent" and last_seconds < QUICK
    assert run.policy == RETRY_POLICY, "the scenario's sender keeps Celery's default policy"


@pytest.mark.parametrize("name", SENDS)
def test_a_failed_send_gives_up_within_its_bounds(catalogue, name):
    low, high = SEND_BOUNDS[name]
    for outcome, seconds in catalogue.results[name].attempts[:-1]:
        assert low <= seconds < high, (outcome, seconds)


def test_retry_false_is_slower_than_celerys_default_retries(catalogue):
    """retry=False skips the publish retry policy (a few short pauses), but not kombu's connection
    retries (every 2 s until broker_connection_timeout has passed): each failed send takes longer."""
    retried, once = (catalogue.results[n].attempts[:-1] for n in ("send_with_retry", "send_without_retry"))
    assert max(s for _, s in retried) < min(s for _, s in once), (retried, once)


# --- The broker restarts under a busy worker -----------------------------------------------

@pytest.mark.parametrize("name", OUTAGES)
def test_a_broker_restart_under_a_busy_worker(catalogue, name):
    run: faults.Run = catalogue.results[name]
    want, survives = OUTAGE_EXPECTED[name]
    assert run.counts() == want, run.logs
    assert run.state_counts() == {"SUCCESS": OUTAGE_SENT}
    assert sorted(run.running_at_fault) == sorted(run.sent), "every task sent was running when the broker went"
    assert run.notes == {"worker_survived": survives, "exit_code": None if survives else 1}
    assert "Connection to broker lost" in run.logs["w1"]
    if survives:  # it reconnected, and its tasks finished once
        assert "Connected to redis://" in run.logs["w1"], run.logs["w1"]
        assert run.hit == [] and run.restart_gaps() == {}
    else:  # the fresh worker ran every task again, in processes of its own
        assert sorted(run.hit) == sorted(run.restart_gaps()) == sorted(run.sent)
        first = {s["id"]: s["pid"] for s in reversed(run.steps) if s["step"] == "started"}
        again = {s["id"]: s["pid"] for s in run.steps if s["step"] == "started"}
        assert all(first[t] != again[t] for t in run.sent), run.steps


@pytest.mark.parametrize("name", OUTAGES)
def test_an_outage_worker_shows_its_settings_and_the_same_broker(catalogue, name):
    run: faults.Run = catalogue.results[name]
    survives = OUTAGE_EXPECTED[name][1]
    nodes = ["w1"] if survives else ["w1", "w2"]
    assert sorted(run.logs) == nodes and len(run.commands) == len(nodes)
    url = re.match(r"REDIS_URL=(redis://127\.0\.0\.1:\d+/0) ", run.commands[0])
    assert url, run.commands[0]
    tail = " -- " + " ".join(run.settings) if run.settings else PLAIN
    for command, node in zip(run.commands, nodes, strict=True):
        assert command.startswith(f"{url[0]}celery -A demo_tasks.reliability worker --loglevel=INFO -n {node}@%h ")
        assert command.endswith(tail), command


KOMBU_5_7_BUG = "Unrecoverable error: AttributeError(\"'NoneType' object has no attribute 'hostname'\")"


@pytest.mark.parametrize("name", [n for n in OUTAGES if not OUTAGE_EXPECTED[n][1]])
def test_kombu_5_7_bug_kills_a_late_ack_worker_when_the_broker_restarts(catalogue, name):
    """When this fails, a kombu upgrade fixed it: the chapter's text and OUTAGE_EXPECTED change."""
    run: faults.Run = catalogue.results[name]
    assert KOMBU_5_7_BUG in run.logs["w1"], run.logs["w1"]
    assert KOMBU_5_7_BUG not in run.logs["w2"]


def test_a_worker_that_survives_the_restart_has_no_kombu_bug(catalogue):
    assert KOMBU_5_7_BUG not in catalogue.results["outage_early_ack"].logs["w1"]


# --- The result backend goes down ----------------------------------------------------------

@pytest.mark.parametrize("name", BACKENDS)
def test_a_result_backend_outage(catalogue, name):
    run: faults.BackendRun = catalogue.results[name]
    row, state, seen, log = BACKEND_EXPECTED[name]
    assert run.row() == [run.title, " ".join(run.settings) or "（默认）", *row]
    assert len(run.sent) == BACKEND_SENT
    assert run.finished == dict.fromkeys(run.sent, 1), "the ledger: every task ran, once"
    assert run.states == dict.fromkeys(run.sent, state), "what the backend holds once it is back"
    assert run.seen == dict.fromkeys(run.sent, seen), "what the caller's get() gave"
    assert log in run.log, run.log


@pytest.mark.parametrize("name", BACKENDS)
def test_the_backend_is_a_server_of_its_own(catalogue, name):
    run: faults.BackendRun = catalogue.results[name]
    (command,) = run.commands
    urls = re.match(r"REDIS_URL=(redis://127\.0\.0\.1:\d+/0) CELERY_RESULT_BACKEND=(redis://127\.0\.0\.1:\d+/0) "
                    r"celery -A demo_tasks\.reliability worker ", command)
    assert urls and urls[1] != urls[2], command
    assert run.settings == (faults.BACKEND_RETRY if name == "backend_down_retry" else ())
    assert command.endswith(" -- " + " ".join(run.settings) if run.settings else PLAIN), command


# --- PostgreSQL restarted under a Django worker -----------------------------------------------

#: Each case of database_restarts, in order: its state in the result table, and what it saw.
DATABASE_CASES = [
    ("两个任务之间", "SUCCESS", "新连接"),
    ("worker 自己的线程（不是任务）", "（线程没有结果）",
     "OperationalError: terminating connection due to administrator command"
     " → OperationalError: the connection is closed"),
    ("任务执行中", "STARTED", "存结果时 OperationalError: the connection is closed"),
    ("任务执行中，任务自己重试", "SUCCESS", "重试后成功，用的是新连接"),
    # result_backend_always_retry does not retry psycopg 3's OperationalError (django-celery-results
    # retries InterfaceError only): the same as without it.
    ("任务执行中，存结果时重试", "STARTED", "存结果时 OperationalError: the connection is closed"),
]


def test_database_cases_give_their_states_and_errors(catalogue):
    run: faults.DatabaseRun = catalogue.results["database_restart"]
    assert [(c["case"], c["state"], c["seen"]) for c in run.cases] == DATABASE_CASES
    assert run.forced == 0, "every fast shutdown ended by itself"


def test_the_django_fixup_gives_every_task_a_new_connection(catalogue):
    run: faults.DatabaseRun = catalogue.results["database_restart"]
    assert len(run.backends) == 2 and run.backends[0] != run.backends[1]


def test_a_thread_outside_tasks_keeps_its_broken_connection(catalogue):
    run: faults.DatabaseRun = catalogue.results["database_restart"]
    assert run.side[0].startswith("backend ") and run.side[0].split()[1].isdigit()
    assert run.side[1:] == ["OperationalError: terminating connection due to administrator command",
                            "OperationalError: the connection is closed"]


def test_the_retrying_task_retried_on_the_database_error_and_succeeded(catalogue):
    run: faults.DatabaseRun = catalogue.results["database_restart"]
    assert run.retries >= 1
    # Each of the three tasks the stop hit could not store its state (FAILURE; the retrying one
    # its RETRY, after it had sent its retry): the first such record of each, the broken connection named.
    assert list(run.logs) == [case for case, state, _ in DATABASE_CASES[2:]]
    for line in run.logs.values():
        assert re.fullmatch(r"\[[-\d :,]+: WARNING/ForkPoolWorker-1\] celery/app/trace\.py:\d+: "
                            r"RuntimeWarning: Exception raised outside body: "
                            r"OperationalError\('the connection is closed'\):", line), line


def test_the_database_scenario_shows_its_server_and_workers(catalogue):
    run: faults.DatabaseRun = catalogue.results["database_restart"]
    server, w1, w2 = run.commands
    assert " -D " in server and "listen_addresses=127.0.0.1" in server and "postgres" in server
    for command in (w1, w2):
        assert "celery -A django_demo worker" in command and " -I demo_tasks.database" in command
        assert "DATABASE_URL=postgres://course:***@127.0.0.1:" in command, "the password is not shown"
    assert w1.endswith(" -I demo_tasks.database") and w2.endswith(" -- result.backend_always_retry=true")
    assert run.server_log.splitlines() == ["LOG:  received fast shutdown request",
                                           "FATAL:  terminating connection due to administrator command"]


# --- Chapter 05's report, its worker killed --------------------------------------------------

def test_the_report_page_shows_the_lost_report_with_a_retry_button(catalogue):
    run: faults.ReportRun = catalogue.results["report_worker_killed"]
    assert 20 <= run.progress_at_kill < 100
    assert run.page == {"status": "失败", "retry": True,
                        "error": f"任务丢失：{faults.REPORT_LOST_AFTER} 秒没有收到进度（worker 可能被停止了）。"}
    # The watchdog counts from the last progress, which came at most one step before the kill;
    # the page asks every second or so (a broken watchdog fails here, not at a browser timeout).
    assert faults.REPORT_LOST_AFTER - faults.REPORT_STEP <= run.waited < faults.REPORT_LOST_AFTER + 10
    assert re.fullmatch(r"report [0-9a-f-]{36}: task [0-9a-f-]{36} is lost \(running\); error id [0-9a-f]{8}",
                        run.server_log), run.server_log


def test_a_killed_report_leaves_no_file_and_a_retry_makes_exactly_one(catalogue):
    run: faults.ReportRun = catalogue.results["report_worker_killed"]
    assert run.files_after_kill == []
    assert run.page_after_retry == {"status": "已完成", "download": True}
    assert len(run.files_after_retry) == 1
    assert re.fullmatch(r"report-[0-9a-f-]{36}-[0-9a-f]{8}\.csv", run.files_after_retry[0])
    lost_task = run.server_log.split("task ")[1][:8]
    assert not run.files_after_retry[0].endswith(f"-{lost_task}.csv"), "the retry ran under a new task id"
    assert launcher.sanitize(run.files_after_retry[0]) == "report-REPORT-ID-TASK.csv"


def test_the_report_scenario_shows_its_worker_and_server(catalogue):
    run: faults.ReportRun = catalogue.results["report_worker_killed"]
    worker, server = run.commands
    assert "celery -A django_demo worker" in worker and "manage.py runserver --noreload" in server
    for command in (worker, server):
        assert f"REPORT_LOST_AFTER_SECONDS={faults.REPORT_LOST_AFTER}" in command
        assert "COURSE_ADMIN_PASSWORD=\"$(cat " in command, "the password is read from its file, never shown"


# --- A leaking task ------------------------------------------------------------------------

def pids_in_order(run: faults.MemoryRun) -> list[int]:
    return list(dict.fromkeys(r["pid"] for r in run.records))


@pytest.mark.parametrize("name", MEMORY)
def test_every_leak_runs_on_one_pool_process_at_a_time(catalogue, name):
    run: faults.MemoryRun = catalogue.results[name]
    assert len(run.records) == LEAKS and run.peak() == max(r["rss_mb"] for r in run.records)
    option = MEMORY_OPTIONS[name]
    (command,) = run.commands
    assert " --concurrency=1 " in command and command.endswith(f" {option}" if option else PLAIN), command
    assert run.options == ((option,) if option else ())
    pids = [r["pid"] for r in run.records]
    for pid in pids_in_order(run):  # one process after the other: each ran a run of consecutive tasks
        first, last = pids.index(pid), len(pids) - 1 - pids[::-1].index(pid)
        assert set(pids[first:last + 1]) == {pid}, pids
        rss = [r["rss_mb"] for r in run.records[first:last + 1]]
        # each task keeps 40 MB more in its process, for good
        assert all(LEAK_MB - 10 <= b - a <= LEAK_MB + 10 for a, b in itertools.pairwise(rss)), rss


def test_by_default_the_pool_process_only_grows(catalogue):
    run: faults.MemoryRun = catalogue.results["memory_default"]
    assert run.processes == 1
    rss = [r["rss_mb"] for r in run.records]
    assert rss == sorted(set(rss)) and run.peak() == rss[-1], "strictly increasing: nothing is ever given back"


def test_max_tasks_per_child_replaces_the_pool_process_after_that_many_tasks(catalogue):
    run: faults.MemoryRun = catalogue.results["memory_max_tasks"]
    limit = int(MEMORY_OPTIONS["memory_max_tasks"].split("=")[1])
    pids = pids_in_order(run)
    assert len(pids) == -(-LEAKS // limit) == run.processes == 2
    assert [r["pid"] for r in run.records] == [pids[i // limit] for i in range(LEAKS)], \
        f"a new process for task {limit + 1}"
    assert abs(run.records[limit]["rss_mb"] - run.records[0]["rss_mb"]) < LEAK_MB / 2, \
        "the new process starts where the first one did"


def test_max_memory_per_child_replaces_the_pool_process_after_the_task_that_crossed_it(catalogue):
    run: faults.MemoryRun = catalogue.results["memory_max_memory"]
    limit_mb = faults.MAX_MEMORY_KIB / 1024
    assert run.processes == 2, run.records
    _, second = pids_in_order(run)
    rss = [r["rss_mb"] for r in run.records]
    crossing = next(i for i, mb in enumerate(rss) if mb > limit_mb)
    last_of_first = [r["pid"] for r in run.records].index(second) - 1
    assert last_of_first == crossing, f"the first process is not the one that crossed {limit_mb:g} MB last: {rss}"
    assert abs(rss[crossing + 1] - rss[0]) < LEAK_MB / 2, "the new process starts where the first one did"


# --- faults.data_folder --------------------------------------------------------------------

def test_data_folder_is_in_the_chapters_scratch_or_else_a_new_temporary_one(tmp_path, monkeypatch):
    monkeypatch.setattr(scratch, "_current", None)
    made = [faults.data_folder("valkey-data-test") for _ in range(2)]
    try:
        assert made[0] != made[1]
        for folder in made:
            assert folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith("valkey-data-test-")
            assert folder.is_dir() and list(folder.iterdir()) == []
    finally:
        for folder in made:
            folder.rmdir()
    monkeypatch.setattr(scratch, "_current", tmp_path)
    (tmp_path / "valkey-data-test").mkdir()
    (tmp_path / "valkey-data-test" / "appendonly.aof").write_text("left from before")
    folder = faults.data_folder("valkey-data-test")
    assert folder == tmp_path / "valkey-data-test", "a learner finds it in the chapter's scratch folder"
    assert folder.is_dir() and list(folder.iterdir()) == [], "emptied"


def test_persistence_writes_every_command_to_an_append_only_file_in_the_folder(tmp_path):
    assert faults.persistence(tmp_path) == ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path))


# --- Failure paths: clear errors, fast, and nothing left -----------------------------------

@contextmanager
def leaves_nothing_behind() -> Iterator[None]:
    """Nothing started inside is still running afterwards: not in launcher.running(), not
    among this process's children, not anywhere (an orphan keeps its marker)."""
    me = psutil.Process()
    before_running = launcher.running()
    before_children = {p.pid for p in me.children(recursive=True)}
    with marked() as box:
        yield
    assert [p for p in launcher.running() if p not in before_running] == []
    new = [p for p in me.children(recursive=True) if p.pid not in before_children and alive(p.pid)]
    assert new == [], [command_line(p) for p in new]
    assert box.leftovers == []


@contextmanager
def scenario_broker() -> Iterator[tuple[launcher.Broker, faults.Ledger, Celery]]:
    """A Valkey, a ledger and a sender of their own, as run_scenario has them."""
    broker = launcher.start_embedded()
    ledger = faults.Ledger(broker)
    sender = Celery(faults.APP, broker=broker.url, backend=broker.url, set_as_current=False)
    try:
        yield broker, ledger, sender
    finally:
        ledger.close()
        sender.close()
        broker.stop()


def test_the_leftover_check_finds_an_orphan_and_sweeps_it():
    """The check the tests above rely on can fail: a process whose parent is gone is found."""
    with marked() as box:
        proc = launcher.Proc("orphaner", ["bash", "-c", "sleep 60 & echo $!"])
        assert proc.popen.wait(10) == 0
        orphan = int(proc.log().split()[0])
        forked = psutil.Process(orphan)  # bash's fork, until it has exec'd sleep
        assert launcher.wait_for(lambda: command_line(forked) == "sleep 60", 10)
    try:
        assert box.leftovers == ["sleep 60"]
        assert launcher.wait_for(lambda: not alive(orphan), 10), "marked() did not sweep the orphan"
    finally:
        proc.stop()


def test_waiting_for_more_running_tasks_than_a_worker_can_run_fails_at_its_timeout():
    """What run_scenario raises when k tasks never run at once (k > concurrency, n < k)."""
    with leaves_nothing_behind(), scenario_broker() as (broker, ledger, sender):
        worker = faults.start_worker(broker, "w1", concurrency=1)
        try:
            for _ in range(2):
                sender.send_task(reliability.work.name, args=(0.2,))
            with pytest.raises(launcher.ProcessError,
                               match=r"worker-w1 \(pid \d+\) did not get to 2 tasks running at once within 1 s"):
                returns_within(20, lambda: faults.wait_running(ledger, 2, worker, timeout=1),
                               "wait_running() for 2 tasks on one process")
        finally:
            worker.stop()


def test_a_scenario_that_never_settles_says_what_is_left():
    with leaves_nothing_behind(), scenario_broker() as (_, ledger, sender):
        sender.send_task(reliability.work.name, args=(0.1,))  # no worker will take it
        with pytest.raises(faults.ScenarioError,
                           match=r"did not settle within 1 s: 1 queued, 0 unacknowledged, running \[\]"):
            returns_within(20, lambda: faults.wait_settled(ledger, sender, [], timeout=1),
                           "wait_settled() with a task nobody takes")


class FaultFailed(RuntimeError):
    pass


def _kill_main_then_fail(worker: launcher.Proc, ledger: faults.Ledger) -> None:
    worker.send_signal(signal.SIGKILL)  # the pool children are orphans now (on macOS alive)
    raise FaultFailed("the fault failed half-way")


def test_a_scenario_that_fails_half_way_raises_its_error_and_leaves_no_process():
    fault = faults.Fault("杀了主进程就出错", _kill_main_then_fail)
    with leaves_nothing_behind(), pytest.raises(FaultFailed, match="half-way"):
        returns_within(90, lambda: faults.run_scenario("半途出错", fault), "run_scenario() with a failing fault")


def test_a_worker_option_celery_does_not_know_is_a_clear_error_at_once():
    with leaves_nothing_behind(), pytest.raises(launcher.ProcessError) as error:
        returns_within(30, lambda: faults.prefetch_hostages("坏选项", options=("--no-such-option",)),
                       "prefetch_hostages() with an unknown option")
    assert re.search(r"worker-a \(pid \d+\) exited with code 2 while we waited for a log line with ' ready\.'",
                     str(error.value))
    assert "No such option '--no-such-option'" in str(error.value)


# --- launcher.Proc: send_signal() and children() -------------------------------------------

def test_children_are_the_direct_children_of_the_main_process_alive_now():
    proc = launcher.Proc("family", ["bash", "-c", "sleep 60 & bash -c 'sleep 60; true' & wait"])

    def inner() -> psutil.Process | None:
        return next((k for k in proc.children() if k.name() == "bash"), None)

    try:
        assert launcher.wait_for(lambda: len(proc.children()) == 2 and inner() and inner().children(), 10), \
            proc.children()
        kids, shell = proc.children(), inner()
        assert sorted(k.name() for k in kids) == ["bash", "sleep"]
        assert all(k.ppid() == proc.pid for k in kids)
        (grandchild,) = shell.children()
        assert grandchild.pid not in {k.pid for k in kids}, "children() are the direct ones only"
        os.kill(next(k for k in kids if k.name() == "sleep").pid, signal.SIGKILL)
        assert launcher.wait_for(lambda: [k.pid for k in proc.children()] == [shell.pid], 10), proc.children()
    finally:
        proc.stop()
    assert not group_alive(proc.pid)
    assert proc.children() == [], "a process that is gone has no children"


def test_send_signal_reaches_the_main_process_alone_or_its_whole_group():
    proc = launcher.Proc("sleepers", ["bash", "-c", "sleep 60 & sleep 60 & wait"])
    try:
        assert launcher.wait_for(lambda: len(proc.children()) == 2, 10), proc.children()
        kids = proc.children()
        proc.send_signal(signal.SIGTERM)
        assert proc.popen.wait(10) == -signal.SIGTERM
        assert all(alive(k.pid) for k in kids), "SIGTERM to the main process reached its children"
        proc.send_signal(signal.SIGKILL, group=True)  # the orphans are still in its group
        assert launcher.wait_for(lambda: not group_alive(proc.pid), 10)
        assert not any(alive(k.pid) for k in kids)
        proc.send_signal(signal.SIGTERM)  # to a process that is gone: nothing, no error
        proc.send_signal(signal.SIGTERM, group=True)
    finally:
        proc.stop()
    assert proc.stopped_by is None, "stop() found nothing left to stop"


@pytest.mark.parametrize("kwargs", [{"k": 3}, {"n": 1}, {"k": 0}], ids=["k>concurrency", "n<k", "k=0"])
def test_a_scenario_whose_k_tasks_can_never_run_at_once_is_refused_before_anything_starts(kwargs):
    with leaves_nothing_behind(), pytest.raises(ValueError, match=r"can never run at once .* choose 1 <= k"):
        returns_within(5, lambda: faults.run_scenario("坏输入", faults.WARM, **kwargs), "run_scenario() with bad k")
