"""Make outputs comparable: the rules nbval applies (nbval_sanitize.cfg), for the
comparisons the tests make themselves (the learner-mode run, the allowlist).

Never for what a learner sees: notebooks print real values (host names, task
ids, ports, times) and blanking happens only where outputs are compared."""

from __future__ import annotations

import configparser
import os
import re
import socket
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from .paths import REPO_ROOT

RULES_FILE = Path(__file__).with_name("nbval_sanitize.cfg")


def config_rules(path: Path = RULES_FILE) -> list[tuple[str, str, str]]:
    """The rules of the sanitize file, in order: (name, regex, replacement)."""
    parser = configparser.ConfigParser(interpolation=None)
    with open(path, encoding="utf-8") as f:
        parser.read_file(f)
    return [(name, parser[name]["regex"], parser[name]["replace"]) for name in parser.sections()]


@lru_cache(maxsize=1)
def _rules() -> list[tuple[re.Pattern, str]]:
    rules = []
    # Machine-specific strings first, so the rules of the file see placeholders.
    for literal, placeholder in ((str(REPO_ROOT), "."), (sys.prefix, "VENV")):
        rules.append((re.compile(re.escape(literal)), placeholder))
    host = re.escape(socket.gethostname())
    rules.append((re.compile(rf"@{host}\b"), "@HOST"))  # node names: w1@HOST
    if len(host) >= 4:  # alone, only a name long enough not to match ordinary words
        rules.append((re.compile(rf"\b{host}\b"), "HOST"))
    # A folder in the temporary directory: /tmp/NAME, and NAME in a session's own TMPDIR
    # (make lab and the tests give each session one, under /tmp).
    for tmp in dict.fromkeys((os.path.realpath(tempfile.gettempdir()), os.path.realpath("/tmp"))):
        rules.append((re.compile(re.escape(tmp) + r"/[\w.-]+"), "TMPDIR"))
    for _name, regex, replacement in config_rules():
        rules.append((re.compile(regex), replacement))
    return rules


def sanitize(text: str) -> str:
    """Replace task ids, host names, pids, ports, times of day and measured durations, and paths."""
    for pattern, replacement in _rules():
        text = pattern.sub(replacement, text)
    return text
