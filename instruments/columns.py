"""Plain-text tables in a terminal or a notebook, where a Chinese character takes two columns.

Used by the tables the chapters print (instruments.bad_inputs, instruments.parallelism).
"""

from __future__ import annotations

import unicodedata


def width(text: str) -> int:
    """Columns ``text`` takes: wide and full-width (Chinese) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, columns: int) -> str:
    """``text`` followed by spaces up to ``columns`` columns (never cut)."""
    return text + " " * max(0, columns - width(text))
