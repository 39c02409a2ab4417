"""Results as tables a learner can read: HTML in a notebook, Markdown rows in a terminal.

    from IPython.display import display
    from instruments.tables import Measured, Table

    display(Table(["做法", "用时"], [["串行", Measured("0.97 秒")]], caption="..."))
    print(Table(...))     # in a terminal: one Markdown row a line, nothing to align
    print(verdicts([("比串行快", True)]))    # what the blanked figures must show: 比串行快: True

Plain text with padded columns cannot be read once Chinese is in it: a Chinese
character is not always two monospace cells wide, so the columns drift, and a
wide table wraps into a jumble. The notebook shows ``_repr_html_()`` instead.

A figure measured in this run is a ``Measured`` cell, rendered exactly as
``<td class="measured">0.97&nbsp;秒</td>``: the only shape the course's sanitize rule
[measured-cells] (launcher/nbval_sanitize.cfg) blanks when outputs are compared.
What the figure means is said by a verdict printed beside the table, which is
compared. ``repr()`` -- the text/plain a notebook stores beside the HTML -- names
only the table's shape, so it never holds a measured figure.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Measured:
    """A cell holding a figure measured in this run, with its unit: ``Measured("0.53 秒")``."""

    text: str

    def __str__(self) -> str:
        return self.text


#: Text cells: left-aligned (JupyterLab right-aligns table cells), wrapping (a long dotted
#: name must not push the table wider than the notebook), never narrower than a
#: two-character Chinese header.
_TEXT = 'style="text-align:left; white-space:normal; min-width:3em"'


#: A dot inside a dotted name (not a decimal point).
_NAME_DOT = re.compile(r"\.(?=[A-Za-z_])")


def _cell(value: object, tag: str = "td") -> str:
    if isinstance(value, Measured):
        # Exactly the shape of the sanitize rule [measured-cells]; a figure and its unit stay on one line.
        return f'<td class="measured">{html.escape(value.text).replace(" ", "&nbsp;")}</td>'
    # <wbr> after each dot of a name: a long dotted name (kombu.exceptions.EncodeError) may break there, and
    # only there (an overflow-wrap style would break it mid-word, and JupyterLab's sanitizer drops it).
    return f"<{tag} {_TEXT}>{_NAME_DOT.sub('.<wbr>', html.escape(str(value)))}</{tag}>"


def _markdown(value: object) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


class Table:
    """A table of ``headers`` and ``rows`` (each a sequence of cells: text, or Measured).
    Displayed in a notebook as HTML; ``str()`` gives Markdown rows for a terminal."""

    def __init__(self, headers: Sequence[str], rows: Sequence[Sequence[object]], *, caption: str | None = None):
        self.headers = list(headers)
        self.rows = [list(row) for row in rows]
        self.caption = caption
        for row in self.rows:
            if len(row) != len(self.headers):
                raise ValueError(f"a row of {len(row)} cells in a table of {len(self.headers)} columns: {row!r}")

    def _repr_html_(self) -> str:
        lines = ['<table class="course-table">']
        if self.caption:
            lines.append(f'<caption {_TEXT}>{html.escape(self.caption)}</caption>')
        lines.append("<thead><tr>" + "".join(_cell(h, "th") for h in self.headers) + "</tr></thead>")
        lines.append("<tbody>")
        lines += ["<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in self.rows]
        lines.append("</tbody>")
        lines.append("</table>")
        return "\n".join(lines)

    def __str__(self) -> str:
        lines = [self.caption, ""] if self.caption else []
        lines.append("| " + " | ".join(map(_markdown, self.headers)) + " |")
        lines.append("|" + "---|" * len(self.headers))
        lines += ["| " + " | ".join(map(_markdown, row)) + " |" for row in self.rows]
        return "\n".join(lines)

    def __repr__(self) -> str:
        # The text/plain beside the HTML in a notebook: the shape only, never a measured figure.
        return f"<Table: {len(self.headers)} columns, {len(self.rows)} rows>"


def verdicts(checks: Iterable[tuple[str, bool]]) -> str:
    """Labelled verdicts, one a line ("比串行快: True"), to print beside a table: the
    figures are blanked when outputs are compared, the verdicts are not."""
    return "\n".join(f"{label}: {bool(ok)}" for label, ok in checks)
