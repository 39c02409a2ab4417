"""One owner per chapter (launcher.owner): a chapter prepared in a second kernel
takes it over from the first, whose next cell says so at once; a worker the
learner started in a terminal on the chapter's database is never stopped."""

from __future__ import annotations

import time

import psutil
import pytest

import launcher
from launcher.chapter import chapter_url
from launcher.owner import read_owner
from tests.kernels import LocalKernel
from tests.notebook_env import notebook_environment

PREPARE = """\
import launcher
chapter = launcher.prepare_chapter(3)
worker = launcher.start_worker("demo_tasks.tasks", broker=chapter.broker, name="w1", fast=True)
print(worker.pid)
"""


def _pid(printed: str) -> int:
    return int(printed.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_kernels():
    with notebook_environment() as env, LocalKernel() as first, LocalKernel() as second:
        yield env, first, second


def test_a_second_kernel_takes_the_chapter_over_and_the_first_says_so(two_kernels):
    env, first, second = two_kernels
    url = chapter_url(env["REDIS_URL"], 3)
    first_worker = _pid(first.run(PREPARE))
    assert read_owner(url)["pid"] != first_worker  # the kernel owns it, not its worker
    # A worker started in a terminal on the chapter's database (no owner's token).
    terminal = launcher.start_worker("demo_tasks.tasks", broker=url, name="terminal", fast=True)
    try:
        second_worker = _pid(second.run(PREPARE))
        assert not psutil.pid_exists(first_worker) or psutil.Process(first_worker).status() == psutil.STATUS_ZOMBIE, \
            "the first kernel's worker was stopped"
        assert terminal.running(), "a worker the kernels did not start is never stopped"

        started = time.monotonic()
        printed = first.run("1 + 1")
        assert "ChapterMoved" in printed and "prepared again in another kernel" in printed, printed
        assert "准备" in printed, "says how to take it back"
        assert time.monotonic() - started < 5, "fails at once, never with a timeout"

        # Running 准备 again takes it back: now the second kernel is told.
        first_again = _pid(first.run(PREPARE))
        assert psutil.pid_exists(first_again)
        assert not psutil.pid_exists(second_worker) or \
            psutil.Process(second_worker).status() == psutil.STATUS_ZOMBIE
        assert "ChapterMoved" in second.run("print('hello')")
        assert "ChapterMoved" not in first.run("print('hello')")
        assert terminal.running()
    finally:
        terminal.cleanup()


def test_a_kernel_that_prepares_again_keeps_the_chapter(two_kernels):
    env, first, _ = two_kernels
    first.run(PREPARE)
    token = read_owner(chapter_url(env["REDIS_URL"], 3))["token"]
    first.run(PREPARE)
    assert read_owner(chapter_url(env["REDIS_URL"], 3))["token"] != token, "a new token per preparation"
    assert first.run("print('still mine')").strip() == "still mine"
