"""Draw chapter 08's two workflow timelines from a real run's task events: who
ran each task of a chain and of a chord, and when.

    .venv/bin/python pictures/src/workflow_timeline.py

The run, on an embedded broker of its own on a free port (never 6379), with a
real ``celery -A demo_tasks.workflows worker -E -I instruments.task_events``
(2 pool processes; ``-E``: task events; ``-I``: each pool process announces the
tasks it starts with its own pid, see instruments/task_events.py), while an
``EventRecorder`` listens:

1. a warm-up: groups of 4 small ``count_piece`` tasks until every pool process
   has run one. jieba loads its dictionary once per process, the first time it
   cuts a text: 0.7-0.8 s here (from the cache; longer when it builds it), while
   a piece of the corpus takes 0.03-0.09 s. Without the warm-up the chord's
   picture would be mostly that load. The warm-up is not drawn; the chord's
   title says the dictionary was loaded before;
2. the chain ``slow_step.s(0, 0.3) | slow_step.s(0.3) | slow_step.s(0.3) |
   slow_step.s(0.3)`` (4 links), until it returns 4;
3. the chord ``word_count_pipeline(corpus_files(), 8)``: 8 ``count_piece``
   tasks (the header) and ``merge_counts`` (the callback), until it returns the
   top 10 words.

Drawn from the events, one lane per pool process (进程 1, 进程 2, in the order
they first started a task, the same in both pictures; never the real pid), one
bar per task from its ``task-started``, the time axis from the picture's first
``task-received``:

- pictures/workflow_chain.png: the 4 links, each labelled with its step, and a
  marker where the worker received each link's message;
- pictures/workflow_chord.png: the 8 pieces and the callback in two colours, a
  row of markers where the worker received their messages, and a line where
  the last piece ended.

Where a bar ends. The worker's main process stamps every event, when it hears
from the pool process. A task sends the message it passes on (the chain's next
link; the chord's callback, sent by the last piece to return) as soon as its
body has returned, *before* it stores its result and reports back; so the main
process often receives that message, and may even start it on the other pool
process, before it stamps the sender's ``task-succeeded`` (measured: 0.7 to 8 ms
later, in every chain and most chords; the script logs the largest). Drawn to that stamp, a chain's
links or a chord's last piece and its callback would overlap by a few pixels
in the picture, which they do not: a bar ends at ``task-succeeded``, or where
the message its task passed on reached the worker if that came first (the
body had returned by then).

Before drawing, what the pictures claim is checked, and the script stops with
an error instead of drawing a misleading picture: every task has a record with
received, started and finished times and the pid of a pool process (not the
worker's main process); the chain returned 4, and each link's message reached
the worker at least 0.3 s (the sleep) after the link before it started, and
the link started after the one before ended; the chord's pieces ran on both
processes, some at the same time, each on a process the warm-up had reached;
merge_counts's message reached the worker after every piece had started, it
started after every piece ended, and its result equals the top words counted
serially in this script (so it saw every piece's counts).

The times are the run's own (they differ a little from run to run); the shape
does not. Fixed size and dpi, the Agg backend and no date metadata.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from itertools import combinations, pairwise
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless and reproducible; must precede pyplot

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # fonts.py, beside this file

from fonts import save_figure, use_cjk_font  # noqa: E402

import launcher  # noqa: E402
from instruments.task_events import TaskRecord, lanes  # noqa: E402
from launcher.paths import REPO_ROOT  # noqa: E402

CHAIN_OUTPUT = REPO_ROOT / "pictures" / "workflow_chain.png"
CHORD_OUTPUT = REPO_ROOT / "pictures" / "workflow_chord.png"
APP = "demo_tasks.workflows"
CONCURRENCY = 2
#: The chain: this many links of slow_step, each sleeping this long.
LINKS = 4
STEP_SECONDS = 0.3
#: The chord: the corpus in this many pieces; the callback keeps the top TOP_N words.
PIECES = 8
TOP_N = 10
#: The warm-up: a group of this many small count_piece tasks, at most WARM_ROUNDS times.
WARM_TASKS = 4
WARM_ROUNDS = 5
#: Chinese on purpose: jieba loads its dictionary only when it has Chinese to cut.
WARM_TEXT = "预热：先让每个进程载入 jieba 的词典，再统计真正的语料。"
TIMEOUT = 60.0

# Colours: a chain's link or a chord's piece; the chord's callback (and the chain's message
# markers); connecting lines and notes.
BLUE, ORANGE, GREY = "#3F77B3", "#D27B1F", "#888888"


def log(message: str) -> None:
    print(f"workflow_timeline: {message}", flush=True)


@dataclass
class Bar:
    """One task as drawn: its events' record, and where its bar ends."""

    record: TaskRecord
    #: When the message this task sent on (the chain's next link, the chord's callback)
    #: reached the worker: its body had returned by then (see the module's docstring).
    sent_on: float | None = None

    @property
    def start(self) -> float:
        return self.record.started

    @property
    def end(self) -> float:
        """task-succeeded, or, if it came later, when the message it sent on arrived."""
        if self.sent_on is None:
            return self.record.finished
        return min(self.record.finished, self.sent_on)

    @property
    def late(self) -> float:
        """How much later than ``end`` the worker stamped task-succeeded (0 if not)."""
        return self.record.finished - self.end

    @property
    def lane(self) -> tuple[str, int]:
        return self.record.hostname, self.record.pid


@dataclass
class Run:
    """What the run gives the checks and the drawings."""

    worker_pid: int
    warm: list[Bar]
    chain: list[Bar]  # in chain order
    chain_value: object
    header: list[Bar]  # the count_piece tasks, in the header's order
    callback: Bar  # merge_counts
    chord_value: object
    expected_top: list


def recorded(recorder, ids: list[str], what: str) -> list[Bar]:
    """The bars of ``ids``, in that order, once each has finished (and its pool
    process's pid is in: wait_for waits for that too)."""
    if not recorder.wait_for(ids, timeout=TIMEOUT):
        raise RuntimeError(f"timed out after {TIMEOUT:g} s waiting for the events of the {what}")
    records = recorder.tasks()
    return [Bar(records[i]) for i in ids]


def chain_ids(result) -> list[str]:
    """The ids of a chain's links, first link first (the result is the last link's)."""
    ids = []
    while result is not None:
        ids.append(result.id)
        result = result.parent
    return list(reversed(ids))


def real_run() -> Run:
    broker = launcher.start_embedded()
    cache = tempfile.mkdtemp(prefix="workflow-timeline-jieba-")
    try:
        # demo_tasks.workflows reads REDIS_URL when it is imported: this process sends
        # the workflows through the chapter's own app, so it must point at our broker first.
        os.environ["REDIS_URL"] = broker.url
        from celery import chain, group

        from demo_tasks import wordcount, workflows
        from instruments.task_events import EventRecorder

        # The serial count of the check, in this process: jieba's cache goes to our folder too.
        wordcount.quiet_jieba(cache)
        texts = wordcount.corpus_files()
        pieces = wordcount.split(texts, PIECES)
        expected = wordcount.top(wordcount.merge([wordcount.count_words(p) for p in pieces]), TOP_N)

        worker = launcher.start_worker(APP, broker=broker, fast=True, concurrency=CONCURRENCY,
                                       extra_args=["-E", "-I", "instruments.task_events"], cwd=str(REPO_ROOT),
                                       env={wordcount.CACHE_VARIABLE: cache})
        recorder = EventRecorder(workflows.app)
        warm: list[Bar] = []
        with recorder:
            for _ in range(WARM_ROUNDS):
                sent = group(workflows.count_piece.s(WARM_TEXT) for _ in range(WARM_TASKS)).apply_async()
                sent.get(timeout=TIMEOUT)
                warm += recorded(recorder, [r.id for r in sent.results], "warm-up")
                if len({b.lane for b in warm}) >= CONCURRENCY:
                    break

        with recorder:
            step = workflows.slow_step
            links = [step.s(0, STEP_SECONDS)] + [step.s(STEP_SECONDS) for _ in range(LINKS - 1)]
            result = chain(*links).apply_async()
            chain_value = result.get(timeout=TIMEOUT)
            chain_bars = recorded(recorder, chain_ids(result), "chain")

        with recorder:
            result = workflows.word_count_pipeline(texts, PIECES, TOP_N).apply_async()
            chord_value = result.get(timeout=TIMEOUT)
            header_ids = [r.id for r in result.parent.results]
            chord_bars = recorded(recorder, [*header_ids, result.id], "chord")

        # Each link sent the next one's message, and the chord's callback message went out
        # once every piece had returned.
        for before, after in pairwise(chain_bars):
            before.sent_on = after.record.received
        for bar in chord_bars[:-1]:
            bar.sent_on = chord_bars[-1].record.received
        worker_pid = worker.pid
        worker.cleanup()
        return Run(worker_pid=worker_pid, warm=warm, chain=chain_bars, chain_value=chain_value,
                   header=chord_bars[:-1], callback=chord_bars[-1], chord_value=chord_value,
                   expected_top=[[word, count] for word, count in expected])
    finally:
        launcher.stop_all()
        broker.stop()
        shutil.rmtree(cache, ignore_errors=True)


# --- The checks -------------------------------------------------------------------------

def check_bars(bars: list[Bar], worker_pid: int, what: str) -> None:
    for bar in bars:
        r = bar.record
        missing = [f for f in ("received", "started", "finished", "pid") if getattr(r, f) is None]
        if missing or r.state != "SUCCESS":
            raise RuntimeError(f"{what} task {r.uuid} ({r.name}): state {r.state}, no {', '.join(missing)} "
                               "in its events")
        if r.pid == worker_pid:
            raise RuntimeError(f"{what} task {r.uuid}: its pid is the worker's main process, not a pool "
                               "process: did the worker import instruments.task_events (-I)?")
        if not r.received <= bar.start < bar.end:
            raise RuntimeError(f"{what} task {r.uuid}: received {r.received:.4f}, started {bar.start:.4f}, "
                               f"ended {bar.end:.4f}: not in this order")


def check(run: Run) -> None:
    """Raise unless what the pictures claim holds."""
    check_bars(run.warm, run.worker_pid, "warm-up")
    check_bars(run.chain, run.worker_pid, "chain")
    check_bars([*run.header, run.callback], run.worker_pid, "chord")
    if run.chain_value != LINKS:
        raise RuntimeError(f"the chain returned {run.chain_value!r}, not {LINKS}")
    for n, (before, after) in enumerate(pairwise(run.chain), start=2):
        # Link n's message can only go out once link n-1 has slept its STEP_SECONDS:
        # it cannot reach the worker sooner than that after link n-1 started.
        if after.record.received < before.start + STEP_SECONDS:
            raise RuntimeError(f"chain link {n} reached the worker {after.record.received - before.start:.3f} s "
                               f"after link {n - 1} started, sooner than its {STEP_SECONDS:g} s sleep")
        if after.start < before.end:
            raise RuntimeError(f"chain link {n} started before link {n - 1} ended")
    warmed = {b.lane for b in run.warm}
    if len(warmed) < CONCURRENCY:
        raise RuntimeError(f"after {WARM_ROUNDS} rounds of warm-up only {len(warmed)} pool processes had run "
                           f"count_piece, not all {CONCURRENCY}")
    cold = [b.record.uuid for b in [*run.header, run.callback] if b.lane not in warmed]
    if cold:
        raise RuntimeError(f"tasks {cold} ran on a pool process the warm-up did not reach")
    # "In parallel": the pieces ran on every pool process, some of them at the same time.
    if len({b.lane for b in run.header}) < CONCURRENCY or not any(
            a.start < b.end and b.start < a.end for a, b in combinations(run.header, 2)):
        raise RuntimeError("the chord's pieces did not run in parallel on every pool process")
    # The callback's message went out only after every piece had run: it cannot reach the
    # worker before the last piece started.
    cb = run.callback
    if cb.record.received < max(b.start for b in run.header):
        raise RuntimeError("merge_counts reached the worker before every count_piece had started")
    if cb.start < max(b.end for b in run.header):
        raise RuntimeError("merge_counts started before every count_piece had ended")
    # And it saw every piece's counts: its top words are those of the whole corpus.
    if run.chord_value != run.expected_top:
        raise RuntimeError(f"the chord returned {run.chord_value}, the serial count gives {run.expected_top}")


# --- The drawings -----------------------------------------------------------------------

XLABEL = "时间（秒，从第一个任务被接收算起）"


def lane_rows(run: Run) -> dict[tuple[str, int], int]:
    """One row per pool process, numbered the same in both pictures: in the order they
    first started a drawn task (the chain's first), then any that ran none."""
    rows = lanes([b.record for b in [*run.chain, *run.header, run.callback]])
    for lane in sorted({b.lane for b in run.warm} - set(rows)):
        rows[lane] = len(rows)
    return rows


def style(ax) -> None:
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", color="#EEEEEE", zorder=0)
    ax.set_axisbelow(True)


def draw_chain(run: Run) -> None:
    use_cjk_font()
    rows = lane_rows(run)
    t0 = min(b.record.received for b in run.chain)
    fig, ax = plt.subplots(figsize=(10, 3.4), dpi=120)
    for n, bar in enumerate(run.chain, start=1):
        y = rows[bar.lane]
        ax.barh(y, bar.end - bar.start, left=bar.start - t0, height=0.5, color=BLUE, edgecolor="white",
                linewidth=1, zorder=2)
        ax.text((bar.start + bar.end) / 2 - t0, y, f"第 {n} 步", ha="center", va="center", color="white",
                fontsize=11, zorder=3)
        ax.scatter([bar.record.received - t0], [y - 0.4], marker="v", s=45, color=ORANGE, zorder=3)
    for before, after in pairwise(run.chain):
        if before.lane != after.lane:  # handed over to another process: show from where to where
            ax.plot([before.end - t0, after.start - t0], [rows[before.lane], rows[after.lane]],
                    color=GREY, linestyle=":", linewidth=1.2, zorder=1)
    used = {b.lane for b in run.chain}
    for lane, y in rows.items():
        if lane not in used:
            ax.text(0.01, y, "（这一次没有轮到它；同一时刻只有一步在执行）", va="center", fontsize=10, color=GREY)
    end = max(b.end for b in run.chain) - t0
    ax.set_yticks(list(rows.values()), [f"进程 {y + 1}" for y in rows.values()])
    ax.set_ylim(len(rows) - 0.5, -0.75)  # the first process on top, room for the markers
    ax.set_xlim(-0.02, end + 0.03)
    ax.set_xlabel(XLABEL)
    style(ax)
    sleeping = LINKS * STEP_SECONDS
    ax.set_title(f"chain：上一步的结果是下一步的输入，所以 {LINKS} 步一步接一步地执行\n"
                 f"整条 chain 用了 {end:.2f} 秒，比 {LINKS} × {STEP_SECONDS:g} 秒的 slow_step "
                 f"只多 {end - sleeping:.2f} 秒："
                 "步与步之间的交接只要几毫秒，图上看不出", fontsize=11)
    handles = [Patch(color=BLUE, label="一步在进程里执行"),
               Line2D([], [], marker="v", color=ORANGE, linestyle="none", markersize=8,
                      label="worker 收到这一步的消息（上一步执行完才发出）")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, fontsize=10,
              frameon=False)
    fig.tight_layout()
    save_figure(fig, CHAIN_OUTPUT)


def draw_chord(run: Run) -> None:
    use_cjk_font()
    rows = lane_rows(run)
    bars = [*run.header, run.callback]
    t0 = min(b.record.received for b in bars)
    end = max(b.end for b in bars) - t0
    fig, ax = plt.subplots(figsize=(10, 3.9), dpi=120)
    width_px = fig.get_figwidth() * fig.dpi * 0.8 / 1.07  # about the axes' width, per span of `end`
    for n, bar in enumerate(bars, start=1):
        callback = bar is run.callback
        y = rows[bar.lane]
        colour = ORANGE if callback else BLUE
        ax.barh(y, bar.end - bar.start, left=bar.start - t0, height=0.5, color=colour, edgecolor="white",
                linewidth=1, zorder=2)
        label = "汇总" if callback else f"第 {n} 块"
        if (bar.end - bar.start) / end * width_px > 14 * len(label) + 12:  # inside, where it fits
            ax.text((bar.start + bar.end) / 2 - t0, y, label, ha="center", va="center", color="white",
                    fontsize=10, zorder=3)
        elif callback:  # else beside it (the x axis leaves room on the right)
            ax.text(bar.end - t0 + end * 0.005, y, label, ha="left", va="center", color=ORANGE, fontsize=10)
        ax.scatter([bar.record.received - t0], [-1], marker="v", s=45, color=colour, zorder=3)
    last = max(b.end for b in run.header) - t0
    ax.axvline(last, color=GREY, linestyle="--", linewidth=1, zorder=1)
    ax.text(last, -1.45, "最后一块统计完 ", ha="right", va="center", fontsize=10, color="#555555")
    ax.set_yticks([-1, *rows.values()], ["worker 收到消息", *[f"进程 {y + 1}" for y in rows.values()]])
    ax.set_ylim(len(rows) - 0.5, -1.7)
    ax.set_xlim(-end * 0.01, end * 1.06)
    ax.set_xlabel(XLABEL)
    style(ax)
    ax.set_title(f"chord：语料切成 {len(run.header)} 块，{len(rows)} 个进程并行统计词频，"
                 "每一块都统计完才汇总\n（jieba 的词典已在每个进程里预先载入）", fontsize=11)
    handles = [Patch(color=BLUE, label="统计一块 count_piece"), Patch(color=ORANGE, label="汇总 merge_counts")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=10,
              frameon=False)
    fig.tight_layout()
    save_figure(fig, CHORD_OUTPUT)


def main() -> int:
    run = real_run()
    check(run)
    draw_chain(run)
    draw_chord(run)
    chain = run.chain
    late = max(b.late for b in [*chain, *run.header]) * 1000
    chord_took = run.callback.end - min(b.record.received for b in run.header)
    log(f"{CHAIN_OUTPUT.relative_to(REPO_ROOT)}: {LINKS} links on {len({b.lane for b in chain})} process(es) in "
        f"{chain[-1].end - chain[0].record.received:.3f} s; {CHORD_OUTPUT.relative_to(REPO_ROOT)}: "
        f"{len(run.header)} pieces and merge_counts in {chord_took:.3f} s; "
        f"task-succeeded stamped at most {late:.1f} ms after the message sent on arrived; "
        f"top words {run.chord_value[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
