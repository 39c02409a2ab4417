"""Chapter 08's global rate limit (demo_tasks.ratelimit: one token bucket in Redis,
one Lua script) against a real Redis, and across two real workers calling a real
HTTP service whose own request log gives the times.

What is checked is the bucket's stated bound, which no load can change: at most
``rate + burst - 1`` grants in any window of ``per`` seconds, counted on the Redis
server's clock (the grant times the script returns). In the service's log the same
bound holds for windows shortened by the slack (the spread of grant-to-arrival
delays, measured). Never an upper bound on a time; the per-worker limit is shown to
let more through than the global one, which is what the chapter teaches.
"""

from __future__ import annotations

import multiprocessing
import re
import time

import pytest
import redis

import launcher
from demo_tasks import ratelimit
from instruments.rate_windows import arrivals, max_in_window, runs, slack
from services import flaky_service

#: Callers hammering the bucket, each a process of its own (real concurrency, own connections).
CALLERS = 4
HAMMER_SECONDS = 1.5


def _hammer(url: str, until: float, queue) -> None:
    """A caller: take tokens from two buckets as fast as it can until ``until``; report the grant times."""
    client = redis.Redis.from_url(url)
    grants = {"steady": [], "bursty": []}
    while time.time() < until:
        for key, burst in (("steady", 1), ("bursty", 4)):
            decision = ratelimit.acquire(client, key, 20, burst=burst)
            if decision:
                grants[key].append(decision.at)
    queue.put(grants)


@pytest.fixture(scope="module")
def client(broker):
    with redis.Redis.from_url(broker.url) as c:
        yield c


def test_the_bucket_hands_out_at_most_rate_plus_burst_minus_one_in_any_window_to_concurrent_callers(broker, client):
    for key in ("steady", "bursty"):
        ratelimit.reset(client, key)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    until = time.time() + HAMMER_SECONDS
    callers = [context.Process(target=_hammer, args=(broker.url, until, queue)) for _ in range(CALLERS)]
    for caller in callers:
        caller.start()
    reports = [queue.get(timeout=30) for _ in callers]
    for caller in callers:
        caller.join(10)
    # Redis's clock counts whole microseconds: compare in them. (As floats, a grant exactly one
    # token's time, 50 000 us, after another fell inside [t, t + 0.05) by a rounding error.)
    steady = sorted(round(t * 1_000_000) for r in reports for t in r["steady"])
    bursty = sorted(round(t * 1_000_000) for r in reports for t in r["bursty"])
    # burst 1: at most rate (20) in any window of one second, however many callers.
    assert max_in_window(steady, 1_000_000) <= 20, steady
    # burst 4: at most rate + burst - 1 = 23 in any second.
    assert max_in_window(bursty, 1_000_000) <= 23, bursty
    # Within the time of one token (50 ms): at most 1 with burst 1, at most 4 with burst 4 -- and
    # the full bucket at the start did let more than one through at once.
    assert max_in_window(steady, 50_000) == 1
    assert 2 <= max_in_window(bursty, 50_000) <= 4
    # The bound is not met by refusing everything: a whole second's worth went through.
    assert len(steady) >= 20 and len(bursty) >= 23
    # And every caller took part (the tokens were contended for, not handed to one).
    assert all(r["steady"] or r["bursty"] for r in reports)


def test_an_empty_bucket_says_how_long_until_the_next_token(client):
    ratelimit.reset(client, "two-a-second")
    first = ratelimit.acquire(client, "two-a-second", 2)
    second = ratelimit.acquire(client, "two-a-second", 2)
    assert first and not second
    assert first.retry_after == 0 and 0 < second.retry_after <= 0.5
    assert second.at >= first.at  # the Redis server's clock
    # The bucket forgets itself once it would be full again (its key expires).
    assert 0 < client.pttl(ratelimit.KEY_PREFIX + "two-a-second") <= 1500
    with pytest.raises(ValueError):
        ratelimit.acquire(client, "x", 0)


def test_two_workers_keep_the_global_limit_and_twice_the_per_worker_one(workflows_app, broker):
    wf = workflows_app
    service = launcher.start_flaky_service(unavailable=0, timeout=0, slow=0)  # answers every call at once
    workers = [launcher.start_worker("demo_tasks.workflows", broker=broker, fast=True, name=name,
                                     queues=["ratelimit-test"], concurrency=1,
                                     extra_args=["--pool=solo"])
               for name in ("lim1", "lim2")]
    try:
        with redis.Redis.from_url(broker.url) as c:
            ratelimit.reset(c, wf.BUCKET_KEY)
        calls = 12
        per_worker = [wf.call_per_worker.apply_async((service.call_url, f"pw-{n}"), queue="ratelimit-test")
                      for n in range(calls)]
        assert [r.get(timeout=60) for r in per_worker] == [flaky_service.value(f"pw-{n}", 0) for n in range(calls)]
        shared = [wf.call_throttled.apply_async((service.call_url, f"gl-{n}"), queue="ratelimit-test")
                  for n in range(calls)]
        tokens = [r.get(timeout=60) for r in shared]
        assert [t["value"] for t in tokens] == [flaky_service.value(f"gl-{n}", 0) for n in range(calls)]

        log = service.requests()
        per_worker_times, shared_times = arrivals(log, "pw-"), arrivals(log, "gl-")
        assert len(per_worker_times) == len(shared_times) == calls  # one request per call, no more
        grants = {f"gl-{n}": t["granted_at"] for n, t in enumerate(tokens)}
        # The global limit: on Redis's clock exactly; in the service's log, in windows shortened by the slack.
        assert max_in_window(grants.values(), 1.0) <= wf.RATE
        assert max_in_window(shared_times.values(), 1.0 - slack(grants, shared_times)) <= wf.RATE
        # Celery's rate_limit: each worker its own bucket, so together more than RATE in some second.
        assert max_in_window(per_worker_times.values(), 1.0) > wf.RATE
        # Both workers ran calls of each kind.
        assert all(runs(workers, "demo_tasks.workflows.call_per_worker").values())
        assert all(runs(workers, "demo_tasks.workflows.call_throttled").values())
        # No token: the task retried, soon (well under a second), and then ran.
        assert sum(t["waits"] for t in tokens) > 0
        countdowns = [float(s) for w in workers
                      for s in re.findall(r"call_throttled\[[^\]]+\] retry: Retry in ([\d.]+)s", w.log())]
        assert countdowns and max(countdowns) <= 2 / wf.RATE
    finally:
        launcher.stop_together(workers)
        service.stop()
