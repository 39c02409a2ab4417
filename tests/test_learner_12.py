"""Chapter 12 as a learner runs it in `make lab` (tests/learner_mode.py): Run All beside
the chapters this process ran before and a terminal worker, then every exercise check
as a learner retries it."""

import pytest

from tests.learner_mode import run_chapter


@pytest.mark.timeout(900)
def test_chapter_12_in_make_lab(learner_lab):
    run_chapter(learner_lab, "12")
