"""Make process logs and outputs stable: the same rules nbval applies."""

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


@lru_cache(maxsize=1)
def _rules() -> list[tuple[re.Pattern, str]]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(RULES_FILE, encoding="utf-8")
    rules = []
    # Machine-specific strings first, so the generic patterns see placeholders.
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
    for section in parser.sections():
        rules.append((re.compile(parser[section]["regex"]), parser[section]["replace"]))
    return rules


def sanitize(text: str) -> str:
    """Replace task ids, host names, pids, ports, timestamps, durations and paths."""
    for pattern, replacement in _rules():
        text = pattern.sub(replacement, text)
    return text
