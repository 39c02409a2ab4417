"""Chapter 05 as a learner runs it in `make lab` (tests/learner_mode.py), then going
back: Restart Kernel and Run All, and Run All a second time in the same kernel (the
preparation replaces what ran; the kernel's own Django moves to the new database)."""

import pytest

from tests.learner_mode import run_all, run_chapter


@pytest.mark.timeout(900)
def test_chapter_05_in_make_lab_then_again_after_a_restart_and_twice(learner_lab):
    kernel = run_chapter(learner_lab, "05")
    kernel.restart()
    run_all(kernel)
    run_all(kernel)
