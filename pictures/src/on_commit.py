"""Draw the on_commit race of chapter 05 as two sequence diagrams.

Left: the view sends the task inside its transaction (plain delay()). The
message is published before COMMIT, the worker's SELECT runs in between and
finds nothing. Right: delay_on_commit() (Django's transaction.on_commit) holds
the message back until COMMIT, so the worker's SELECT finds the row.

Output: pictures/on_commit_race.png. Drawn from the description below (no
screenshot): fixed figure size and dpi, the Agg backend, no metadata, so
running it twice gives identical bytes.

    .venv/bin/python pictures/src/on_commit.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless and reproducible; must precede pyplot

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fonts.py, beside this file

from fonts import save_figure, use_cjk_font

from launcher.paths import REPO_ROOT

OUTPUT = REPO_ROOT / "pictures" / "on_commit_race.png"
FIG_W, FIG_H, DPI = 13.0, 7.2, 120

LANES = ["视图（Web 进程）", "数据库", "Broker", "worker"]
LANE_X = [1.0, 3.0, 5.0, 7.0]
TEXT, MUTED, GOOD, BAD, ARROW = "#222222", "#555555", "#3E8E50", "#C0392B", "#4A4A4A"

# Each step: (from lane, to lane, label, colour); from == to is a note on that lane.
WRONG = [
    (0, 1, "BEGIN", ARROW),
    (0, 1, "INSERT report", ARROW),
    (0, 2, "delay()：消息立刻发出", BAD),
    (2, 3, "worker 取走消息", ARROW),
    (3, 1, "SELECT report → 没有这一行", BAD),
    (0, 1, "COMMIT（晚了）", ARROW),
]
RIGHT = [
    (0, 1, "BEGIN", ARROW),
    (0, 1, "INSERT report", ARROW),
    (0, 0, "delay_on_commit()：先记下，不发", GOOD),
    (0, 1, "COMMIT", ARROW),
    (0, 2, "提交之后才发出消息", GOOD),
    (2, 3, "worker 取走消息", ARROW),
    (3, 1, "SELECT report → 找到了", GOOD),
]


def panel(ax, title: str, steps, verdict: str, colour: str) -> None:
    ax.set_xlim(0, 8)
    ax.set_ylim(0, 10)
    ax.axis("off")
    ax.text(4, 9.65, title, ha="center", va="center", fontsize=14, fontweight="bold", color=TEXT)
    for x, name in zip(LANE_X, LANES, strict=True):
        ax.add_patch(FancyBboxPatch((x - 0.85, 8.45), 1.7, 0.6, boxstyle="round,pad=0,rounding_size=0.12",
                                    facecolor="#EEF3F9", edgecolor="#3F77B3", linewidth=1.2))
        ax.text(x, 8.75, name, ha="center", va="center", fontsize=10.5, color=TEXT)
        ax.plot([x, x], [0.9, 8.45], color="#B5B5B5", linewidth=1.0, linestyle=(0, (4, 3)), zorder=0)
    gap = 7.2 / (len(RIGHT) + 0.5)
    for i, (start, end, label, col) in enumerate(steps):
        y = 7.95 - (i + 0.5) * gap
        ax.text(0.12, y, str(i + 1), ha="center", va="center", fontsize=9, color="white",
                bbox={"boxstyle": "circle,pad=0.25", "facecolor": col if col != ARROW else MUTED,
                      "edgecolor": "none"})
        if start == end:
            ax.text(LANE_X[start] + 0.15, y, label, ha="left", va="center", fontsize=10, color=col,
                    bbox={"boxstyle": "round,pad=0.3", "facecolor": "#F3FAF4", "edgecolor": col})
            continue
        x0, x1 = LANE_X[start], LANE_X[end]
        ax.add_patch(FancyArrowPatch((x0, y), (x1, y), arrowstyle="-|>,head_length=0.6,head_width=0.3",
                                     mutation_scale=12, color=col, linewidth=1.6, shrinkA=0, shrinkB=0))
        ax.text((x0 + x1) / 2, y + 0.22, label, ha="center", va="bottom", fontsize=10, color=col,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"})
    ax.text(4, 0.45, verdict, ha="center", va="center", fontsize=11.5, color=colour, fontweight="bold")


def draw() -> plt.Figure:
    fig = plt.figure(figsize=(FIG_W, FIG_H), dpi=DPI, facecolor="white")
    left = fig.add_axes((0.01, 0.02, 0.48, 0.96))
    right = fig.add_axes((0.51, 0.02, 0.48, 0.96))
    panel(left, "事务里直接 delay()", WRONG, "worker 在提交之前执行：找不到刚创建的行", BAD)
    panel(right, "delay_on_commit()", RIGHT, "提交之后才发送：worker 一定看得到这一行", GOOD)
    fig.add_artist(plt.Line2D([0.5, 0.5], [0.04, 0.96], color="#D5D5D5", linewidth=1.0))
    return fig


def main() -> None:
    use_cjk_font()
    save_figure(draw(), OUTPUT, dpi=DPI)
    print(OUTPUT.relative_to(REPO_ROOT).as_posix())


if __name__ == "__main__":
    main()
