"""Chapter 12's fault harness (instruments.faults) against real processes.

Every scenario of the catalogue (KILLS, CHILD_KILLS, SHUTDOWNS, PREFETCH) runs once,
on a Valkey and real `celery` workers of its own: each group side by side
(faults.side_by_side) in a module-scoped fixture, and the tests below are
parametrized over the results, so the suite pays for each scenario once.

What they prove, per scenario: the counts the chapter prints (once, twice, lost,
rerun) and the states the result backend holds; the invariants that hold whatever
the machine (every task counted once; nothing is lost or run twice that the fault
did not hit; nothing lost where Celery promises it); that each worker's displayed
command carries the settings exactly as the chapter gives them; that a scenario
leaves no process behind. Then the failure paths (clear errors within their
timeouts, nothing left running) and launcher.Proc's send_signal() and children().
"""

from __future__ import annotations

import os
import re
import signal
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil
import pytest
import redis
from celery import Celery

import launcher
from demo_tasks import reliability
from instruments import faults
from launcher import procs
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
    #: Only on Linux (pool children die with their SIGKILLed parent there).
    linux_only: bool = False


def counts(once: int, lost: int, rerun: int = 0, twice: int = 0) -> dict[str, int]:
    return {"sent": SENT, "once": once, "twice": twice, "lost": lost, "rerun": rerun}


PLAIN = "--without-heartbeat"  # the last option of every worker without settings
LATE = " -- task.acks_late=true"
LOST_CHILD = "exited with 'signal 9 (SIGKILL)'"

EXPECTED = {
    "early_ack_killed": Expected("kills", counts(once=2, lost=2), {"STARTED": 2, "SUCCESS": 2}, 2,
                                 "STARTED", PLAIN, None),
    "early_ack_main_killed": Expected("kills", counts(once=2, lost=2), {"STARTED": 2, "SUCCESS": 2}, 2,
                                      "STARTED", PLAIN, None, linux_only=True),
    "late_ack_killed": Expected("kills", counts(once=4, lost=0, rerun=2), {"SUCCESS": 4}, 2,
                                None, LATE, None),
    "child_killed_early_ack": Expected("child_kills", counts(once=3, lost=1), {"FAILURE": 1, "SUCCESS": 3}, 1,
                                       "FAILURE", PLAIN, LOST_CHILD),
    "child_killed_late_ack": Expected("child_kills", counts(once=3, lost=1), {"FAILURE": 1, "SUCCESS": 3}, 1,
                                      "FAILURE", LATE, LOST_CHILD),
    "child_killed_late_ack_reject": Expected(
        "child_kills", counts(once=4, lost=0, rerun=1), {"SUCCESS": 4}, 1, None,
        " -- task.acks_late=true task.reject_on_worker_lost=true", LOST_CHILD),
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
    "runtime_stop_early_ack": Expected("shutdowns", counts(once=2, lost=2), {"STARTED": 2, "SUCCESS": 2}, 2,
                                       "STARTED", PLAIN, "Warm shutdown"),
    "runtime_stop_late_ack": Expected("shutdowns", counts(once=4, lost=0, rerun=2), {"SUCCESS": 4}, 2,
                                      None, LATE, "Warm shutdown"),
}
#: Short tasks worker a holds behind its long task, and how its workers' commands end.
PREFETCH_EXPECTED = {
    "prefetch_default": (4, PLAIN),
    "prefetch_one": (1, " --prefetch-multiplier=1"),
    "prefetch_one_late_ack": (0, " --prefetch-multiplier=1 -- task.acks_late=true"),
    "prefetch_disabled": (0, " --disable-prefetch"),
}
GROUPS = {"kills": faults.KILLS, "child_kills": faults.CHILD_KILLS, "shutdowns": faults.SHUTDOWNS,
          "prefetch": faults.PREFETCH}
SCENARIOS = [f.__name__ for f in (*faults.KILLS, *faults.CHILD_KILLS, *faults.SHUTDOWNS)]
PREFETCH = [f.__name__ for f in faults.PREFETCH]


def test_every_scenario_of_the_catalogue_has_its_expectations():
    assert sorted(EXPECTED) == sorted(SCENARIOS)
    assert sorted(PREFETCH_EXPECTED) == sorted(PREFETCH)
    assert all(EXPECTED[f.__name__].group == group for group, fs in GROUPS.items() for f in fs
               if group != "prefetch")


# --- Running each group once ------------------------------------------------------------------

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
class GroupRun:
    results: dict[str, object]
    #: Processes started by the group that were still there when it returned (swept since).
    leftovers: list[str]


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


def run_group(calls: Sequence[Callable[[], object]]) -> GroupRun:
    with marked() as box, pytest.MonkeyPatch.context() as mp:
        mp.setattr(faults, "Ledger", RecordingLedger)
        results = faults.side_by_side(*calls)
    return GroupRun({f.__name__: r for f, r in zip(calls, results, strict=True)}, box.leftovers)


@pytest.fixture(scope="module")
def kills() -> GroupRun:
    return run_group(faults.KILLS)


@pytest.fixture(scope="module")
def child_kills() -> GroupRun:
    return run_group(faults.CHILD_KILLS)


@pytest.fixture(scope="module")
def shutdowns() -> GroupRun:
    return run_group(faults.SHUTDOWNS)


@pytest.fixture(scope="module")
def prefetch() -> GroupRun:
    return run_group(faults.PREFETCH)


def result(request, name: str):
    group = EXPECTED[name].group if name in EXPECTED else "prefetch"
    return request.getfixturevalue(group).results[name]


# --- The fault scenarios ---------------------------------------------------------------------

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
    assert len(set(run.sent)) == c["sent"] == SENT
    assert c["once"] + c["twice"] + c["lost"] == c["sent"]
    assert len(run.running_at_fault) == AT_ONCE and set(run.running_at_fault) <= set(run.sent)
    assert set(run.hit) <= set(run.running_at_fault)
    # Nothing is lost, and nothing starts twice, that the fault did not hit (the visibility
    # timeout is longer than any task waits on a living worker).
    assert set(run.lost) <= set(run.hit)
    assert set(run.rerun) <= set(run.hit)
    assert set(run.twice) <= set(run.rerun)
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
        remapped = name == "remapped_sigterm" and node == "w1"  # the fresh worker is a plain one
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
        assert isinstance(run.notes["children_alive"], bool)
    else:  # Linux: prefork children get PR_SET_PDEATHSIG=SIGKILL; elsewhere the group or a shutdown ends them
        assert run.notes == {"children_alive": False}


@pytest.mark.parametrize("group", GROUPS)
def test_a_group_leaves_no_process_behind(request, group):
    assert request.getfixturevalue(group).leftovers == []


# --- Prefetch ---------------------------------------------------------------------------------

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


# --- Failure paths: clear errors, fast, and nothing left --------------------------------------

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


# --- launcher.Proc: send_signal() and children() ----------------------------------------------

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
