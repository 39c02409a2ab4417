"""The learner's own outputs: the committed outputs hold the real values of the
run that made them (host names, task ids, ports, times), blanked only where
nbval compares them (launcher/nbval_sanitize.cfg); and no path of the machine
that ran them (a home, work or temporary folder): paths read from the
repository's root (``.scratch/chapter05-k3j2x9ab/db.sqlite3``)."""

from __future__ import annotations

import os
import re
import sys
import tempfile

import nbformat
import pytest

from launcher.paths import REPO_ROOT
from tests.test_sanitize_matches import NOTEBOOKS, outputs, placeholder_pattern, rules

#: Folders of a machine, not of the repository: they must never show in an output.
MACHINE_PREFIXES = ("/tmp/", "/home/", "/Users/", "/root/", "/work/", "/private/", "/var/folders/", "/opt/",
                    "C:\\", "/mnt/")


def machine_paths() -> re.Pattern:
    prefixes = {*MACHINE_PREFIXES, str(REPO_ROOT), sys.prefix, os.path.realpath(tempfile.gettempdir())}
    return re.compile("|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True)))


def test_the_placeholders_are_the_sanitizers_words():
    found = placeholder_pattern(rules())
    for word in ("HOST", "TASK-ID", "DURATION", "PORT", "REPORT-ID", "TMPDIR", "VENV", "SCRATCH", "MEASURED"):
        assert found.search(f"x {word} y"), word
    assert not found.search("TIME_ZONE, HOSTS, PORTS")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_outputs_hold_real_values_and_no_machine_path(path):
    placeholders, paths = placeholder_pattern(rules()), machine_paths()
    problems = []
    for where, output, text in outputs(nbformat.read(path, as_version=4)):
        for pattern, what in ((placeholders, "a placeholder of the sanitizer"), (paths, "a path of this machine")):
            for m in pattern.finditer(text):
                line = text[text.rfind("\n", 0, m.start()) + 1:].split("\n", 1)[0]
                problems.append(f"{where}, {output}: {what} {m[0]!r} in: {line[:160]}")
    assert not problems, "\n".join(problems)
