"""Draw chapter 07's retry timeline from a real run: when each attempt of a few
retried tasks reached the flaky service, what it answered, and the wait
Celery's retry policy promised before the next attempt.

    .venv/bin/python pictures/src/retry_timeline.py

The run, on an embedded broker of its own on a free port (never 6379):

1. the flaky service (``launcher.start_flaky_service(seed=7)``) and a real
   ``celery -A demo_tasks.retries worker`` (4 processes);
2. the chapter's batch: ``fetch_with_retries`` once for each of the calls
   ``call-001`` .. ``call-100`` (retry_stats.call_ids, each sent as ``call=``
   under a new task id), sent through the
   chapter's own app, and waited for until every task has succeeded or given up;
3. the service's record of every request it got: per request the time it
   arrived, the call's id, the attempt number and the service's answer.

From that record, one row per chosen task: the first id (in id order) that
took exactly 2 attempts, the first that took 3, the first that took 4 and
succeeded, and the first that gave up (a kind the run lacks is left out).
The service's answers are a seeded hash of (call id, attempt), so the same
tasks are chosen on every run; the times are the run's own.

Each failed attempt is followed by a bar: the wait RETRY_POLICY promises
(retry_backoff, jitter off: 1, 2, 4 s), from where the attempt ended (its
arrival for a 503; arrival + CALL_TIMEOUT for a call the client gave up on).
Before drawing, every gap between consecutive attempts of every task in the
batch is checked to be at least the promised wait: a run that breaks that
promise stops here instead of drawing a misleading picture.

Output: pictures/retry_timeline.png. Fixed size and dpi, the Agg backend and
no date metadata.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless and reproducible; must precede pyplot

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MultipleLocator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # fonts.py, beside this file

from fonts import save_figure, use_cjk_font  # noqa: E402

import launcher  # noqa: E402
from instruments import retry_stats  # noqa: E402
from launcher.paths import REPO_ROOT  # noqa: E402

OUTPUT = REPO_ROOT / "pictures" / "retry_timeline.png"
APP = "demo_tasks.retries"
#: The chapter's batch: this many calls, each with a fixed id.
CALLS = 100
#: Enough for the batch: a task that gives up takes 1 + 2 + 4 s of waits and up to 4 timeouts.
TIMEOUT = 180.0
FAILED = ("unavailable", "timeout")

# Colours: one per answer of the service, and a light one for the promised wait.
RED, ORANGE, GREEN, WAIT = "#C8423B", "#E08A1E", "#3E8E50", "#CFE0F3"


def log(message: str) -> None:
    print(f"retry_timeline: {message}", flush=True)


def real_run() -> tuple[dict[str, str], list[dict]]:
    """Run the batch; return ({task id: final state}, the service's request record)."""
    broker = launcher.start_embedded()
    try:
        # demo_tasks.retries reads REDIS_URL when it is imported: this process sends
        # the batch through the chapter's own app, so it must point at our broker first.
        os.environ["REDIS_URL"] = broker.url
        from demo_tasks import retries

        service = launcher.start_flaky_service(seed=7)
        worker = launcher.start_worker(APP, broker=broker, fast=True, concurrency=4,
                                       env={"REDIS_URL": broker.url}, cwd=str(REPO_ROOT))
        ids = retry_stats.call_ids(CALLS)
        results = retry_stats.send_calls(retries.fetch_with_retries, service.call_url, ids)
        states = retry_stats.wait_for_results(results, timeout=TIMEOUT)
        requests = [r for r in service.requests() if r.get("task") in states]
        worker.cleanup()
        service.cleanup()
        return states, requests
    finally:
        launcher.stop_all()
        broker.stop()


def promised_waits() -> list[int]:
    """The waits before retry 1, 2, 3 that the task's RETRY_POLICY promises."""
    from demo_tasks.retries import RETRY_POLICY

    return retry_stats.backoff_countdowns(RETRY_POLICY["max_retries"], maximum=RETRY_POLICY["retry_backoff_max"])


def check(states: dict[str, str], requests: list[dict]) -> float:
    """Raise unless every task's attempts are 0, 1, ... in order and each retry came
    no earlier than the promised wait after the attempt before it (a lower bound:
    load can only make it later). Returns the smallest margin, in seconds."""
    waits = promised_waits()
    margin = float("inf")
    for task_id in states:
        attempts = retry_stats.attempts_of(task_id, requests)
        numbers = [a["attempt"] for a in attempts]
        if not attempts or numbers != list(range(len(attempts))) or len(attempts) > len(waits) + 1:
            raise RuntimeError(f"{task_id}: the service saw attempts {numbers}, expected 0, 1, ... "
                               f"(at most {len(waits) + 1})")
        for n, gap in enumerate(retry_stats.gaps(attempts)):
            if gap < waits[n]:
                raise RuntimeError(f"{task_id}: attempt {n + 1} came {gap:.3f} s after attempt {n}, "
                                   f"sooner than the {waits[n]} s the retry policy promises")
            margin = min(margin, gap - waits[n])
    return margin


def choose(states: dict[str, str], requests: list[dict]) -> list[str]:
    """The first id (in id order) of each kind: 2 attempts, 3, 4 and succeeded, 4 and gave up."""
    count = Counter(r["task"] for r in requests)
    kinds = [(2, "SUCCESS"), (3, "SUCCESS"), (4, "SUCCESS"), (4, "FAILURE")]
    chosen = []
    for attempts, state in kinds:
        found = next((t for t in sorted(states) if count[t] == attempts and states[t] == state), None)
        if found is not None:
            chosen.append(found)
    if not chosen:
        raise RuntimeError("no task of the batch was retried: is the flaky service failing calls?")
    return chosen


def draw(states: dict[str, str], requests: list[dict], chosen: list[str]) -> None:
    from demo_tasks.retries import CALL_TIMEOUT

    use_cjk_font()
    waits = promised_waits()
    fig, ax = plt.subplots(figsize=(10, 3.9), dpi=100)
    end = 0.0
    labels = []
    for row, task_id in enumerate(chosen):
        y = len(chosen) - 1 - row  # the first chosen task on top
        attempts = retry_stats.attempts_of(task_id, requests)
        start = attempts[0]["t"]
        for n, attempt in enumerate(attempts):
            x = attempt["t"] - start
            outcome = attempt["outcome"]
            if outcome == "unavailable":
                ax.scatter([x], [y], s=70, marker="X", color=RED, zorder=4)
                ended = x
            elif outcome == "timeout":
                # The client stops waiting after CALL_TIMEOUT: that half second is the attempt.
                ax.plot([x, x + CALL_TIMEOUT], [y, y], color=ORANGE, linewidth=8, solid_capstyle="butt", zorder=3)
                ended = x + CALL_TIMEOUT
            else:
                ax.scatter([x], [y], s=70, marker="o", color=GREEN, zorder=4)
                ended = x
            ax.text(x, y + 0.3, f"第 {n + 1} 次", ha="left" if outcome == "timeout" else "center",
                    va="bottom", fontsize=8, color="#555555")
            end = max(end, ended)
            if outcome in FAILED and n < len(waits) and n + 1 < len(attempts):
                ax.barh(y, waits[n], left=ended, height=0.36, color=WAIT, zorder=1)
                ax.text(ended + waits[n] / 2, y, f"等 {waits[n]} 秒", ha="center", va="center", fontsize=9,
                        color="#2F5F8F", zorder=2)
        # The task's life as a thin line: from its first attempt to where its last one ended.
        ax.plot([0, ended], [y, y], color="#BBBBBB", linewidth=0.8, zorder=0)
        labels.append(f"{task_id}（{'成功' if states[task_id] == 'SUCCESS' else '放弃'}）")
    ax.set_yticks(range(len(chosen)), list(reversed(labels)))
    ax.set_ylim(-0.5, len(chosen) - 0.4)
    ax.set_xlim(-0.3, end + 0.4)
    ax.set_xlabel("从第一次尝试算起的秒数")
    ax.xaxis.set_major_locator(MultipleLocator(1))
    ax.set_title(f"自动重试：每次失败后等 {'、'.join(map(str, waits))} 秒"
                 f"（retry_backoff=True，jitter 关闭，最多重试 {len(waits)} 次）", fontsize=12)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", color="#EEEEEE", zorder=0)
    ax.set_axisbelow(True)
    handles = [
        Line2D([], [], marker="X", color=RED, linestyle="none", markersize=8, label="503"),
        Line2D([], [], color=ORANGE, linewidth=6, label=f"超时（{CALL_TIMEOUT:g} 秒后放弃这次调用）"),
        Line2D([], [], marker="o", color=GREEN, linestyle="none", markersize=8, label="成功"),
        Patch(color=WAIT, label="Celery 承诺的等待"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, fontsize=9, frameon=False)
    fig.tight_layout()
    save_figure(fig, OUTPUT)


def main() -> int:
    states, requests = real_run()
    margin = check(states, requests)
    chosen = choose(states, requests)
    draw(states, requests, chosen)
    failed = sum(1 for s in states.values() if s == "FAILURE")
    log(f"{OUTPUT.relative_to(REPO_ROOT)}: {len(states)} tasks ({failed} gave up), {len(requests)} attempts; "
        f"each retry came at least {margin:.3f} s later than promised; drawn: {', '.join(chosen)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
