"""Chapter 08: how many calls fell into one second, read from the called service's own log.

A rate limit promises "at most N calls in any one-second window" -- any window,
not only the ones that start on a whole second. So ``max_in_window(times, 1.0)``
slides the window over every call: for each call, how many calls (itself
included) arrived in the half-open interval [its time, its time + 1 s). A
window that starts between two calls holds no more than one that starts at the
next call, so the maximum over the calls' own times is the maximum over all
windows.

The global limit (demo_tasks/ratelimit.py) counts at the moment Redis hands out
a token; the service logs the moment a request arrives, a few milliseconds
later, and that delay varies. ``slack(grants, arrivals)`` is the largest delay
minus the smallest: any window of ``1 - slack`` seconds in the service's log
lies inside a one-second window of grants, so it holds at most N calls. The log
itself is exact to the microsecond (``time.time()`` in the service, ``TIME`` in
Redis, one clock on one machine; the offset between them cancels in ``slack``).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence

from instruments.tables import Measured, Table


def max_in_window(times: Iterable[float], width: float = 1.0) -> int:
    """The most calls in any half-open window [t, t + width) (0 without calls)."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + width) - i for i, t in enumerate(ordered)), default=0)


def arrivals(requests: Sequence[Mapping], prefix: str) -> dict[str, float]:
    """{call id: arrival time} for the service's recorded calls whose id starts with ``prefix``."""
    return {r["task"]: r["t"] for r in requests if r.get("task") and r["task"].startswith(prefix)}


def slack(grants: Mapping[str, float], arrived: Mapping[str, float]) -> float:
    """The largest minus the smallest delay from a token's grant to the call's arrival."""
    delays = [arrived[call] - granted for call, granted in grants.items() if call in arrived]
    return max(delays) - min(delays) if delays else 0.0


def runs(workers: Sequence, task: str) -> dict[str, int]:
    """{worker name: how many runs of ``task`` it finished}, from each worker's own log
    ("Task NAME[ID] succeeded": a run that retried logs "retry" instead)."""
    done = re.compile(rf"Task {re.escape(task)}\[[^\]]+\] succeeded")
    return {w.name.removeprefix("worker-"): len(done.findall(w.log())) for w in workers}


def compare(rate: int, per_worker: Mapping[str, float], shared: Mapping[str, float],
            grants: Mapping[str, float], waits: int, per_worker_runs: Mapping[str, int],
            shared_runs: Mapping[str, int]) -> Table:
    """The two limits side by side: Celery's per-worker ``rate_limit`` (arrival times
    ``per_worker``) and the shared bucket (arrival times ``shared``, grant times ``grants``)."""
    def span(times):
        return Measured(f"{max(times) - min(times):.2f} 秒") if times else "—"

    def split(counts):
        return Measured("，".join(f"{name} {count} 次" for name, count in sorted(counts.items())))

    gap = slack(grants, shared)
    first, second = list(per_worker.values()), list(shared.values())
    return Table(["", f"rate_limit=\"{rate}/s\"（每个 worker 自己的）", f"Redis 里的令牌桶（全局，每秒 {rate} 个）"], [
        ["调用次数（服务的请求记录）", Measured(f"{len(first)} 次"), Measured(f"{len(second)} 次")],
        ["第一次到最后一次", span(first), span(second)],
        ["两个 worker 各运行了", split(per_worker_runs), split(shared_runs)],
        ["任意 1 秒窗口里最多（服务的请求记录）", Measured(f"{max_in_window(first)} 次"),
         Measured(f"{max_in_window(second)} 次")],
        ["没拿到令牌、稍后重试", "—", Measured(f"{waits} 次")],
        ["任意 1 秒窗口里最多（Redis 发放令牌的时刻）", "—", Measured(f"{max_in_window(grants.values())} 次")],
        ["slack：发放令牌到请求到达，最长减最短", "—", Measured(f"{gap * 1000:.1f} 毫秒")],
        ["任意 (1 秒 − slack) 窗口里最多（服务的请求记录）", "—", Measured(f"{max_in_window(second, 1 - gap)} 次")],
    ])
