"""Chapter 06 as a learner runs it in `make lab` (tests/learner_mode.py), with a
worker the learner joined to the chapter from a terminal exactly as the chapter's
“选读：让终端里的 worker 加入本章” prints it (its own queue, ``-Q ch06-learner``).
Run All gets the committed outputs all the same, and exercise 2's check, run again
on an unchanged answer, says again what it said. Then the chapter is opened a
second time (a console beside the notebook) while the first kernel is alive: the
second kernel takes the chapter over (launcher.owner) and gets the same outputs,
the joined worker untouched; the first kernel's next cell says that the chapter
moved, at once. The joined worker received exactly the ticks that the section's
one cell sent, one per Run All, and nothing of the chapter's (no beat tick, no
Django task)."""

import re
import time

import nbformat
import pytest

import launcher
from launcher.chapter import chapter_url
from launcher.paths import REPO_ROOT
from tests.commands import collect, words
from tests.exercise_matrix import cells_tagged
from tests.learner import text_of
from tests.learner_mode import notebook, run_all, run_chapter

QUEUE = "ch06-learner"


def joined_worker_line() -> list[str]:
    """The words of the chapter's terminal line for a joined worker."""
    path = notebook("06")
    block = next(b for b in collect() if b.file == path and f"-Q {QUEUE}" in b.text)
    return next(words(c) for c in block.commands() if "celery -A" in c)


def test_the_readme_and_the_chapter_say_how_to_join_it():
    worker = joined_worker_line()
    assert worker[:6] == ["REDIS_URL=redis://127.0.0.1:6379/6", "celery", "-A", "demo_tasks.periodic", "worker",
                          "--loglevel=info"], worker
    assert {"-Q", QUEUE, "-n", "terminal@%h"} <= set(worker), worker
    assert f"-Q {QUEUE}" in (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def sent_to_the_joined_worker(kernel) -> str:
    """The id of the tick the section's cell sent in this kernel's last Run All."""
    return text_of(kernel.execute("print(for_you.id)")).strip()


@pytest.mark.timeout(900)
def test_chapter_06_with_a_joined_terminal_worker_then_taken_over_by_a_second_kernel(learner_lab):
    worker = joined_worker_line()
    url = chapter_url(learner_lab.broker_url, 6)      # the printed 127.0.0.1:6379/6, on the lab's broker
    joined = launcher.start_worker(worker[3], name="terminal", broker=url, queues=[QUEUE])
    try:
        first = run_chapter(learner_lab, "06")
        sent = [sent_to_the_joined_worker(first)]

        # Exercise 2's check run again, the answer unchanged: the same verdict, whatever it was.
        check = cells_tagged(nbformat.read(notebook("06"), as_version=4), "exercise-2-check")[0]
        assert "✅ 练习 2：通过" in text_of(first.execute(check))
        forgot_save = ("periodic_task.enabled = True\n"
                       "rescheduled = periodic_task            # save() forgotten\n")
        first.execute(forgot_save)
        for _ in range(2):
            printed = text_of(first.execute(check))
            assert "❌ 练习 2" in printed and "还是停用的" in printed, printed

        second = learner_lab.kernel("06", console="06-console")
        run_all(second)
        sent.append(sent_to_the_joined_worker(second))
        started = time.monotonic()
        printed = text_of(first.execute("print('still here?')"))
        assert "ChapterMoved" in printed and "准备" in printed, printed
        assert time.monotonic() - started < 10, "fails at once, never with a timeout"
        assert joined.running(), "a takeover never stops a worker the kernel did not start"
        assert launcher.wait_for(lambda: joined.log().count(" succeeded in ") >= len(sent), 30), joined.tail(20)
        log = joined.log()
    finally:
        joined.stop()
    received = re.findall(r"Task (\S+)\[([0-9a-f-]+)\] received", log)
    assert received == [("demo_tasks.periodic.tick", task_id) for task_id in sent], log[-3000:]
    assert "unregistered" not in log, log[-3000:]
