"""Draw chapter 09's picture: where each piece of the notifications and reports runs.

Left to right: the two senders (the browser posting the notification form, and
beat with the DatabaseScheduler firing the daily report mail at 08:00) put tasks
into the Broker -- the daily report's download is no task: the view builds the
workbook from the database while the browser waits; one worker (`celery -A
django_demo worker`) runs the four tasks; each task talks to a receiver outside
the project -- an SMTP server, a DingTalk group bot, the project's own webhook --
and the receiver's answer decides whether the task retries. Under the worker,
the Django database that the views and the tasks both read and write. The words
are the glossary's (chapter 01); the drawing helpers, colours and fonts are
chapter 01's diagram's (architecture.py), imported.

Each receiver box says in one line what its answers mean for a retry, and under
it what stands in for it in production. The one note on the worker's arrows is
the chapter's point: a retry after a timeout may deliver a message twice.

Output: pictures/notifications_architecture.png. Drawn from the description
below (no run needed): fixed figure size and dpi, the Agg backend and no
metadata, so running it twice gives identical bytes. The script refuses to save
a picture in which two pieces of text overlap.

    .venv/bin/python pictures/src/notifications_architecture.py
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless and reproducible; must precede pyplot

import matplotlib.pyplot as plt
from matplotlib.patches import Ellipse, FancyBboxPatch, Rectangle

sys.path.insert(0, str(Path(__file__).resolve().parent))  # architecture.py and fonts.py, beside this file

from architecture import (
    BACKEND,
    BROKER,
    MUTED,
    QUERY,
    SOURCE,
    TEXT,
    WORKER,
    Box,
    Style,
    arrow,
    canvas,
    draw_box,
    label,
)
from fonts import save_figure, use_cjk_font

from launcher.paths import REPO_ROOT

OUTPUT = REPO_ROOT / "pictures" / "notifications_architecture.png"

# One data unit is 0.1 inch, as in architecture.py: the axes span 134 x 80 units.
FIG_W, FIG_H, DPI = 13.4, 8.0, 130
X_MAX, Y_MAX = FIG_W * 10, FIG_H * 10

#: The receivers live outside the project: a colour of their own beside chapter 01's four.
RECEIVER = Style("#DDF0F2", "#2E8B99")
#: The note on the worker's arrows, the chapter's warning.
WARN = "#C0392B"


@dataclass(frozen=True)
class Receiver:
    """A server a task talks to: its box, its reply rules (one short line each) and a note under it."""

    box: Box
    rules: tuple[str, ...]
    note: str


# --------------------------------------------------------------------------
# Layout, left to right
# --------------------------------------------------------------------------

BEAT = Box(2, 50, 19, 14, SOURCE, "celery beat", "（DatabaseScheduler，\n每天 08:00）")
WEB = Box(2, 27, 19, 17, SOURCE, "浏览器 / Django 视图")
FORM_BUTTONS = ("发通知", "下载日报")
BROKER_BOX = Box(28.5, 35, 20.5, 20, BROKER, "Broker（消息代理）", "Redis / Valkey\n队列 celery")

WORKER_BOX = Box(56, 25, 28, 44, WORKER, "worker", "celery -A django_demo worker")
TASK_TOP, TASK_H, TASK_GAP = 7.4, 7.6, 1.3  # first task's distance from the worker's top; height; gap
#: The four tasks, top to bottom (both mail tasks first: they go to the SMTP server).
TASKS = [
    ("send_email_notification", "发邮件"),
    ("mail_daily_report", "日报 XLSX（openpyxl）作附件"),
    ("send_dingtalk", "发到钉钉群"),
    ("post_webhook", "调用自己的 webhook"),
]
DATABASE = Box(56, 3, 28, 15, BACKEND, "Django 数据库", "Notification / Report 行\nTaskResult（结果后端）")

RECEIVER_X, RECEIVER_W = 97.5, 35
RECEIVERS = [
    Receiver(Box(RECEIVER_X, 54, RECEIVER_W, 13, RECEIVER, "SMTP 服务器", "（aiosmtpd → Maildir）"),
             ("4xx 重试 · 5xx 不重试",),
             "生产：公司的邮件服务器；开发：compose 里的 Mailpit"),
    Receiver(Box(RECEIVER_X, 29.5, RECEIVER_W, 17, RECEIVER, "钉钉群机器人", "（本地替身：services.bot_receiver）"),
             ("加签：Base64(HMAC-SHA256)，每次尝试重签", "看 errcode：130101、-1 重试，其余不重试"),
             "生产：oapi.dingtalk.com"),
    Receiver(Box(RECEIVER_X, 10.5, RECEIVER_W, 13, RECEIVER, "自己的 webhook", "（/hooks/notify）"),
             ("Idempotency-Key → 接收端去重",),
             "本地：同一个 services.bot_receiver"),
]
#: Which receiver each task (TASKS, in order) talks to, and where its arrow ends on that box (0 = bottom, 1 = top).
TASK_TARGETS = [(0, 0.65), (0, 0.25), (1, 0.5), (2, 0.5)]

COLUMN_HEADERS = [((BEAT.cx, "发出任务")), (BROKER_BOX.cx, "排队"), (WORKER_BOX.cx, "执行任务"),
                  (RECEIVER_X + RECEIVER_W / 2, "接收方（项目之外的服务器）")]
HEADER_Y = 72.2

# --------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------


def frame(ax, box: Box, *, dashed: bool = False, face: str | None = None) -> None:
    """A box's outline only (its text is placed by the caller), in chapter 01's box style."""
    ax.add_patch(FancyBboxPatch(
        (box.x, box.y), box.w, box.h, boxstyle="round,pad=0,rounding_size=1.6",
        facecolor=face or box.style.face, edgecolor=box.style.edge, linewidth=1.4 if dashed else 1.6,
        linestyle=(0, (4, 2)) if dashed else "solid", zorder=1.5 if dashed else 2))


def draw_web(ax) -> None:
    """The browser with chapter 09's two forms: a notification to send, the daily report to download."""
    frame(ax, WEB)
    ax.text(WEB.cx, WEB.top - 3.2, WEB.title, ha="center", va="center", fontsize=12.5, fontweight="bold",
            color=TEXT, zorder=3)
    ax.text(WEB.cx, WEB.top - 6.6, "表单：", ha="center", va="center", fontsize=10.5, color=MUTED, zorder=3)
    width, gap = 7.6, 1.2
    left = WEB.cx - (len(FORM_BUTTONS) * width + (len(FORM_BUTTONS) - 1) * gap) / 2
    for i, text in enumerate(FORM_BUTTONS):
        x = left + i * (width + gap)
        ax.add_patch(FancyBboxPatch((x, WEB.y + 4.6), width, 4.2, boxstyle="round,pad=0,rounding_size=0.7",
                                    facecolor="white", edgecolor=WEB.style.edge, linewidth=1.1, zorder=3))
        ax.text(x + width / 2, WEB.y + 6.7, text, ha="center", va="center", fontsize=10.5, color=TEXT, zorder=4)
    ax.text(WEB.cx, WEB.y + 2.2, "发通知：提交后才发任务", ha="center", va="center", fontsize=10,
            color=MUTED, zorder=3)


def task_boxes() -> list[Box]:
    top = WORKER_BOX.top - TASK_TOP
    return [Box(WORKER_BOX.x + 1.5, top - TASK_H - i * (TASK_H + TASK_GAP), WORKER_BOX.w - 3, TASK_H, WORKER,
                name, what) for i, (name, what) in enumerate(TASKS)]


def draw_worker(ax) -> list[Box]:
    """One worker process (dashed, like chapter 01's) holding the chapter's four tasks."""
    frame(ax, WORKER_BOX, dashed=True, face="#F3FAF4")
    ax.text(WORKER_BOX.cx, WORKER_BOX.top - 2.5, WORKER_BOX.title, ha="center", va="center", fontsize=12.5,
            fontweight="bold", color=TEXT, zorder=3)
    ax.text(WORKER_BOX.cx, WORKER_BOX.top - 5.3, WORKER_BOX.subtitle, ha="center", va="center", fontsize=10,
            color=MUTED, zorder=3)
    tasks = task_boxes()
    for task in tasks:
        draw_box(ax, task, rounding=0.8, lw=1.1, title_size=10.5)
    return tasks


def draw_database(ax, box: Box) -> None:
    """A cylinder: the Django database (the rows of both apps, and django-celery-results' TaskResult)."""
    ry = 1.8  # half height of the ellipses
    style = {"facecolor": box.style.face, "edgecolor": box.style.edge, "linewidth": 1.6}
    ax.add_patch(Ellipse((box.cx, box.y + ry), box.w, 2 * ry, zorder=2, **style))
    ax.add_patch(Rectangle((box.x, box.y + ry), box.w, box.h - 2 * ry, facecolor=box.style.face,
                           edgecolor="none", zorder=2))
    for x in (box.x, box.right):
        ax.plot([x, x], [box.y + ry, box.top - ry], color=box.style.edge, linewidth=1.6, zorder=2.1)
    ax.add_patch(Ellipse((box.cx, box.top - ry), box.w, 2 * ry, zorder=2.2, **style))
    ax.text(box.cx, box.cy + 0.4, box.title, ha="center", va="center", fontsize=12.5, fontweight="bold",
            color=TEXT, zorder=3)
    ax.text(box.cx, box.cy - 3.6, box.subtitle, ha="center", va="center", fontsize=10, color=MUTED,
            linespacing=1.35, zorder=3)


def draw_receiver(ax, receiver: Receiver) -> None:
    box = receiver.box
    frame(ax, box)
    ax.text(box.cx, box.top - 3.0, box.title, ha="center", va="center", fontsize=12.5, fontweight="bold",
            color=TEXT, zorder=3)
    ax.text(box.cx, box.top - 6.0, box.subtitle, ha="center", va="center", fontsize=10, color=MUTED, zorder=3)
    for i, rule in enumerate(receiver.rules):
        ax.text(box.cx, box.top - 9.6 - 3.2 * i, rule, ha="center", va="center", fontsize=10, color=TEXT,
                zorder=3)
    ax.text(box.cx, box.y - 2.0, receiver.note, ha="center", va="center", fontsize=10, color=MUTED, zorder=3)


def draw() -> plt.Figure:
    fig, ax = canvas(FIG_W, FIG_H, X_MAX, Y_MAX)

    ax.text(X_MAX / 2, 76.6, "通知与报表：每个部分在哪里运行", ha="center", va="center", fontsize=19,
            fontweight="bold", color=TEXT)
    for x, text in COLUMN_HEADERS:
        ax.text(x, HEADER_Y, text, ha="center", va="center", fontsize=10.5, color=MUTED)

    # Senders -> Broker: the view sends after its transaction commits; beat at 08:00.
    draw_box(ax, BEAT, title_size=12.5)
    draw_web(ax)
    draw_box(ax, BROKER_BOX, title_size=12.5, title_dy=0.6)
    arrow(ax, (BEAT.right, BEAT.cy), (BROKER_BOX.x, BROKER_BOX.cy + 4))
    arrow(ax, (WEB.right, WEB.cy + 3), (BROKER_BOX.x, BROKER_BOX.cy - 4))
    label(ax, (BEAT.right + BROKER_BOX.x) / 2, BROKER_BOX.cy, "发送\n任务", size=10)

    # Broker -> worker -> receivers.
    tasks = draw_worker(ax)
    arrow(ax, (BROKER_BOX.right, BROKER_BOX.cy), (WORKER_BOX.x, BROKER_BOX.cy))
    label(ax, (BROKER_BOX.right + WORKER_BOX.x) / 2, BROKER_BOX.cy + 3.4, "取出\n消息", size=10)
    for receiver in RECEIVERS:
        draw_receiver(ax, receiver)
    for task, (which, height) in zip(tasks, TASK_TARGETS, strict=True):
        target = RECEIVERS[which].box
        arrow(ax, (task.right, task.cy), (target.x, target.y + height * target.h))
    label(ax, (WORKER_BOX.right + RECEIVER_X) / 2, 44.6, "超时后重试 →\n可能重复\n（至少一次）", size=10, color=WARN)

    # The Django database: the view creates the rows and reads their status (and builds the daily
    # workbook for a download itself, from the rows: no task), the tasks update them.
    draw_database(ax, DATABASE)
    arrow(ax, None, None, dashed=True, color=QUERY,
          path=[(WEB.cx, WEB.y), (WEB.cx, DATABASE.cy), (DATABASE.x, DATABASE.cy)])
    label(ax, (WEB.cx + DATABASE.x) / 2 + 4, DATABASE.cy, "建行 · 读状态\n下载日报：当场读库生成 XLSX", size=10,
          color=QUERY)
    arrow(ax, (WORKER_BOX.cx + 6, WORKER_BOX.y), (WORKER_BOX.cx + 6, DATABASE.top), dashed=True, color=QUERY)
    label(ax, WORKER_BOX.cx - 3, (WORKER_BOX.y + DATABASE.top) / 2 + 0.2, "更新状态 · 写结果", size=10,
          color=QUERY)
    return fig


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of texts whose drawn extents intersect (each with its white label background, if any)."""
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    extents = []
    for text in fig.axes[0].texts:
        if not text.get_text().strip():
            continue
        patch = text.get_bbox_patch()
        extents.append((text.get_text(), (patch or text).get_window_extent(renderer)))
    return [(a, b) for (a, box_a), (b, box_b) in combinations(extents, 2) if box_a.overlaps(box_b)]


def main() -> None:
    use_cjk_font()
    fig = draw()
    clashes = overlapping_texts(fig)
    if clashes:
        plt.close(fig)
        sys.exit("error: texts overlap in the picture, move them apart in "
                 f"{Path(__file__).name}: " + "; ".join(f"{a!r} and {b!r}" for a, b in clashes))
    save_figure(fig, OUTPUT, dpi=DPI)
    print(OUTPUT.relative_to(REPO_ROOT).as_posix())


if __name__ == "__main__":
    main()
