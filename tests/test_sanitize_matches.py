"""Every match of the sanitize rules in the committed notebook outputs, checked against an allowlist.

A sanitize rule (launcher/nbval_sanitize.cfg) must replace only what changes
from run to run. This test applies the rules to every notebook's stored outputs
the way nbval 0.11 does (in order, each rule to the text the rules before it
produced; a cell's stream outputs merged first) and lists every match as the
rule's name and the match in its line: up to CONTEXT characters on each side,
themselves sanitized, and between ⟦ ⟧ what the rule puts there. Each of these
must be in tests/sanitize_allowlist.txt. A new run of the same cells gives the
same list (other task ids, ports and durations all read TASK-ID, PORT,
DURATION); a rule that starts eating real content gives a new entry, and the
test names the notebook, cell and text.

The placeholders that launcher.sanitize() printed into outputs when the
notebooks ran (a worker's log shown by ``worker.show()``) are listed too, under
[already-sanitized]: that is where a rule eating part of a log line shows up
(``maxinterval -> DURATION (5s)``).

After a notebook's outputs change in a new way, or a rule changes, regenerate
the allowlist and review its diff (every line must show a value that varies):

    .venv/bin/python -m tests.test_sanitize_matches --update
    .venv/bin/python -m tests.test_sanitize_matches --list    # every match, with notebook and cell
"""

from __future__ import annotations

import copy
import itertools
import re
import sys
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import coalesce_streams, find_comment_markers, find_metadata_tags, get_sanitize_patterns

from launcher.paths import REPO_ROOT
from launcher.sanitize import RULES_FILE, config_rules

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9]*.ipynb"))
ALLOWLIST = Path(__file__).with_name("sanitize_allowlist.txt")
UPDATE = ".venv/bin/python -m tests.test_sanitize_matches --update"
#: Characters of the line kept on each side of a match.
CONTEXT = 20
#: Data that nbval does not compare (its skip_compare, without --nbdime).
NOT_COMPARED = {"image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json"}
#: The pseudo-rule for placeholders already in the outputs (printed by launcher.sanitize()).
ALREADY = "already-sanitized"
OPEN, CLOSE = "⟦", "⟧"
INDENT = "    "


@dataclass(frozen=True)
class Match:
    rule: str
    entry: str       # left context + OPEN + replacement + CLOSE + right context, escaped
    notebook: str
    where: str       # nbval's name of the cell, its execution count and first line
    output: str      # stdout, text/plain, evalue, traceback ...
    matched: str     # the text the rule replaced


def rules() -> list[tuple[str, re.Pattern, str]]:
    return [(name, re.compile(regex), replacement) for name, regex, replacement in config_rules()]


def placeholder_pattern(all_rules) -> re.Pattern:
    """The placeholders the rules (and launcher.sanitize's own path and host rules) write."""
    words = {"VENV", "TMPDIR", "HOST"}
    for _name, _pattern, replacement in all_rules:
        literal = re.sub(r"\\(\d+|g<\w+>)", " ", replacement)
        words.update(re.findall(r"0xADDR|[A-Z][A-Z-]*[A-Z](?: [A-Z][A-Z-]*[A-Z])*", literal))
    alternatives = "|".join(sorted(map(re.escape, words), key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")


def escape(text: str) -> str:
    """One line of the allowlist: backslashes, control characters and a trailing space escaped."""
    text = re.sub(r"[\\\x00-\x1f\x7f]", lambda m: "\\\\" if m[0] == "\\" else f"\\x{ord(m[0]):02x}", text)
    return re.sub(r" +$", lambda m: "\\x20" * len(m[0]), text)


def outputs(nb) -> Iterator[tuple[str, str, str]]:
    """(cell, output, text) for every text nbval compares, stream outputs merged as nbval does;
    tracebacks too (nbval does not compare them, but a rule should not eat them either)."""
    number = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            options = dict(find_metadata_tags(cell.metadata))
            options.update(find_comment_markers(cell.source))
        first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
        where = f"Cell {number} ([{cell.execution_count}] {first[:60]})"
        number += 1
        if options.get("skip") or options.get("check") is False:
            continue  # nbval does not compare these outputs
        for out in coalesce_streams(copy.deepcopy(cell.outputs)):
            if out.output_type == "stream":
                yield where, out.name, out.text
            elif out.output_type == "error":
                yield where, "ename", out.ename
                yield where, "evalue", out.evalue
                for line in out.traceback:
                    yield where, "traceback", line
            else:
                for key, value in out.get("data", {}).items():
                    if key not in NOT_COMPARED and isinstance(value, str):
                        yield where, key, value


def _sub_tracking(pattern: re.Pattern, replacement: str, text: str, a: int, b: int) -> tuple[str, int, int]:
    """``pattern.sub(replacement, text)``, and where the span [a, b) of ``text`` ends up in the
    result (a replacement that overlaps the span becomes part of it)."""
    pieces, done, new_a, new_b, last = [], 0, None, None, 0
    for m in pattern.finditer(text):
        start, end = m.span()
        pieces.append(text[last:start])
        done += start - last
        if new_a is None and a < start:
            new_a = done - (start - a)
        if new_b is None and b <= start:
            new_b = done - (start - b)
        shown = m.expand(replacement)
        if new_a is None and a < end:           # the span starts inside this match
            new_a = done
        if new_b is None and start < b <= end:  # the span ends inside this match
            new_b = done + len(shown)
        pieces.append(shown)
        done += len(shown)
        last = end
    pieces.append(text[last:])
    if new_a is None:
        new_a = done + (a - last)
    if new_b is None:
        new_b = done + (b - last)
    return "".join(pieces), new_a, new_b


def _entry(all_rules, text: str, a: int, b: int) -> str:
    """Apply the rules to ``text``, following the span [a, b): the entry for it."""
    for _name, pattern, replacement in all_rules:
        text, a, b = _sub_tracking(pattern, replacement, text, a, b)
    line_start = text.rfind("\n", 0, a) + 1
    line_end = text.find("\n", b)
    line_end = len(text) if line_end < 0 else line_end
    left, right = text[max(line_start, a - CONTEXT):a], text[b:min(line_end, b + CONTEXT)]
    return escape(left + OPEN + text[a:b] + CLOSE + right)


def matches_in(text: str, all_rules, placeholders: re.Pattern) -> Iterator[tuple[str, str, str]]:
    """(rule, entry, matched text) for every match in ``text``, rules applied as nbval applies them:
    the entry shows the match where it ends up once every rule has run, in its sanitized line."""
    for m in placeholders.finditer(text):
        yield ALREADY, _entry(all_rules, text, *m.span()), m[0]
    for i, (name, pattern, replacement) in enumerate(all_rules):
        for m in pattern.finditer(text):
            yield name, _entry(all_rules[i:], text, *m.span()), m[0]
        text = pattern.sub(replacement, text)


def notebook_matches(path: Path, all_rules=None) -> list[Match]:
    all_rules = all_rules or rules()
    placeholders = placeholder_pattern(all_rules)
    nb = nbformat.read(path, as_version=4)
    name = path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)
    found = []
    for where, output, text in outputs(nb):
        for rule, entry, matched in matches_in(text, all_rules, placeholders):
            found.append(Match(rule, entry, name, where, output, matched))
    return found


def read_allowlist(path: Path = ALLOWLIST) -> dict[str, set[str]]:
    allowed: dict[str, set[str]] = defaultdict(set)
    rule = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith(INDENT):
            assert rule is not None, f"{path.name}:{number}: an entry before any [rule]"
            allowed[rule].add(line[len(INDENT):])
        elif line.startswith("[") and line.endswith("]"):
            rule = line[1:-1]
        else:
            assert not line.strip() or line.startswith("#"), f"{path.name}:{number}: not an entry: {line!r}"
    return allowed


HEADER = f"""\
# Every distinct match of the sanitize rules (launcher/nbval_sanitize.cfg) in the
# committed outputs of notebooks/*.ipynb, per rule, as nbval applies the rules.
# Each entry: up to {CONTEXT} characters of the line on each side (sanitized too), and
# between {OPEN} {CLOSE} what the rule put in place of the text it matched. Under
# [{ALREADY}]: placeholders launcher.sanitize() printed into outputs when the notebooks ran.
# Backslashes, control characters and a trailing space are escaped (\\\\, \\x1b, \\x20).
#
# Written by `{UPDATE}` (see tests/test_sanitize_matches.py).
# Review its diff: every entry must show a value that changes from run to run, never real content.
"""


def write_allowlist(found: list[Match], all_rules, path: Path = ALLOWLIST) -> None:
    by_rule: dict[str, set[str]] = defaultdict(set)
    for m in found:
        by_rule[m.rule].add(m.entry)
    lines = [HEADER]
    for rule in [ALREADY, *(name for name, _p, _r in all_rules)]:
        if by_rule.get(rule):
            lines.append(f"[{rule}]")
            lines += [INDENT + entry for entry in sorted(by_rule[rule])]
            lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


# --- the tests ----------------------------------------------------------------------------

def test_nbval_reads_the_rules_launcher_reads():
    """nbval finds each rule by its `regex:` line followed by its `replace:` line (and keeps
    one rule per regex); launcher.sanitize() reads the file with configparser. Same rules, same order."""
    text = RULES_FILE.read_text(encoding="utf-8")
    nbval_rules = list(OrderedDict(get_sanitize_patterns(text)).items())
    assert nbval_rules == [(regex, replacement) for _name, regex, replacement in config_rules()]


def test_every_rule_says_what_it_matches():
    """A one-line comment (with an example) right above each rule."""
    lines = RULES_FILE.read_text(encoding="utf-8").splitlines()
    bare = [line for before, line in itertools.pairwise(lines)
            if line.startswith("[") and not before.startswith("# ")]
    assert not bare, f"rules without a comment above them: {bare}"


def test_a_new_run_gives_the_same_entries():
    all_rules = rules()
    placeholders = placeholder_pattern(all_rules)

    def entries(text):
        return sorted((rule, entry) for rule, entry, _matched in matches_in(text, all_rules, placeholders))

    one = ("broker: redis://127.0.0.1:45873/4\n"
           "attachment; filename=\"report-b11c4604-3e51-43f0-ac9b-7be74a856d40-179ebae3.csv\"\n"
           "[TIME: INFO/ForkPoolWorker-N] Task add[TASK-ID] succeeded in DURATION: 8\n"
           "answering after 0.5 s\n")
    two = ("broker: redis://127.0.0.1:52445/4\n"
           "attachment; filename=\"report-5fe8513d-2c13-4591-8ec1-d0fd2b9c93ff-921c9afc.csv\"\n"
           "[TIME: INFO/ForkPoolWorker-N] Task add[TASK-ID] succeeded in DURATION: 8\n"
           "answering after 12.25 s\n")
    assert entries(one) == entries(two)
    assert ("report-ids", 'tachment; filename="⟦report-REPORT-ID-TASK.csv⟧"') in entries(one)
    assert ("already-sanitized", "SK-ID] succeeded in ⟦DURATION⟧: 8") in entries(one)


def test_what_a_rule_ate_shows_as_an_entry():
    """The bug this test exists for: a catch-all duration rule turned beat's setting into DURATION."""
    all_rules = [("durations", re.compile(r"\b\d+\.\d+\s?(s|ms|seconds)\b"), "DURATION")]
    found = list(matches_in("    . maxinterval -> 5.00 seconds (5s)", all_rules, placeholder_pattern(all_rules)))
    assert found == [("durations", "   . maxinterval -> ⟦DURATION⟧ (5s)", "5.00 seconds")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_match_is_allowlisted(path):
    allowed = read_allowlist()
    new = {}
    for m in notebook_matches(path):
        if m.entry not in allowed.get(m.rule, set()):
            new.setdefault((m.rule, m.entry), m)
    problems = [f"  {m.notebook}::{m.where}, {m.output}: {describe(m)}\n      {m.entry}" for m in new.values()]
    assert not problems, (
        f"Sanitize matches not in {ALLOWLIST.relative_to(REPO_ROOT)}:\n" + "\n".join(problems) + "\n"
        "A rule eating real content? Tighten that rule in launcher/nbval_sanitize.cfg.\n"
        f"A new place where a value varies from run to run? Regenerate the allowlist: `{UPDATE}`, "
        "and review its diff.")


def describe(m: Match) -> str:
    if m.rule == ALREADY:
        return f"the placeholder {m.matched!r}, printed by launcher.sanitize() when the notebook ran"
    return f"rule [{m.rule}] replaced {m.matched!r}"


# --- the maintenance command -------------------------------------------------------------

def main(argv: list[str]) -> int:
    all_rules = rules()
    found = [m for path in NOTEBOOKS for m in notebook_matches(path, all_rules)]
    if "--list" in argv:
        for m in found:
            print(f"{m.notebook}::{m.where}, {m.output}: {describe(m)}\n    {m.entry}")
        return 0
    if "--update" in argv:
        before = read_allowlist() if ALLOWLIST.exists() else {}
        write_allowlist(found, all_rules)
        after = read_allowlist()
        for rule in sorted(set(before) | set(after)):
            old, new = before.get(rule, set()), after.get(rule, set())
            added, removed = new - old, old - new
            if added or removed:
                print(f"[{rule}] +{len(added)} -{len(removed)}")
        unused = [name for name, _p, _r in all_rules if not after.get(name)]
        print(f"wrote {ALLOWLIST.relative_to(REPO_ROOT)}: {sum(map(len, after.values()))} entries"
              + (f"; rules that match nothing: {', '.join(unused)}" if unused else ""))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
