"""Draw chapter 12's summary from a real run: for every fault scenario that counts
tasks, how many of the tasks it sent finished once, finished twice or were lost.

    .venv/bin/python pictures/src/reliability_summary.py

The run: instruments/faults.py's scenario groups KILLS, CHILD_KILLS, SHUTDOWNS,
BROKER_RESTARTS and OUTAGES, all at the same time (``faults.side_by_side``,
about 25 s). Each scenario starts a Valkey of its own on a free port (never
6379) and its own real ``celery -A demo_tasks.reliability`` workers, injects its
fault (a kill, a shutdown, a broker crash), lets the system settle, counts from
the ledger the task writes, and stops everything it started.

Before drawing, every run is checked: once + twice + lost == sent, and the
scenarios where Celery promises that nothing is lost (NOTHING_LOST: late
acknowledgement where it suffices, warm and soft shutdown, the persistent broker,
the broker restart under an early-acknowledging worker) lost nothing, while every
other scenario lost at least one task. A run that breaks either stops here
instead of drawing a misleading picture.

One horizontal stacked bar per scenario, the groups in the order above, top to
bottom, each group on a light band under its name: 完成一次 (green), 完成两次
(orange), 丢失 (red), each non-empty segment with its count; "↻N" right of a bar:
N tasks started again after the fault (they ran a second time from the start).

Output: pictures/reliability_summary.png. Fixed size and dpi, the Agg backend and
no date metadata.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless and reproducible; must precede pyplot

import matplotlib.pyplot as plt
from matplotlib.patches import Patch, Rectangle
from matplotlib.transforms import blended_transform_factory

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # fonts.py, beside this file

from fonts import save_figure, use_cjk_font  # noqa: E402

import launcher  # noqa: E402
from instruments import faults  # noqa: E402
from launcher.paths import REPO_ROOT  # noqa: E402

OUTPUT = REPO_ROOT / "pictures" / "reliability_summary.png"

#: The scenario groups, top to bottom, with the name each band shows.
GROUPS = [
    ("worker 被杀", faults.KILLS),
    ("子进程被杀", faults.CHILD_KILLS),
    ("关闭 worker", faults.SHUTDOWNS),
    ("Broker 重启", faults.BROKER_RESTARTS),
    ("Broker 断线", faults.OUTAGES),
]

#: The scenarios that must lose nothing: Celery (or the broker's persistence) promises it.
#: Every other scenario of GROUPS must lose at least one task.
NOTHING_LOST = {
    faults.late_ack_killed,               # acks_late: a fresh worker gets the messages back
    faults.child_killed_late_ack_reject,  # acks_late + reject_on_worker_lost: back to the queue
    faults.warm_shutdown,                 # running tasks finish
    faults.cold_shutdown_late_ack,        # the cancelled tasks go back to the queue
    faults.soft_shutdown,                 # running tasks get 3 s, longer than they need
    faults.runtime_stop_late_ack,         # the killed tasks come back after the visibility timeout
    faults.runtime_stop_remap_soft,       # SIGTERM becomes a soft, then cold shutdown: re-queued at once
    faults.broker_restart_persistent,     # the queue is in the append-only file
    faults.outage_early_ack,              # the worker reconnects; its running tasks finish
    faults.outage_late_ack,               # the worker exits; a fresh one runs the tasks again
    faults.outage_late_ack_cancel,        # the same, with the running tasks cancelled on connection loss
}

# Colours: finished once, finished twice, lost; the groups' bands; the rerun marks.
GREEN, ORANGE, RED = "#3E8E50", "#E08A1E", "#C8423B"
BAND = "#EFF3F8"
REDO = "#2F5F8F"


def log(message: str) -> None:
    print(f"reliability_summary: {message}", flush=True)


def real_run() -> list[tuple[str, list[tuple[object, faults.Run]]]]:
    """Run every scenario of GROUPS at once; return them grouped: (group name, [(function, run)])."""
    calls = [call for _, group in GROUPS for call in group]
    try:
        runs = faults.side_by_side(*calls)
    finally:
        launcher.stop_all()  # each scenario stops its own processes; this is a second net
    result, index = [], 0
    for name, group in GROUPS:
        result.append((name, list(zip(group, runs[index:index + len(group)], strict=True))))
        index += len(group)
    return result


def check(grouped: list[tuple[str, list[tuple[object, faults.Run]]]]) -> None:
    """Print every run's counts; raise unless each run accounts for every task it sent and
    loses nothing exactly where NOTHING_LOST says so."""
    problems = []
    for _, runs in grouped:
        for call, run in runs:
            c = run.counts()
            log(f"{call.__name__:30} {run.title}: {c}")
            if c["once"] + c["twice"] + c["lost"] != c["sent"]:
                problems.append(f"{call.__name__} ({run.title}): once {c['once']} + twice {c['twice']} + "
                                f"lost {c['lost']} != sent {c['sent']}")
            if call in NOTHING_LOST and run.lost:
                problems.append(f"{call.__name__} ({run.title}): lost {c['lost']} task(s), "
                                "where Celery promises that nothing is lost")
            if call not in NOTHING_LOST and not run.lost:
                problems.append(f"{call.__name__} ({run.title}): lost nothing, where the chapter shows a loss "
                                "(did the fault hit no running task?)")
    if problems:
        raise RuntimeError("the run breaks what the picture would show, so it is not drawn:\n  "
                           + "\n  ".join(problems))


def draw(grouped: list[tuple[str, list[tuple[object, faults.Run]]]]) -> None:
    use_cjk_font()
    fig, ax = plt.subplots(figsize=(9, 8.6), dpi=100)
    # The rows, top to bottom: a header per group, then its scenarios.
    y = 0.0
    ticks, labels = [], []
    bands = []
    widest = max(run.counts()["sent"] for _, runs in grouped for _, run in runs)
    for name, runs in grouped:
        top = y
        ticks.append(y)
        labels.append(name)
        y -= 0.85
        for _, run in runs:
            c = run.counts()
            left = 0
            for key, colour in (("once", GREEN), ("twice", ORANGE), ("lost", RED)):
                if c[key]:
                    ax.barh(y, c[key], left=left, height=0.62, color=colour, edgecolor="white", linewidth=1.5,
                            zorder=3)
                    ax.text(left + c[key] / 2, y, str(c[key]), ha="center", va="center", fontsize=10,
                            color="white", fontweight="bold", zorder=4)
                    left += c[key]
            if c["rerun"]:
                ax.text(left + 0.08, y, f"↻{c['rerun']}", ha="left", va="center", fontsize=10, color=REDO,
                        zorder=4)
            ticks.append(y)
            labels.append(run.title)
            y -= 1.0
        bands.append((top + 0.5, y + 0.5))
        y -= 0.3
    # The bands reach across the figure, behind the labels too.
    strip = blended_transform_factory(fig.transFigure, ax.transData)
    for upper, lower in bands:
        band = ax.add_patch(Rectangle((0.01, lower), 0.98, upper - lower, transform=strip, color=BAND,
                                      clip_on=False, zorder=0))
        band.set_in_layout(False)  # the layout makes room for the labels, not for the bands behind them
    ax.set_yticks(ticks, labels)
    headers = {name for name, _ in grouped}
    for tick in ax.get_yticklabels():
        if tick.get_text() in headers:
            tick.set_fontweight("bold")
            tick.set_fontsize(11)
            tick.set_color("#333333")
        else:
            tick.set_fontsize(10)
    ax.set_ylim(y + 0.6, 0.55)
    ax.set_xlim(0, widest + 0.6)
    ax.set_xticks(range(widest + 1))
    ax.set_xlabel("任务数")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", color="#E4E4E4", zorder=1)
    ax.set_axisbelow(True)
    ax.patch.set_alpha(0)
    sizes = sorted({run.counts()["sent"] for _, runs in grouped for _, run in runs}, reverse=True)
    fig.suptitle("每个故障场景里的任务：完成一次、两次，还是丢了", fontsize=14, x=0.5, y=0.985)
    fig.text(0.5, 0.945, f"真实的 Valkey 和 worker，每个场景发出 {' 或 '.join(map(str, sizes))} 个任务，"
             "故障后等系统平静下来，数每个任务完成了几次", ha="center", fontsize=9.5, color="#555555")
    handles = [Patch(color=GREEN, label="完成一次"), Patch(color=ORANGE, label="完成两次"),
               Patch(color=RED, label="丢失"),
               Patch(color="none", label="↻N：N 个任务被打断后从头重新执行")]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.005), ncol=4, fontsize=9.5,
               frameon=False, handlelength=1.2, columnspacing=1.4)
    fig.tight_layout(rect=(0.015, 0.045, 0.99, 0.965), pad=0.6)
    save_figure(fig, OUTPUT)


def main() -> int:
    started = time.monotonic()
    grouped = real_run()
    check(grouped)
    draw(grouped)
    runs = [run for _, group in grouped for _, run in group]
    log(f"{OUTPUT.relative_to(REPO_ROOT)}: {len(runs)} scenarios, {sum(len(r.sent) for r in runs)} tasks sent, "
        f"{sum(len(r.lost) for r in runs)} lost, {sum(len(r.rerun) for r in runs)} run again; "
        f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
