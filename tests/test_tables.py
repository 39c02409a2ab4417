"""instruments.tables: the results tables a notebook displays as HTML.

Two runs measure different figures; nbval compares the text/html and text/plain a
notebook stored with the new run's, after the sanitize rules. So the HTML of two
runs must be identical once the rules have blanked the Measured cells, and the
text/plain must not hold a figure at all.
"""

from __future__ import annotations

import re

import pytest
from IPython.core.formatters import DisplayFormatter

from instruments.tables import Measured, Table, verdicts
from launcher.sanitize import config_rules


def as_compared(text: str) -> str:
    """``text`` as nbval compares it: every rule of the sanitize file, in order."""
    for _name, regex, replacement in config_rules():
        text = re.sub(regex, replacement, text)
    return text


def timings(first: float, second: float) -> Table:
    return Table(["做法", "用时", "加速比"],
                 [["串行：一个接一个", Measured(f"{first:.2f} 秒"), Measured("1.0 倍")],
                  ["group，1 个进程里 16 个线程", Measured(f"{second:.2f} 秒"), Measured(f"{first / second:.1f} 倍")]],
                 caption="两种做法（各 4 个调用）")


def test_two_runs_with_other_figures_compare_equal():
    one, other = timings(0.97, 0.26), timings(12.5, 3.04)
    assert one._repr_html_() != other._repr_html_()
    assert as_compared(one._repr_html_()) == as_compared(other._repr_html_())
    assert as_compared(one._repr_html_()).count('<td class="measured">MEASURED</td>') == 4
    # What is not measured is compared as it is.
    assert "串行：一个接一个" in as_compared(one._repr_html_())
    assert as_compared(timings(0.97, 0.26)._repr_html_()) != as_compared(
        Table(["做法", "用时", "加速比"], [["另一种做法", Measured("1 秒"), Measured("1 倍")]])._repr_html_())


def test_a_notebook_stores_html_and_a_text_plain_without_figures():
    for table in (timings(0.97, 0.26), timings(12.5, 3.04)):
        data, _metadata = DisplayFormatter().format(table)
        assert set(data) == {"text/plain", "text/html"}
        assert data["text/html"] == table._repr_html_()
        assert data["text/plain"] == "<Table: 3 columns, 2 rows>"


def test_cell_text_is_escaped_and_only_a_measured_cell_has_the_measured_shape():
    table = Table(["a <b>", "c"], [['<td class="measured">0.5 s</td> & "x"', Measured("<1 ms & more")]])
    html = table._repr_html_()
    assert "<b>" not in html and "a &lt;b&gt;" in html
    assert '&lt;td class=&quot;measured&quot;&gt;0.5 s&lt;/td&gt; &amp; &quot;x&quot;' in html
    # The figure keeps its unit on its line: non-breaking spaces.
    measured = '<td class="measured">&lt;1&nbsp;ms&nbsp;&amp;&nbsp;more</td>'
    assert re.findall(r'<td class="measured">[^<]*</td>', html) == [measured]
    assert as_compared(html).count("MEASURED") == 1


def test_text_is_left_aligned_and_may_wrap_but_a_figure_stays_with_its_unit():
    html = timings(0.97, 0.26)._repr_html_()
    assert html.count("text-align:left") == 3 + 2 + 1  # headers, the two text cells, the caption
    assert html.count("white-space:normal") == 6
    assert '<td class="measured">0.97&nbsp;秒</td>' in html


def test_a_dotted_name_may_break_only_after_its_dots():
    html = Table(["异常"], [["kombu.exceptions.EncodeError"]])._repr_html_()
    assert "kombu.<wbr>exceptions.<wbr>EncodeError</td>" in html
    assert "overflow-wrap" not in html  # it breaks words anywhere (and JupyterLab drops it)


def test_a_terminal_gets_one_markdown_row_a_line():
    text = str(Table(["情形", "消息"], [["1. 未注册的任务名", "a | b\n  c"], ["2.", Measured("0.010 秒")]],
                     caption="错误输入"))
    assert text.splitlines() == ["错误输入", "", "| 情形 | 消息 |", "|---|---|",
                                 "| 1. 未注册的任务名 | a \\| b c |", "| 2. | 0.010 秒 |"]


def test_every_row_has_a_cell_per_column():
    with pytest.raises(ValueError, match="a row of 1 cells in a table of 2 columns"):
        Table(["a", "b"], [["only one"]])


def test_verdicts_are_labelled_one_a_line():
    assert verdicts([("比串行快", True), ("至少等了 1 秒", 1 > 2)]) == "比串行快: True\n至少等了 1 秒: False"
    assert verdicts([]) == ""
