"""The course as a learner runs it: the real `make lab` program, kernels created
by its JupyterLab, every chapter's cells executed in order with the earlier
chapters' kernels (and what they started) still alive -- four runs side by
side, 01-02-03-06, 04-05, 07 and 08 (the longest chapters); then the learner goes
back and restarts chapters while a worker started "in a terminal" as the README
says is running (05, then a second Run All in the same kernel; beside it 04,
then 03); then Ctrl-C. Outputs are compared with the committed ones through the same
sanitizer nbval uses."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

import launcher
from launcher.procs import http_answers, session_processes
from tests.helpers import NOTEBOOKS, alive, descendants, start_lab
from tests.learner import NotebookKernel

#: Runs side by side, each in order; about equally long (07 and 08 are the longest chapters).
SIDE_BY_SIDE = (("01", "02", "03", "06"), ("04", "05"), ("07",), ("08",))
#: Going back, two runs side by side: chapters that start workers, Flower, beat or a Django server.
GOING_BACK = (("05",), ("04", "03"))


@pytest.mark.timeout(900)
def test_every_chapter_in_make_lab_in_order_then_going_back_beside_a_terminal_worker(tmp_path):
    lab = start_lab(tmp_path)
    kernels: dict[str, NotebookKernel] = {}
    problems = []
    terminal = None
    try:
        # 1. Every chapter in order, in two runs side by side; earlier kernels stay
        #    alive, with what they started.
        def in_order(paths) -> list:
            found = []
            for path in paths:
                kernels[path.name[:2]] = kernel = NotebookKernel(lab, path).start()
                found += kernel.run_all()
            return found

        runs = [[p for p in NOTEBOOKS if p.name[:2] in chapters] for chapters in SIDE_BY_SIDE]
        assert sorted(p for run in runs for p in run) == sorted(NOTEBOOKS), "every chapter in one of the runs"
        with ThreadPoolExecutor(max_workers=len(runs)) as pool:
            for found in pool.map(in_order, runs):
                problems += found
        assert not problems, "\n".join(map(str, problems))
        # The pages the chapters printed for the learner to open still answer after Run All.
        printed = sorted(url for kernel in kernels.values() for url in kernel.printed_urls)
        assert printed, "no chapter printed an address to open?"
        dead = [url for url in printed if not http_answers(url, timeout=10)]
        assert not dead, f"printed for the learner to open, but not answering: {dead}"

        # 2. The README's terminal worker (`celery -A demo_tasks.tasks worker`, on the
        #    article's database 0 of the lab's broker), then Restart Kernel and Run All
        #    of chapters the learner goes back to.
        terminal = launcher.start_worker("demo_tasks.tasks", name="terminal", broker=lab.broker_url)

        def going_back(numbers) -> list:
            found = []
            for number in numbers:
                kernels[number].restart()
                found += kernels[number].run_all()
                if number == "05":
                    # 3. Run All a second time in the same kernel: the preparation replaces what
                    #    ran (chapter 05: its Django in the kernel moves to the new database too).
                    found += kernels[number].run_all()
            return found

        with ThreadPoolExecutor(max_workers=len(GOING_BACK)) as pool:
            for found in pool.map(going_back, GOING_BACK):
                problems += found
        assert not problems, "\n".join(map(str, problems))
        # No chapter's task reached the terminal's worker, and none of its own was lost.
        assert " received" not in terminal.log() and "unregistered" not in terminal.log(), terminal.tail(20)
        sessions = json.load(urllib.request.urlopen(f"{lab.base}/api/sessions?token={lab.token}", timeout=30))
        assert len(sessions) == len(NOTEBOOKS)
    finally:
        if terminal is not None:
            terminal.cleanup()
        for kernel in kernels.values():
            kernel.close()
        children = descendants(lab.process.pid)
        assert lab.stop() == 0  # Ctrl-C
        assert launcher.wait_for(lambda: not any(alive(p) for p in children), 30), \
            f"left running after Ctrl-C: {[p for p in children if alive(p)]}"
        leftovers = sorted(p.name for p in (tmp_path / "tmp").iterdir())
        assert leftovers == [], f"left in the lab's temporary folder: {leftovers}"
        survivors = session_processes(lab.session)
        assert survivors == [], f"processes of the lab session alive after Ctrl-C: {survivors}"
