"""Chapter 08's measurements (instruments.parallelism) with real workers, small sizes.

What is checked is what load cannot change: every setup returns the serial results
(predicted independently: primes counted here, the flaky service's values from its
hash); which calls the service saw at the same time (by its own arrival times, each
call held at least ``SLOW`` seconds); times only from below; which worker ran what
(by the hostname in the run records); the chapter's verdicts, which are orderings and
a bound on CPU time per second of wall time (one core at most, where the setup allows
no more). Never an upper bound on a time, never a speedup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

import launcher
from instruments import parallelism as par
from services import flaky_service
from tests.test_tables import as_compared

#: How long the service holds every call (it answers every call "slow").
SLOW = 0.5
IO_CALLS = 4
CPU_PIECES, CPU_LIMIT = 3, 20_000
# Reports of 0.5 s: the lower bound below allows one report to have run before the ping
# is sent (this process can be held up that long on a loaded machine only rarely).
BACKLOG, SLOW_REPORT, ROUNDS = 3, 0.5, 2


@pytest.fixture(scope="module")
def wf(workflows_app, broker):
    broker.flush()  # no message or record left by another module
    return workflows_app


@pytest.fixture(scope="module")
def service():
    s = launcher.start_flaky_service(unavailable=0, timeout=0, slow=1.0, slow_seconds=SLOW)
    try:
        yield s
    finally:
        s.cleanup()


@pytest.fixture(scope="module")
def rows(wf, broker, service):
    return par.measure_parallelism(broker, service, cpu_pieces=CPU_PIECES, cpu_limit=CPU_LIMIT,
                                   io_calls=IO_CALLS, threads=8)


@pytest.fixture(scope="module")
def latency(wf, broker):
    return par.measure_fast_latency(broker, rounds=ROUNDS, slow_seconds=SLOW_REPORT, backlog=BACKLOG)


def by_setup(rows, kind: str) -> dict[str | None, par.Row]:
    """The rows of one kind, by the worker that ran them (None: serial, in this process)."""
    return {r.worker: r for r in rows if r.kind == kind}


def requests_during(service, row: par.Row) -> list[dict]:
    """The calls the service received while ``row`` was being measured."""
    return [q for q in service.requests() if row.started_at <= q["t"] <= row.ended_at]


def most_at_once(arrivals: Sequence[float], held: float) -> int:
    """How many requests were in the service at the same moment, at least: each one is
    counted from its arrival time for ``held`` seconds (how long the service holds every
    call before answering -- it holds them at least that long, so the count is a lower bound)."""
    events = sorted([(t, 1) for t in arrivals] + [(t + held, -1) for t in arrivals])
    most = current = 0
    for _, change in events:  # at equal times the -1 sorts first: touching is not overlapping
        current += change
        most = max(most, current)
    return most


# --- (a) parallelism ----------------------------------------------------------------------

def test_every_setup_gives_the_serial_results(rows, wf, service):
    expected_cpu = [wf.count_primes_here(CPU_LIMIT + 1000 * i) for i in range(CPU_PIECES)]
    # The service's value is a hash of (call id, attempt): predicted without calling it.
    expected_io = [flaky_service.value(f"ch08-io-{i:02d}", 0, seed=service.seed) for i in range(IO_CALLS)]
    setups = [None, "ch08-par-c1", "ch08-par-cpus", "ch08-par-cpus2", "ch08-par-threads"]
    assert list(by_setup(rows, "CPU")) == setups
    assert list(by_setup(rows, "I/O")) == setups
    for row in rows:
        assert row.results == (expected_cpu if row.kind == "CPU" else expected_io), row.setup
        assert row.same_results, row.setup
    assert len(set(expected_cpu)) == CPU_PIECES, "pieces of different sizes: a mixed-up order would show"


def test_the_workers_are_stopped_once_measured(rows):
    names = {f"worker-{r.worker}" for r in rows if r.worker}
    assert names == {"worker-ch08-par-c1", "worker-ch08-par-cpus", "worker-ch08-par-cpus2", "worker-ch08-par-threads"}
    assert not names & {p.name for p in launcher.running()}


def test_each_setup_made_its_own_calls_and_one_at_a_time_takes_their_sum(rows, service):
    calls = [f"ch08-io-{i:02d}" for i in range(IO_CALLS)]
    io = by_setup(rows, "I/O")
    for row in io.values():
        seen = requests_during(service, row)
        assert sorted(q["task"] for q in seen) == calls, row.setup
        assert {(q["outcome"], q["status"]) for q in seen} == {("slow", 200)}
    # One call at a time: each held SLOW seconds, so at least their sum (a lower bound).
    for one_at_a_time in (io[None], io["ch08-par-c1"]):
        assert one_at_a_time.seconds >= IO_CALLS * SLOW
        assert most_at_once([q["t"] for q in requests_during(service, one_at_a_time)], SLOW) == 1


def test_the_threads_pool_made_its_calls_side_by_side(rows, service):
    threads = by_setup(rows, "I/O")["ch08-par-threads"]
    arrivals = [q["t"] for q in requests_during(service, threads)]
    # A call that arrived before the previous one had been answered (held >= SLOW s) overlapped it.
    assert most_at_once(arrivals, SLOW) >= 2, arrivals


def test_most_at_once_counts_overlaps_from_arrival_times():
    assert most_at_once([], 0.5) == 0
    assert most_at_once([0.0, 0.5, 1.0], 0.5) == 1, "each arrives as the previous is answered"
    assert most_at_once([0.0, 0.1, 0.2, 1.0], 0.5) == 3
    assert most_at_once([1.0, 0.0, 0.4], 0.5) == 2, "order of arrival does not matter"


def test_the_table_has_a_row_per_setup_with_measured_figures(rows):
    table = par.table(rows)
    assert len(table.rows) == len(rows) == 10
    for cells, row in zip(table.rows, rows, strict=True):
        assert cells[1] == row.setup and cells[-1] == "是"
        assert [str(c) for c in cells[2:5]] == [f"{row.seconds:.2f} 秒", f"{row.speedup:.1f} 倍", f"{row.cores:.1f} 个"]
    # Other measurements give the same HTML once the measured cells are blanked.
    other = [par.Row(r.kind, r.setup, r.seconds * 3.7 + 10, r.speedup * 2.3 + 1, r.same_results,
                     r.started_at, r.ended_at, r.worker, cpu_seconds=r.cpu_seconds * 5 + 1) for r in rows]
    assert as_compared(par.table(other)._repr_html_()) == as_compared(table._repr_html_())
    assert par.table([par.Row("CPU", "x", 1.0, 1.0, False, 0.0, 1.0)]).rows[0][-1] == "否！"


def test_the_chapters_verdicts_hold(rows):
    found = par.checks(rows)
    assert len(found) == 4
    assert all(ok for _label, ok in found), found


def test_twice_as_many_processes_as_cores_keep_at_most_the_cores_busy(rows):
    import os

    twice = by_setup(rows, "CPU")["ch08-par-cpus2"]
    assert twice.cpu_seconds > 0
    assert par.at_most_the_cores(twice), (twice.cpu_seconds, twice.seconds, os.cpu_count())
    assert not par.at_most_the_cores(replace(twice, cpu_seconds=twice.seconds * 3), cores=2)


def test_cpu_bound_work_in_one_process_or_in_threads_keeps_at_most_one_core_busy(rows):
    cpu = by_setup(rows, "CPU")
    for setup in (None, "ch08-par-c1", "ch08-par-threads"):
        assert cpu[setup].cpu_seconds > 0, setup
        assert par.at_most_one_core(cpu[setup]), (setup, cpu[setup].cpu_seconds, cpu[setup].seconds)


def test_the_verdicts_fail_when_a_lesson_breaks():
    def row(kind, setup, seconds, cpu_seconds):
        return par.Row(kind, "x", seconds, 1.0, True, 0.0, 1.0, par.SETUPS[setup], cpu_seconds=cpu_seconds)

    import os

    too_many = (os.cpu_count() or 1) * 2.0
    two_cores = [row("CPU", "c1", 1.0, 2.0), row("CPU", "cpus2", 1.0, too_many), row("CPU", "threads", 1.0, 1.9),
                 row("I/O", "serial", 1.0, 0.0), row("I/O", "threads", 1.2, 0.0)]
    assert [ok for _label, ok in par.checks(two_cores)] == [False, False, False, False]
    assert par.checks([]) == []


def test_a_module_imported_for_another_broker_is_refused(wf):
    with pytest.raises(RuntimeError, match=r"set REDIS_URL before demo_tasks\.workflows is first imported"):
        par.measure_fast_latency("redis://127.0.0.1:1/0")


# --- (b) a fast task behind slow ones ---------------------------------------------------------

def rounds_on(latency, setup: str, worker: str) -> list:
    """The rounds of one setup, each checked to have had its fast_ping run by ``worker``."""
    rounds = [r for r in latency.rounds if r.setup == setup]
    assert len(rounds) == ROUNDS
    assert all(r.hostname.startswith(f"{worker}@") for r in rounds), [r.hostname for r in rounds]
    return rounds


def test_one_worker_for_both_queues_makes_the_fast_task_wait_for_what_it_prefetched(latency, wf):
    records = {r["id"]: r for r in wf.read_records(wf.RUNS_KEY)}
    for r in rounds_on(latency, par.SHARED, par.MIXED_WORKER):
        reports = [records[i] for i in r.report_ids]
        assert {x["hostname"] for x in reports} == {r.hostname}
        # The default prefetch (4 a process) took the whole backlog before the ping was sent ...
        assert r.taken == BACKLOG and r.ahead == BACKLOG
        # ... so it started only after every report had run its sleep,
        assert r.started_at >= max(x["time"] for x in reports) + SLOW_REPORT
        # ... and waited at least the sleep of every report that had not started when it was sent,
        waiting = [x for x in reports if x["time"] >= r.sent_at]
        assert r.seconds >= len(waiting) * SLOW_REPORT
        # ... which is all but the one the worker had started on.
        assert r.seconds >= (BACKLOG - 1) * SLOW_REPORT
    assert latency.median(par.SHARED) >= (BACKLOG - 1) * SLOW_REPORT


@pytest.mark.parametrize("setup, held", [(par.SHARED_PREFETCH_1, 2), (par.SHARED_NO_PREFETCH, 1)])
def test_a_smaller_prefetch_leaves_reports_in_redis_and_fewer_ahead_of_the_fast_task(latency, wf, setup, held):
    records = {r["id"]: r for r in wf.read_records(wf.RUNS_KEY)}
    for r in rounds_on(latency, setup, par.MIXED_WORKERS[setup]):
        # It had taken at least what its prefetch allows (the wait before the ping) and not the whole backlog.
        assert held <= r.taken < BACKLOG, r
        # Ahead of the ping: what it had taken, or one more (it takes the queues in turn), never the backlog.
        assert 1 <= r.ahead < BACKLOG, r
        ran = {records[i]["hostname"] for i in r.report_ids if i in records}
        assert ran == {r.hostname}


def test_with_its_own_worker_the_fast_task_runs_on_the_other_worker(latency, wf):
    records = {r["id"]: r for r in wf.read_records(wf.RUNS_KEY)}
    for r in rounds_on(latency, par.OWN, par.FAST_WORKER):
        assert records[r.ping_id]["hostname"] == r.hostname
        assert r.ahead == 0
        # The reports that ran (the others were revoked before their turn) ran on the slow worker.
        ran = {records[i]["hostname"] for i in r.report_ids if i in records}
        assert {host.split("@")[0] for host in ran} <= {par.SLOW_WORKER}
        assert r.hostname not in ran


def test_every_report_is_finished_or_revoked_and_the_workers_are_stopped(latency, wf):
    from celery.result import AsyncResult

    def states(setup: str) -> set[str]:
        return {AsyncResult(i, app=wf.app).state for r in latency.rounds if r.setup == setup for i in r.report_ids}

    assert states(par.SHARED) == {"SUCCESS"}, "they all ran before the ping did"
    for setup in (par.SHARED_PREFETCH_1, par.SHARED_NO_PREFETCH, par.OWN):
        assert states(setup) <= {"SUCCESS", "REVOKED"}, "the rest was revoked once the ping had run"
    names = {f"worker-{n}" for n in (*par.MIXED_WORKERS.values(), par.SLOW_WORKER, par.FAST_WORKER)}
    assert not names & {p.name for p in launcher.running()}


def test_the_latency_table_gives_counts_and_a_median_per_setup(latency):
    table = par.latency_table(latency)
    assert table.caption == (f"fast_ping 从发出到开始运行要等多久（每轮先发 {BACKLOG} 个 slow_report({SLOW_REPORT:g})，"
                             f"共 {ROUNDS} 轮）")
    assert table.headers[-1] == f"fast_ping 等了多久（{ROUNDS} 轮的中位数）"
    assert latency.setups() == list(par.LATENCY_SETUPS)
    for cells, setup in zip(table.rows, par.LATENCY_SETUPS, strict=True):
        assert cells[0] == par._LATENCY_LABELS[setup]
        assert str(cells[-1]) == f"{latency.median(setup) * 1000:.1f} 毫秒"
    assert str(table.rows[0][1]) == str(table.rows[0][2]) == f"{BACKLOG} 个"
    assert str(table.rows[-1][2]) == "0 个"
    assert latency.samples(par.SHARED) == [r.seconds for r in latency.rounds[:ROUNDS]]
    assert par._counts([2, 2]) == "2 个" and par._counts([2, 1, 1]) == "2、1、1 个"
    # Other medians and counts give the same HTML once the measured cells are blanked.
    other = par.FastLatency(latency.backlog, latency.slow_seconds,
                            [replace(r, sent_at=r.sent_at - 7.5, taken=r.taken + 1, ahead=0) for r in latency.rounds])
    assert as_compared(par.latency_table(other)._repr_html_()) == as_compared(table._repr_html_())


def test_the_latency_verdicts_hold_and_fail_when_a_lesson_breaks(latency):
    assert all(len(r.report_starts) == BACKLOG for r in latency.rounds if r.setup == par.SHARED)
    found = par.latency_checks(latency)
    assert len(found) == 4 and all(ok for _label, ok in found), found
    # The ping ahead of a report, the limited prefetch and the own worker waiting longer: every verdict False.
    broken = par.FastLatency(latency.backlog, latency.slow_seconds,
                             [replace(r, started_at=r.sent_at + (0.001 if r.setup == par.SHARED else 10.0),
                                      report_starts=[r.sent_at + 1.0] * BACKLOG) for r in latency.rounds])
    assert [ok for _label, ok in par.latency_checks(broken)] == [False, False, False, False]
