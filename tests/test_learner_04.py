"""Chapter 04 as a learner runs it in `make lab` (tests/learner_mode.py), with a
worker the learner joined to the chapter from a terminal exactly as the chapter's
“选读：让终端里的 worker 加入本章” prints it (its own queue, ``-Q ch04-learner``):
Run All gets the committed outputs all the same (the cells pick out the chapter's
worker by name, the `celery` commands ask it alone with ``-d``); the joined worker
runs what that section's `celery call` sends it, and nothing of the chapter's. Then
going back: Restart Kernel and Run All again, the joined worker still there (what
the first run started is stopped by the restart; Flower and the worker start
afresh, and Flower lists the joined worker beside them again)."""

import re

import pytest

import launcher
from launcher.chapter import chapter_url
from launcher.paths import REPO_ROOT
from tests.commands import collect, words
from tests.learner_mode import notebook, run_all, run_chapter

QUEUE = "ch04-learner"


def joined_block() -> tuple[list[str], list[str]]:
    """The words of the chapter's two terminal lines for a joined worker: the worker, the `celery call`."""
    path = notebook("04")
    block = next(b for b in collect() if b.file == path and f"-Q {QUEUE}" in b.text)
    worker, call = (words(c) for c in block.commands() if "celery -A" in c)
    return worker, call


def test_the_readme_and_the_chapter_say_how_to_join_it():
    worker, call = joined_block()
    assert worker[:6] == ["REDIS_URL=redis://127.0.0.1:6379/4", "celery", "-A", "demo_tasks.tasks", "worker",
                          "--loglevel=info"], worker
    assert {"-E", "-Q", QUEUE, "-n", "terminal@%h"} <= set(worker), worker
    assert call[:4] == ["REDIS_URL=redis://127.0.0.1:6379/4", "celery", "-A", "demo_tasks.tasks"], call
    assert f"--queue={QUEUE}" in call, call
    assert f"-Q {QUEUE}" in (REPO_ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.timeout(900)
def test_chapter_04_in_make_lab_with_a_joined_terminal_worker_then_again_after_a_restart(learner_lab):
    worker, call = joined_block()
    url = chapter_url(learner_lab.broker_url, 4)      # the printed 127.0.0.1:6379/4, on the lab's broker
    # The printed worker line, through the launcher (which adds --concurrency=2).
    joined = launcher.start_worker(worker[3], name="terminal", broker=url, queues=[QUEUE], extra_args=["-E"])
    try:
        kernel = run_chapter(learner_lab, "04")
        # The section's `celery call` line, as printed (after `celery -A demo_tasks.tasks`).
        sent = launcher.celery_command(call[3], *call[4:], broker=url)
        task_id = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", sent)
        assert task_id, sent
        joined.wait_for_log(f"[{task_id.group(0)}] succeeded", timeout=30, since=0)
        kernel.restart()
        run_all(kernel)
        assert joined.running(), "a restarted chapter never stops a worker it did not start"
        log = joined.log()
    finally:
        joined.stop()
    # The joined worker got what the section sent it, and nothing of the chapter's.
    assert re.findall(r"Task (\S+)\[([0-9a-f-]+)\] received", log) == [("demo_tasks.tasks.add", task_id.group(0))], \
        log[-3000:]
    assert "unregistered" not in log, log[-3000:]
