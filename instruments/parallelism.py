"""Chapter 08's measurements: what parallel workers buy, and what a queue of its own buys.

(a) ``measure_parallelism(broker, service)``: the same work done serially in this
process, then as a group on real workers -- one process (``--concurrency=1``),
one process per CPU core, and 16 threads in one process. CPU-bound work
(``count_primes``) speeds up with processes, up to the number of cores, and not
with threads (the GIL runs one thread's Python code at a time); I/O-bound
work (``wait_on``, a call of chapter 07's flaky service that answers after a
fixed wait) speeds up with anything that can wait side by side, and threads are
the cheapest way to wait. ``table(rows)`` is the result as a table (HTML in a
notebook), ``checks(rows)`` what it must show, as labelled verdicts.

(b) ``measure_fast_latency(broker)``: how long a quick task (``fast_ping``) waits
before it starts when slow reports were sent just before it. Both kinds of task
have a queue of their own every time; what changes is the worker: one worker
that consumes both queues, with its default prefetch, with
``--prefetch-multiplier=1`` and with ``--disable-prefetch``; then each queue on
a worker of its own. ``latency_table(result)`` is its table,
``latency_checks(result)`` its verdicts.

Both start their workers with ``launcher.start_worker`` and stop them (warm) as
soon as their measurement is done. Import this module after REDIS_URL names the
broker (``demo_tasks.workflows`` reads it when it is first imported).

The figures for the chapter's closing note come from::

    python -m instruments.parallelism --repeat 5

which starts a broker and a flaky service of its own, runs both measurements
``--repeat`` times and prints the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import psutil
import redis

import launcher
from instruments.tables import Measured, Table, verdicts
from launcher.broker import broker_url_of

#: One piece of CPU-bound work: count the primes below this (about 0.25 s on a 2-core test machine).
CPU_LIMIT = 150_000
#: How many calls of the flaky service the I/O-bound measurement makes.
IO_CALLS = 4
#: How many threads the threads pool gets: many more than cores, since a waiting thread needs no core.
THREADS = 16
#: GroupResult.get()'s interval. On the Redis result backend get() looks at the whole group
#: once, naps ``interval`` once if it is not complete, then returns as soon as the last
#: result arrives (pub/sub): the interval is a floor on the time measured, not a period.
POLL = 0.01
#: How long we wait for any result before we give up (a generous deadline, not a measurement).
DEADLINE = 120.0

#: measure_parallelism's setups, by the name of the worker each starts (and of its queue);
#: None: the serial run in this process.
SETUPS = {"serial": None, "c1": "ch08-par-c1", "cpus": "ch08-par-cpus", "cpus2": "ch08-par-cpus2",
          "threads": "ch08-par-threads"}
_KINDS = {"CPU": "CPU 密集", "I/O": "I/O 密集"}

# The setups of measure_fast_latency, in the order measured. The reports and fast_ping
# have a queue each in all of them; what differs is the worker that consumes them.
#: One worker (-c 1) consumes both queues, with Celery's default prefetch.
SHARED = "shared"
#: The same with --prefetch-multiplier=1.
SHARED_PREFETCH_1 = "prefetch-1"
#: The same with --disable-prefetch (Celery 5.6+, Redis broker only).
SHARED_NO_PREFETCH = "no-prefetch"
#: Each queue has a worker of its own (-c 1 each).
OWN = "own"
LATENCY_SETUPS = (SHARED, SHARED_PREFETCH_1, SHARED_NO_PREFETCH, OWN)
#: The worker options of the setups with one worker for both queues.
PREFETCH_ARGS = {SHARED: [], SHARED_PREFETCH_1: ["--prefetch-multiplier=1"], SHARED_NO_PREFETCH: ["--disable-prefetch"]}
#: The queues measure_fast_latency sends to: its own, never the chapter workers' "celery" and "slow".
FAST_QUEUE = "ch08-lat-fast"
SLOW_QUEUE = "ch08-lat-slow"

# Worker names (``-n NAME@%h``): a run record's hostname says which worker ran the task.
MIXED_WORKERS = {SHARED: "ch08-mixed", SHARED_PREFETCH_1: "ch08-mixed-p1", SHARED_NO_PREFETCH: "ch08-mixed-np"}
MIXED_WORKER = MIXED_WORKERS[SHARED]
SLOW_WORKER = "ch08-slow"
FAST_WORKER = "ch08-fast"


@dataclass
class Row:
    """One measured setup of measure_parallelism."""

    kind: str           # "CPU" or "I/O"
    setup: str          # what ran the work, in Chinese
    seconds: float      # from sending (or starting) the work to having every result
    speedup: float      # the serial time of the same kind divided by ``seconds``
    same_results: bool  # the results equal those of the serial run, in the same order
    started_at: float   # wall clock (time.time()) when the work was sent / started
    ended_at: float     # wall clock when the last result was in
    worker: str | None = None  # the worker's name; None for the serial run in this process
    results: list = field(default_factory=list)  # what the work returned, in the order it was sent
    cpu_seconds: float = 0.0   # CPU time the processes doing the work used meanwhile (user + system)

    @property
    def cores(self) -> float:
        """How many cores the work kept busy on average: CPU time divided by the time it took."""
        return self.cpu_seconds / self.seconds


@dataclass
class LatencyRound:
    """One round of measure_fast_latency: a backlog of slow reports, then one fast_ping."""

    setup: str              # one of LATENCY_SETUPS
    sent_at: float          # wall clock when fast_ping was sent
    started_at: float       # wall clock when it started, from the run record it left (same machine)
    hostname: str           # the worker that ran it, e.g. "ch08-fast@laptop"
    ping_id: str
    report_ids: list[str]
    report_starts: list[float] = field(default_factory=list)  # when the reports that ran started (run records)
    taken: int = 0          # how many reports had left the broker's list when fast_ping was sent
    ahead: int = 0          # how many reports ran before fast_ping on fast_ping's own worker (run records)

    @property
    def seconds(self) -> float:
        return self.started_at - self.sent_at


@dataclass
class FastLatency:
    """What measure_fast_latency measured: every round, and the medians per setup."""

    backlog: int
    slow_seconds: float
    rounds: list[LatencyRound] = field(default_factory=list)

    def samples(self, setup: str) -> list[float]:
        """The latencies of one setup (one of LATENCY_SETUPS), in seconds, in the order measured."""
        return [r.seconds for r in self.rounds if r.setup == setup]

    def median(self, setup: str) -> float:
        return statistics.median(self.samples(setup))

    def setups(self) -> list[str]:
        """The setups measured, in the order measured."""
        return [s for s in LATENCY_SETUPS if any(r.setup == s for r in self.rounds)]


# --- helpers ------------------------------------------------------------------------------

def _workflows(broker):
    """demo_tasks.workflows, checked to be talking to ``broker`` (it reads REDIS_URL once, at import)."""
    from demo_tasks import workflows

    if workflows.app.conf.broker_url != broker_url_of(broker):
        raise RuntimeError(f"demo_tasks.workflows talks to {workflows.app.conf.broker_url}, not to the broker "
                           f"given ({broker}): set REDIS_URL before demo_tasks.workflows is first imported")
    return workflows


def _spec(name: str, concurrency: int, queues: Sequence[str], extra_args: Sequence[str] = ()) -> dict:
    """start_worker's arguments for one worker of a measurement."""
    return {"name": name, "concurrency": concurrency, "queues": list(queues), "extra_args": list(extra_args)}


@contextmanager
def _workers(helper: ThreadPoolExecutor, broker, *specs: dict) -> Iterator[list[launcher.Proc]]:
    """Workers for one measurement, each given by start_worker's keyword arguments (name,
    concurrency, queues, extra_args). They start side by side and are ready before the
    ``with`` block runs. Their warm stops (a second or two for a prefork pool, mostly
    waiting for its processes to exit) start as soon as the block is left and run in
    ``helper``'s threads while the next measurement goes on: a stopping worker takes no
    more messages and uses no CPU, so it does not disturb what follows. Leaving the
    executor's own ``with`` waits until all of them have stopped."""
    futures = [helper.submit(launcher.start_worker, "demo_tasks.workflows", broker=broker, fast=True, **spec)
               for spec in specs]
    started, failure = [], None
    for future in futures:  # every one, even after a failure: whatever started is stopped
        try:
            started.append(future.result())
        except Exception as exc:  # re-raised below, once the others are stopped
            failure = failure or exc
    try:
        if failure is not None:
            raise failure
        yield started
    finally:
        for worker in started:
            helper.submit(worker.cleanup)


def _processes(worker: launcher.Proc | None) -> list[psutil.Process]:
    """The processes that do a run's work: this one (the serial run), or a worker's
    main process and its pool processes."""
    if worker is None:
        return [psutil.Process()]
    main = psutil.Process(worker.pid)
    return [main, *main.children(recursive=True)]


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    """The CPU time (user + system, every thread) the processes have used so far."""
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def _timed(run, processes: list[psutil.Process]) -> dict:
    """``run()`` timed: its results, seconds, wall clock at start and end, and the CPU
    time ``processes`` used meanwhile."""
    cpu, started_at, start = _cpu_seconds(processes), time.time(), time.perf_counter()
    results = list(run())
    seconds = time.perf_counter() - start
    return {"results": results, "seconds": seconds, "started_at": started_at, "ended_at": time.time(),
            "cpu_seconds": _cpu_seconds(processes) - cpu}


# --- (a) parallelism ----------------------------------------------------------------------

def measure_parallelism(broker, service, *, cpu_pieces: int = 8, cpu_limit: int = CPU_LIMIT,
                        io_calls: int = IO_CALLS, processes: int | None = None,
                        threads: int = THREADS) -> list[Row]:
    """Measure the same work serially and as a group on workers; return one Row per setup.

    CPU-bound: ``cpu_pieces`` counts of primes (below ``cpu_limit``, ``cpu_limit`` + 1000,
    ...: the pieces cost about the same, their results differ). I/O-bound: ``io_calls``
    calls of ``service`` (chapter 07's flaky service, started with every call slow:
    ``start_flaky_service(unavailable=0, timeout=0, slow=1.0, slow_seconds=0.5)``), with
    call ids ch08-io-00, ch08-io-01, ...: the same ids in every setup, so the same values.

    Setups: serially in this process; a group on a worker with ``--concurrency=1``; on
    one with ``--concurrency=processes`` (default: os.cpu_count()); on one with twice
    as many processes (CPU-bound work cannot use more cores than there are: the
    processes only take turns on them); and on one with
    ``--pool=threads --concurrency=threads``: many threads wait side by side, but
    Python code in threads of one process runs one thread at a time (the GIL), so
    they speed up the I/O-bound work only. Each worker
    consumes a queue of its own and the group is sent there, so only it takes the
    work; it is ready before the clock starts, and the clock runs from sending the
    group to having every result (``.get()``). A worker measures both kinds of work
    and is stopped right after.

    Every worker imports requests before it starts its pool (``--include=requests``),
    as this process has before its serial run: otherwise each worker process would pay
    for that import inside the measured time of its first call.
    """
    from celery import group

    wf = _workflows(broker)
    processes = processes or os.cpu_count() or 1
    limits = [cpu_limit + 1000 * i for i in range(cpu_pieces)]
    calls = [f"ch08-io-{i:02d}" for i in range(io_calls)]
    url = service.call_url

    def on_worker(task, arguments, queue):
        def run():
            # interval: GroupResult.get() naps one whole interval when the group is not done
            # at its first look (0.5 s by default; a group of 0.1 s tasks returned after 0.51 s
            # with the default, 0.11 s with 0.01), which would pad the short measurements.
            group_result = group(task.s(*args) for args in arguments).apply_async(queue=queue)
            return group_result.get(timeout=DEADLINE, interval=POLL)
        return run

    cpu_work = [(limit,) for limit in limits]
    io_work = [(url, call) for call in calls]
    measured: dict[tuple[str, str], dict] = {}

    import requests  # noqa: F401 -- imported before the serial run's clock starts (see above)

    here = _processes(None)
    measured["CPU", "serial"] = _timed(lambda: (wf.count_primes_here(limit) for limit in limits), here)
    measured["I/O", "serial"] = _timed(lambda: (wf.wait_on_here(url, call) for call in calls), here)
    pools = {"c1": (1, []), "cpus": (processes, []), "cpus2": (2 * processes, []),
             "threads": (threads, ["--pool=threads"])}
    with ThreadPoolExecutor(max_workers=4) as helper:
        for key, (concurrency, pool) in pools.items():
            name = queue = SETUPS[key]
            spec = _spec(name, concurrency, [queue], [*pool, "--include=requests"])
            with _workers(helper, broker, spec) as (worker,):
                tree = _processes(worker)
                for kind, task, work in (("CPU", wf.count_primes, cpu_work), ("I/O", wf.wait_on, io_work)):
                    measured[kind, key] = {**_timed(on_worker(task, work, queue), tree), "worker": name}
        # Leaving the executor's `with` waits until every worker has stopped.

    labels = {
        "serial": "串行：在本进程里一个接一个地运行",
        "c1": "group，1 个 worker 进程（--concurrency=1）",
        "cpus": "group，每个 CPU 核一个进程（--concurrency=核数）",
        "cpus2": "group，核数 2 倍的进程（--concurrency=2×核数）",
        "threads": f"group，1 个进程里 {threads} 个线程（--pool=threads）",
    }
    rows = []
    for kind in ("CPU", "I/O"):
        serial = measured[kind, "serial"]
        for key in ("serial", "c1", "cpus", "cpus2", "threads"):
            m = measured[kind, key]
            rows.append(Row(kind, labels[key], m["seconds"], serial["seconds"] / m["seconds"],
                            m["results"] == serial["results"], m["started_at"], m["ended_at"], m.get("worker"),
                            m["results"], m["cpu_seconds"]))
    return rows


def _row(rows: Sequence[Row], kind: str, setup: str) -> Row | None:
    return next((r for r in rows if r.kind == kind and r.worker == SETUPS[setup]), None)


def table(rows: Sequence[Row]) -> Table:
    """measure_parallelism's rows as a table; the measured figures are Measured cells."""
    return Table(["任务类型", "做法", "用时", "加速比（与同类型的串行相比）", "平均同时在用的核（CPU 时间 ÷ 用时）",
                  "结果与串行相同"],
                 [[_KINDS[r.kind], r.setup, Measured(f"{r.seconds:.2f} 秒"), Measured(f"{r.speedup:.1f} 倍"),
                   Measured(f"{r.cores:.1f} 个"), "是" if r.same_results else "否！"] for r in rows])


def at_most_one_core(row: Row) -> bool:
    """The work kept at most one core busy at a time (a margin for the main process's own
    messaging and for the clock ticks CPU time is counted in)."""
    return row.cpu_seconds <= row.seconds * 1.05 + 0.05


def at_most_the_cores(row: Row, cores: int | None = None) -> bool:
    """The work kept at most as many cores busy as the machine has (same margin)."""
    cores = cores or os.cpu_count() or 1
    return row.cpu_seconds <= row.seconds * cores * 1.05 + 0.05


def checks(rows: Sequence[Row]) -> list[tuple[str, bool]]:
    """What measure_parallelism's figures must show, as labelled verdicts that a busy
    machine cannot break: how many cores a worker *could* use is a property of the
    setup, how many it *got* depends on what else runs (so a speed-up from more
    processes is shown in the table, and not claimed here)."""
    found = []
    c1, threads = _row(rows, "CPU", "c1"), _row(rows, "CPU", "threads")
    twice = _row(rows, "CPU", "cpus2")
    if c1:
        found.append(("CPU 密集，1 个 worker 进程：平均同时在用的核不超过 1 个（CPU 时间不超过用时）",
                      at_most_one_core(c1)))
    if twice:
        found.append(("CPU 密集，核数 2 倍的进程：平均同时在用的核不超过核数（进程再多，核就这么多）",
                      at_most_the_cores(twice)))
    if threads:
        found.append(("CPU 密集，线程池（--pool=threads）：平均同时在用的核不超过 1 个（GIL）",
                      at_most_one_core(threads)))
    serial, threads = _row(rows, "I/O", "serial"), _row(rows, "I/O", "threads")
    if serial and threads:
        found.append(("I/O 密集，线程池（--pool=threads）：比串行快", threads.seconds < serial.seconds))
    return found


# --- (b) a fast task behind slow ones ---------------------------------------------------------

def _held(setup: str, backlog: int, multiplier: int) -> int:
    """How many of ``backlog`` reports a worker with one process (-c 1) takes from the broker
    before fast_ping is sent: its prefetch limit. Celery's default is the prefetch
    multiplier times the processes (4 x 1); with --prefetch-multiplier=1, the report it runs
    (acknowledged as it starts, so no longer counted) and one more; with --disable-prefetch,
    only the one it runs (it fetches when a process is free)."""
    if setup == SHARED_PREFETCH_1:
        return min(backlog, 2)
    if setup == SHARED_NO_PREFETCH:
        return min(backlog, 1)
    return min(backlog, multiplier)


def measure_fast_latency(broker, *, rounds: int = 5, slow_seconds: float = 0.3, backlog: int = 4,
                         fast_queue: str = FAST_QUEUE, slow_queue: str = SLOW_QUEUE,
                         setups: Sequence[str] = LATENCY_SETUPS) -> FastLatency:
    """How long fast_ping waits, from being sent to starting, behind ``backlog`` slow reports.

    The latency is measured from sending fast_ping (time.time() in this process) to the
    start time in the run record it leaves in Redis (time.time() in the worker, on the
    same machine): the wait in queues, not the task's own run or the result's way back.

    The reports are sent to ``slow_queue`` and fast_ping to ``fast_queue`` in every setup:
    queues of the measurement's own (as task_routes would send them to "slow" and
    "celery"), so that the chapter's own workers, which consume "celery" and "slow", take
    none of them. What differs is the worker:

    - SHARED: one worker with ``-Q FAST,SLOW --concurrency=1`` takes both queues;
    - SHARED_PREFETCH_1: the same with ``--prefetch-multiplier=1``;
    - SHARED_NO_PREFETCH: the same with ``--disable-prefetch``;
    - OWN: the reports go to a ``-Q SLOW -c 1`` worker, fast_ping to a ``-Q FAST -c 1`` one.

    In each round ``backlog`` slow_report(slow_seconds) are sent first. fast_ping is sent
    once the worker has taken from the broker's list as many of them as its prefetch
    limit lets it (``_held``: all 4 with the default, 2, 1; they wait in the worker now,
    and the first one runs): the set-up a burst of slow reports creates, made exact.
    ``LatencyRound.taken`` is how many had left the list when fast_ping was sent, and
    ``ahead`` how many ran before it on its worker (from the run records). Each round
    starts with no report left from the one before: in SHARED the reports all run (the
    verdict reads their start times); in the others they are revoked once the ping has run
    (those still waiting are discarded), and the round waits until every one is done or
    discarded.

    No other worker may consume these two queues of this broker meanwhile:
    the run records show where each task ran, and a task run elsewhere is an error.
    """
    wf = _workflows(broker)
    result = FastLatency(backlog, slow_seconds)
    multiplier = int(wf.app.conf.worker_prefetch_multiplier)

    def one_round(setup: str, conn: redis.Redis) -> LatencyRound:
        held = _held(setup, backlog, multiplier)
        reports = [wf.slow_report.apply_async((slow_seconds,), queue=slow_queue) for _ in range(backlog)]
        # Sent before fast_ping, but a worker that takes both queues takes them in turn; only
        # once the reports it can hold have left the broker's list is fast_ping behind them.
        if not launcher.wait_for(lambda: conn.llen(slow_queue) <= backlog - held, DEADLINE):
            raise RuntimeError(f"the worker took fewer than {held} of the slow reports from the queue "
                               f"{slow_queue!r}: {backlog - conn.llen(slow_queue)}")
        taken = backlog - conn.llen(slow_queue)
        sent_at = time.time()
        ping = wf.fast_ping.apply_async(queue=fast_queue)
        ping.get(timeout=DEADLINE)
        if setup != SHARED:
            wf.app.control.revoke([r.id for r in reports])
        if not launcher.wait_for(lambda: all(r.ready() for r in reports), DEADLINE):
            raise RuntimeError("the slow reports did not finish")
        records = {r["id"]: r for r in wf.read_records(wf.RUNS_KEY)}
        record = records[ping.id]
        ran = [records[r.id] for r in reports if r.id in records]  # revoked ones never ran
        ahead = sum(1 for x in ran if x["hostname"] == record["hostname"] and x["time"] < record["time"])
        return LatencyRound(setup, sent_at, record["time"], record["hostname"], ping.id, [r.id for r in reports],
                            [x["time"] for x in ran], taken, ahead)

    def check(rounds_done: list[LatencyRound], fast: str, slow: str) -> None:
        ran_on = {r["id"]: r["hostname"].split("@")[0] for r in wf.read_records(wf.RUNS_KEY)}
        for r in rounds_done:
            # Revoked reports never ran: they left no record.
            wrong = {ran_on[r.ping_id]} - {fast} | {ran_on[i] for i in r.report_ids if i in ran_on} - {slow}
            if wrong:
                raise RuntimeError(f"tasks ran on {sorted(wrong)}, not on the measured workers: another worker "
                                   f"consumes the queue {fast_queue!r} or {slow_queue!r} of this broker; stop it first")

    measured: list[LatencyRound] = []
    with redis.Redis.from_url(broker_url_of(broker)) as conn:
        for setup in setups:
            if setup == OWN:
                specs, fast, slow = ([_spec(SLOW_WORKER, 1, [slow_queue]), _spec(FAST_WORKER, 1, [fast_queue])],
                                     FAST_WORKER, SLOW_WORKER)
            else:
                name = MIXED_WORKERS[setup]
                specs, fast, slow = [_spec(name, 1, [fast_queue, slow_queue], PREFETCH_ARGS[setup])], name, name
            # An executor per setup: leaving it waits until the setup's workers have stopped.
            with ThreadPoolExecutor(max_workers=4) as helper, _workers(helper, broker, *specs):
                done = [one_round(setup, conn) for _ in range(rounds)]
            # A revoked report is marked REVOKED before the worker acknowledges its message, so a
            # worker stopped right after may put the message back into the list as it shuts down.
            # Every report of these rounds is done or revoked: what is left is stale, and the next
            # setup's workers (without this worker's revoked list) would run it.
            conn.delete(slow_queue, fast_queue)
            check(done, fast, slow)
            measured += done
    result.rounds = measured
    return result


#: The rows of latency_table, by setup.
_LATENCY_LABELS = {
    SHARED: "没有自己的 worker：1 个 worker（-c 1）消费两个队列，默认预取",
    SHARED_PREFETCH_1: "没有自己的 worker，加上 --prefetch-multiplier=1",
    SHARED_NO_PREFETCH: "没有自己的 worker，加上 --disable-prefetch",
    OWN: "有自己的 worker：两个队列各有一个 worker（各 -c 1）",
}


def _counts(values: Sequence[int]) -> str:
    """A count that is the same in every round once ("4 个"), else every round's ("4、3 个")."""
    return f"{values[0]} 个" if len(set(values)) == 1 else "、".join(map(str, values)) + " 个"


def latency_table(result: FastLatency) -> Table:
    """measure_fast_latency's rounds, one setup a row: how many reports the worker had taken
    when fast_ping was sent, how many ran before it on its worker, and the median wait."""
    setups = result.setups()
    rounds = len(result.samples(setups[0]))
    rows = []
    for setup in setups:
        done = [r for r in result.rounds if r.setup == setup]
        # Counts too are Measured: --disable-prefetch sometimes takes a second report before the
        # worker has counted the first as reserved (seen in our runs), so they can differ between runs.
        rows.append([_LATENCY_LABELS[setup], Measured(_counts([r.taken for r in done])),
                     Measured(_counts([r.ahead for r in done])), Measured(f"{result.median(setup) * 1000:.1f} 毫秒")])
    return Table(["做法", "发 fast_ping 时，worker 已从 Redis 取走的 slow_report",
                  "在同一个 worker 上排在 fast_ping 前面运行的 slow_report",
                  f"fast_ping 等了多久（{rounds} 轮的中位数）"],
                 rows,
                 caption=f"fast_ping 从发出到开始运行要等多久（每轮先发 {result.backlog} 个 "
                         f"slow_report({result.slow_seconds:g})，共 {rounds} 轮）")


def latency_checks(result: FastLatency) -> list[tuple[str, bool]]:
    """What measure_fast_latency's medians must show, as labelled verdicts: the order of
    the runs (from the run records), and which setups wait less than the default prefetch."""
    shared = [r for r in result.rounds if r.setup == SHARED]
    behind = all(len(r.report_starts) == result.backlog
                 and r.started_at >= max(r.report_starts) + result.slow_seconds for r in shared)
    found = [(f"默认预取：每一轮 fast_ping 都排在 {result.backlog} 个 slow_report 后面，等它们都运行完才开始",
              bool(shared) and behind)]
    setups = result.setups()
    for setup, label in ((SHARED_PREFETCH_1, "--prefetch-multiplier=1"), (SHARED_NO_PREFETCH, "--disable-prefetch")):
        if setup in setups and SHARED in setups:
            found.append((f"{label}：fast_ping 比默认预取等得短", result.median(setup) < result.median(SHARED)))
    if OWN in setups:
        others = [s for s in setups if s != OWN]
        found.append(("有自己的 worker：fast_ping 等得最短",
                      bool(others) and all(result.median(OWN) < result.median(s) for s in others)))
    return found


# --- the benchmark: python -m instruments.parallelism [--repeat N] -----------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instruments.parallelism",
                                     description="Measure chapter 08's speedups and latencies, several times.")
    parser.add_argument("--repeat", type=int, default=5, help="how many times to run both measurements (5)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    try:
        broker = launcher.start_embedded()
        # demo_tasks.workflows reads REDIS_URL when it is first imported: set it before.
        os.environ["REDIS_URL"] = broker.url
        service = launcher.start_flaky_service(unavailable=0, timeout=0, slow=1.0, slow_seconds=0.5)
        runs, latencies = [], []
        for n in range(1, args.repeat + 1):
            runs.append(measure_parallelism(broker, service))
            latencies.append(measure_fast_latency(broker))
            print(f"run {n} of {args.repeat} done", file=sys.stderr, flush=True)
        medians = [replace(first, seconds=statistics.median(run[i].seconds for run in runs),
                           speedup=statistics.median(run[i].speedup for run in runs),
                           cpu_seconds=statistics.median(run[i].cpu_seconds for run in runs),
                           same_results=all(run[i].same_results for run in runs))
                   for i, first in enumerate(runs[0])]
        print(f"Medians of {args.repeat} runs ({os.cpu_count()} CPUs):")
        print(table(medians))
        for n, run in enumerate(runs, 1):
            print(f"verdicts of run {n}:\n{verdicts(checks(run))}")
        print("speedups of every run: " + "; ".join(
            f"{r.kind} {r.worker or 'serial'}: " + ", ".join(f"{run[i].speedup:.2f}" for run in runs)
            for i, r in enumerate(runs[0])))
        for setup in LATENCY_SETUPS:
            per_run = [result.median(setup) * 1000 for result in latencies]
            print(f"fast_ping latency, {setup}: median {statistics.median(per_run):.1f} ms "
                  f"(per run: {', '.join(f'{m:.1f}' for m in per_run)})")
    finally:
        launcher.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
