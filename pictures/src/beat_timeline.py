"""Draw chapter 06's beat timeline from a real run: when beat sent each
periodic task, and when the worker ran it.

    .venv/bin/python pictures/src/beat_timeline.py

The run, on an embedded broker of its own on a free port (never 6379):

1. ``celery -A demo_tasks.periodic beat`` alone, until it has sent
   ``SENDS_ALONE`` ticks: no worker, so they wait in the queue;
2. ``celery -A demo_tasks.periodic worker`` joins; it works off the backlog
   at once, then keeps up with beat;
3. after ``SENDS_TOTAL`` sends beat is stopped (warm), the worker finishes the
   queue and is stopped too.

Beat runs at DEBUG level, whose log names the id of every message it sends
(``demo_tasks.periodic.tick sent. id->ID``); the worker's log has
``Task demo_tasks.periodic.tick[ID] succeeded``. The two are joined by task id,
with the times of the logs' own prefixes. Only the entry ``tick-every-second``
is drawn (``tick-every-minute`` may fire during the run; it is left out).

Output: pictures/beat_timeline.png. The figures are those of the run (they
differ a little from run to run); the shape does not. Fixed size and dpi, the
Agg backend and no date metadata.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless and reproducible; must precede pyplot

import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # fonts.py, beside this file

from fonts import save_figure, use_cjk_font  # noqa: E402

import launcher  # noqa: E402
from launcher.paths import REPO_ROOT  # noqa: E402

OUTPUT = REPO_ROOT / "pictures" / "beat_timeline.png"
APP = "demo_tasks.periodic"
ENTRY = "tick-every-second"
#: Sends before the worker starts, and in all.
SENDS_ALONE = 4
SENDS_TOTAL = 10
TIMEOUT = 30.0

STAMP = re.compile(r"^\[(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}): ")
SENDING = re.compile(r"Scheduler: Sending due task (\S+) ")
SENT = re.compile(r"demo_tasks\.periodic\.tick sent\. id->([0-9a-f-]{36})")
SUCCEEDED = re.compile(r"Task demo_tasks\.periodic\.tick\[([0-9a-f-]{36})\] succeeded")


def log(message: str) -> None:
    print(f"beat_timeline: {message}", flush=True)


def stamp(line: str) -> datetime | None:
    match = STAMP.match(line)
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f") if match else None


def sends(beat_log: str) -> dict[str, datetime]:
    """{task id: when beat sent it}, for the entry ENTRY only."""
    found, entry = {}, None
    for line in beat_log.splitlines():
        if m := SENDING.search(line):
            entry = m.group(1)
        elif (m := SENT.search(line)) and entry == ENTRY:
            found[m.group(1)] = stamp(line)
    return found


def runs(worker_log: str) -> dict[str, datetime]:
    """{task id: when the worker finished it}."""
    return {m.group(1): stamp(line) for line in worker_log.splitlines() if (m := SUCCEEDED.search(line))}


def until(condition, what: str) -> None:
    if not launcher.wait_for(condition, TIMEOUT, interval=0.05):
        raise RuntimeError(f"timed out after {TIMEOUT:g} s waiting for {what}")


def real_run() -> tuple[dict[str, datetime], dict[str, datetime], datetime]:
    """Run beat, then the worker; return (sends, runs, when the worker was ready)."""
    broker = launcher.start_embedded()
    try:
        beat = launcher.start_beat(APP, broker=broker, loglevel="DEBUG", cwd=str(REPO_ROOT))
        until(lambda: len(sends(beat.log())) >= SENDS_ALONE, f"beat to send {SENDS_ALONE} ticks")
        worker = launcher.start_worker(APP, broker=broker, fast=True, cwd=str(REPO_ROOT))
        until(lambda: len(sends(beat.log())) >= SENDS_TOTAL, f"beat to send {SENDS_TOTAL} ticks")
        beat.stop()
        sent = sends(beat.log())
        until(lambda: set(sent) <= set(runs(worker.log())), "the worker to run every tick sent")
        ready = next(stamp(line) for line in worker.log().splitlines() if line.endswith(" ready."))
        done = runs(worker.log())
        worker.cleanup()
        beat.cleanup()
        return sent, done, ready
    finally:
        launcher.stop_all()
        broker.stop()


def draw(sent: dict[str, datetime], done: dict[str, datetime], ready: datetime) -> None:
    use_cjk_font()
    start = min(sent.values())
    order = sorted(sent, key=sent.get)

    def sec(t: datetime) -> float:
        return (t - start).total_seconds()

    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=120)
    end = max(sec(t) for t in [*sent.values(), *done.values()]) + 0.6
    ax.axvspan(-0.4, sec(ready), color="#F3F3F3", zorder=0)
    ax.text(sec(ready) / 2 - 0.2, 1.42, "还没有 worker：消息在队列里排着", ha="center", va="center",
            fontsize=10, color="#555555")
    ax.axvline(sec(ready), color="#3E8E50", linestyle="--", linewidth=1, zorder=1)
    ax.text(sec(ready) + 0.08, 0.5, "worker 就绪", color="#3E8E50", fontsize=10, va="center")
    for task_id in order:
        ax.plot([sec(sent[task_id]), sec(done[task_id])], [1, 0], color="#999999", linewidth=0.8, zorder=2)
    ax.scatter([sec(sent[i]) for i in order], [1] * len(order), s=46, color="#3F77B3", zorder=3,
               label="beat 发送（beat 日志）")
    ax.scatter([sec(done[i]) for i in order], [0] * len(order), s=46, color="#D27B1F", marker="s", zorder=3,
               label="worker 执行完（worker 日志）")
    ax.set_yticks([1, 0], ["beat 发送", "worker 执行完"])
    ax.set_ylim(-0.45, 1.65)
    ax.set_xlim(-0.4, end)
    ax.set_xlabel("从 beat 第一次发送算起的秒数")
    ax.set_title(f"tick-every-second：每 1 秒发送一次（一次真实运行，共 {len(order)} 次）", fontsize=12)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    ax.legend(loc="upper right", fontsize=9, frameon=False)
    fig.tight_layout()
    save_figure(fig, OUTPUT)


def main() -> int:
    sent, done, ready = real_run()
    draw(sent, done, ready)
    log(f"{OUTPUT.relative_to(REPO_ROOT)}: {len(sent)} sends, the worker ready after "
        f"{(ready - min(sent.values())).total_seconds():.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
