"""The sanitize rules (launcher/nbval_sanitize.cfg), one by one: for each, a line it must
change and a similar line of real content it must leave alone."""

import re

import pytest

from launcher import sanitize
from launcher.sanitize import config_rules

TASK = "0f8fad5b-d9cb-469f-a165-70867728950e"
REPORT = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"

#: rule -> (a line it changes, what sanitize() makes of it, a similar line it leaves alone)
CASES = {
    "log-timestamps": (
        "[2026-11-24 04:30:01,123: INFO/MainProcess] w1@HOST ready.",
        "[TIME: INFO/MainProcess] w1@HOST ready.",
        "[2026-11-24 04:30:01,123: the time a report was due]",
    ),
    "beat-localtime": (
        "LocalTime -> 2026-11-24 12:30:01",
        "LocalTime -> TIME",
        "next run: 2025-01-06 08:30:00+08:00",
    ),
    "event-timestamps": (
        f"w1@HOST [2026-11-24 04:30:01.235075+00:00] task received: demo_tasks.tasks.add({TASK}) args=(2, 3)",
        "w1@HOST [TIME] task received: demo_tasks.tasks.add(TASK-ID) args=(2, 3)",
        "friday_9am [2025-01-03 09:00:00+08:00] is a Friday",
    ),
    "platform-line": (
        "-- ******* ---- Linux-6.1.0-18-amd64-x86_64-with-glibc2.36 2026-11-24 04:30:01",
        "-- ******* ---- PLATFORM TIME",
        "-- ******* ---- .> task events: OFF (enable -E to monitor tasks in this worker)",
    ),
    "tornado-log-prefix": (
        "[I 261124 04:30:01 command:177] Visit me at http://127.0.0.1:45541",
        "[I TIME command:177] Visit me at http://127.0.0.1:PORT",
        "[I 261124] the 24th of November",
    ),
    "report-ids": (
        f"302 -> /reports/{REPORT}/",
        "302 -> /reports/REPORT-ID/",
        "302 -> /reports/new/",
    ),
    "report-files": (
        f'filename="report-{REPORT}-{TASK[:8]}.csv"',
        'filename="report-REPORT-ID-TASK.csv"',
        'filename="report-2026-q4.csv"',
    ),
    "error-ids": (
        "第 3 行出错。 | 错误编号: 70526ed9 | 重试: True",
        "第 3 行出错。 | 错误编号: ERROR-ID | 重试: True",
        "checksum 70526ed9",
    ),
    "task-ids": (
        f"Task demo_tasks.tasks.add[{TASK}] received",
        "Task demo_tasks.tasks.add[TASK-ID] received",
        "a UUID made by hand: 12345678-1234-1234-1234-123456789abc",   # not a version-4 UUID
    ),
    "pool-jobs": (
        "WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL) Job: 4.",
        "WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL) Job: N.",
        "jobs: 4",
    ),
    "node-names": (
        "w1@my-laptop.local ready.",
        "w1@HOST ready.",
        "mail reports@example.com",
    ),
    "scratch-folders": (
        "DATABASE_URL=sqlite:///.scratch/chapter05-k3j2x9ab/db.sqlite3",
        "DATABASE_URL=sqlite:///.scratch/chapter05-SCRATCH/db.sqlite3",
        "ls .scratch/chapter05-notes/ django_demo/chapter05-k3j2x9ab",
    ),
    "loopback-ports": (
        "broker: redis://127.0.0.1:45225/4",
        "broker: redis://127.0.0.1:PORT/4",
        "ports:\n  - 127.0.0.1:6379:6379",      # the compose file's fixed port
    ),
    "port-options": (
        "flower --address=127.0.0.1 --port=45541",
        "flower --address=127.0.0.1 --port=PORT",
        "celery -A tasks flower --port=5555",    # the article's port
    ),
    "port-settings": (
        "EMAIL_PORT=45907 \\",
        "EMAIL_PORT=PORT \\",
        "EMAIL_PORT=1025 celery -A proj worker",    # a port the learner types
    ),
    "attempt-that-sent": (
        "notification f308e5ae via email: attempt 2 of 4: sent to learner@example.com",
        "notification f308e5ae via email: attempt N of 4: sent to learner@example.com",
        "attempt 1 of 4 failed, retry in 0.5 s",    # a failed attempt's number is compared
    ),
    "report-days": (
        '报表日报 2026-12-07 | 2026-12-07 的报表日报 | daily-report-2026-12-07.xlsx | 参数: {"day": "2026-12-07"}',
        '报表日报 DAY | DAY 的报表日报 | daily-report-DAY.xlsx | 参数: {"day": "DAY"}',
        "2026-12-07 发布 | report-2026-12-07 | {\"date\": \"2026-12-07\"}",    # other dates stay
    ),
    "pool-processes": (
        "[2026-11-24 04:30:01,123: INFO/ForkPoolWorker-3] Task demo_tasks.tasks.add",
        "[TIME: INFO/ForkPoolWorker-N] Task demo_tasks.tasks.add",
        "--concurrency=3: 3 pool processes",
    ),
    "pids": (
        "Process 'ForkPoolWorker-2' pid:8141 exited with 'signal 9 (SIGKILL)'",
        "Process 'ForkPoolWorker-N' pid:PID exited with 'signal 9 (SIGKILL)'",
        "tini runs as PID 1 in the container",
    ),
    "memory-addresses": (
        "- ** ---------- .> app:         tasks:0x7f3a2b1c4d50",
        "- ** ---------- .> app:         tasks:0xADDR",
        "flags = 0xdeadbeef",
    ),
    "task-runtimes": (
        f"[2026-11-24 04:30:01,123: INFO/ForkPoolWorker-2] Task demo_tasks.tasks.add[{TASK}] succeeded in 0.0012s: 8",
        "[TIME: INFO/ForkPoolWorker-N] Task demo_tasks.tasks.add[TASK-ID] succeeded in DURATION: 8",
        "slow_add(4, 4, seconds=1.0) succeeded in the end: 8",
    ),
    "waited-after": (
        "answering after 0.5 s",
        "answering after DURATION",
        "retry after 0.5 s",    # a setting, not a measurement
    ),
    "schedule-remaining": (
        "due right after a run: False | check again in 29.6 s",
        "due right after a run: False | check again in DURATION",
        "the schedule: every 29.6 s",
    ),
    "flower-runtimes": (
        "demo_tasks.tasks.add        (1, 1)  SUCCESS  0.04 s   2",
        "demo_tasks.tasks.add        (1, 1)  SUCCESS  DURATION   2",
        "demo_tasks.tasks.slow_add   (4, 4)  SUCCESS  8 (slept 1.00 s)",
    ),
    "durations-zh": (
        "delay() 返回用了 0.8 毫秒",
        "delay() 返回用了 DURATION",
        "依次直接调用需要约 2 秒",
    ),
    "cpu-cores-zh": (
        "核数: 8",
        "核数: CORES",
        "用 2 个核",
    ),
    "measured-cells": (
        '<tr><td style="text-align:left">串行</td><td class="measured">0.97 秒</td></tr>',
        '<tr><td style="text-align:left">串行</td><td class="measured">MEASURED</td></tr>',
        '<tr><td style="text-align:left">8 块</td><td>0.97 秒</td></tr>',   # a cell not marked as measured
    ),
}


def test_every_rule_has_a_case():
    assert sorted(CASES) == sorted(name for name, _regex, _replacement in config_rules())


def as_seen_by(rule: str, text: str) -> tuple[str, str]:
    """The rule's regex, and ``text`` as the rules above it leave it (nbval applies them in order)."""
    for name, regex, replacement in config_rules():
        if name == rule:
            return regex, text
        text = re.sub(regex, replacement, text)
    raise KeyError(rule)


@pytest.mark.parametrize("rule", list(CASES))
def test_rule_changes_what_varies_and_keeps_real_content(rule):
    changes, expected, keeps = CASES[rule]
    regex, seen = as_seen_by(rule, changes)
    assert re.search(regex, seen), f"[{rule}] does not match {seen!r}"
    assert sanitize(changes) == expected
    regex, seen = as_seen_by(rule, keeps)
    assert not re.search(regex, seen), f"[{rule}] matches real content: {seen!r}"
    assert sanitize(keeps) == keeps


def test_settings_printed_in_logs_stay():
    """What the old catch-all duration rule ate: beat's banner shows its settings."""
    assert sanitize("    . maxinterval -> 5.00 seconds (5s)") == "    . maxinterval -> 5.00 seconds (5s)"
    assert sanitize("    . maxinterval -> 5.00 minutes (300s)") == "    . maxinterval -> 5.00 minutes (300s)"
    assert sanitize("[2026-11-24 04:30:01,123: INFO/MainProcess] beat: Starting...") == \
        "[TIME: INFO/MainProcess] beat: Starting..."
    assert sanitize("(with the logs' 0.1 s margin): True") == "(with the logs' 0.1 s margin): True"
    assert sanitize("amqp://guest:**@localhost:5672//") == "amqp://guest:**@localhost:5672//"


def test_more_chinese_labels():
    assert sanitize("两个任务排队执行，用时 1.02 秒") == "两个任务排队执行，用时 DURATION"
    assert sanitize("从发出到拿到结果用了 1.01 秒") == "从发出到拿到结果用了 DURATION"
    assert sanitize("调用方被阻塞了 1.00 s") == "调用方被阻塞了 1.00 s"  # unlabelled: real content stays
    assert sanitize("换回 3 秒的函数：阻塞版最慢的用户要等 9 秒") == "换回 3 秒的函数：阻塞版最慢的用户要等 9 秒"


def test_more_celery_shapes():
    assert sanitize(f"Task demo_tasks.tasks.add[{TASK}] succeeded in 1.2e-05s: 8") == \
        "Task demo_tasks.tasks.add[TASK-ID] succeeded in DURATION: 8"
    assert sanitize("<Celery tasks at 0x7f3a2b1c4d50>") == "<Celery tasks at 0xADDR>"
    assert sanitize("worker-w1 (pid 1234) exited") == "worker-w1 (pid PID) exited"
    assert sanitize("HTTP 503 after 0.32 s") == "HTTP 503 after DURATION"
    assert sanitize("celery@build-host.example ready.") == "celery@HOST ready."


def test_report_ids_are_named_for_what_they_are():
    assert sanitize(f"report {REPORT} visible to the worker: True") == "report REPORT-ID visible to the worker: True"
    assert sanitize(f"Task reports.tasks.generate_report[{TASK}]") == "Task reports.tasks.generate_report[TASK-ID]"
    assert sanitize("report failed, error id 0badc0de") == "report failed, error id ERROR-ID"


def test_sanitize_keeps_results_and_names():
    assert sanitize("task result: 8") == "task result: 8"
    assert sanitize("demo_tasks.tasks.add") == "demo_tasks.tasks.add"
