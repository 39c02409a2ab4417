"""Fenced code blocks in Markdown, and the HTML comment on the line right before
each (the markers tests/commands.py and tests/own_project.py read)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_COMMENT = re.compile(r"^\s*<!--(?P<body>.*?)-->\s*$")


@dataclass(frozen=True)
class Fence:
    line: int               # the opening fence's line, 1-based
    language: str           # the first word of the info string, lower case ("" if none)
    body: str               # the block's lines, without the list item's or quote's indent
    comment: str | None     # the body of the HTML comment on the line before, if any


def fences(markdown: str) -> Iterator[Fence]:
    """Every fenced block of ``markdown``, in order (an unclosed one runs to the end)."""
    lines, i = markdown.splitlines(), 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        closing = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), len(lines))
        body = "\n".join(line[indent:] if not line[:indent].strip() else line.lstrip() for line in lines[i + 1:end])
        before = _COMMENT.match(lines[i - 1]) if i > 0 else None
        yield Fence(i + 1, (opening["info"].split() or [""])[0].lower(), body, before["body"] if before else None)
        i = end + 1
