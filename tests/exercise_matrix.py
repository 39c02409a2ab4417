"""Every exercise check, run the way a learner retries it: after Run All (the
reference answers ran last), the reference again, the empty stub, plausible
wrong answers, and the reference once more. The same answer must get the same
verdict whatever ran before it, and a wrong answer its specific hint.

    python -m tests.exercise_matrix notebooks/03_first_task.ipynb [--exercise 2]

runs the notebook in a kernel of its own (what `make lab` gives one), then the
matrix, and prints a table (the tool a chapter's author uses while writing
wrong answers). The learner-mode tests run the same matrix in the lab's kernels
after Run All (tests/learner_mode.py).

A chapter's wrong answers live in ``tests/wrong_answers/chNN.py``::

    WRONG = {
        1: [Wrong(["answer = 8"], hint="…", why="hard-coded result")],
    }

``cells`` replace the exercise's answer cells (tagged ``exercise-N-answer``),
one source per cell, in order; ``hint`` is a piece of what the check must print.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from tests.learner import text_of

OK = "✅"
FAIL = "❌"


@dataclass(frozen=True)
class Wrong:
    """A plausible wrong answer and a piece of the hint it must get."""

    cells: list[str]
    hint: str
    why: str = ""


@dataclass
class Row:
    exercise: int
    situation: str
    expected: str          # "pass", or "fail" (with ``hint``)
    printed: str
    seconds: float
    hint: str = ""

    @property
    def ok(self) -> bool:
        verdict = self.verdict
        if self.expected == "pass":
            return verdict == "pass"
        return verdict == "fail" and self.hint in self.printed

    @property
    def verdict(self) -> str:
        lines = self.printed.strip().splitlines()
        head = f"{OK} 练习 {self.exercise}：通过"
        if lines and lines[-1].strip() == head and FAIL not in self.printed:
            return "pass"
        if f"{FAIL} 练习 {self.exercise}" in self.printed and OK not in self.printed:
            return "fail"
        return "unclear"

    def __str__(self) -> str:
        mark = "ok " if self.ok else "BAD"
        want = self.expected + (f" with {self.hint!r}" if self.hint else "")
        got = " | ".join(line.strip() for line in self.printed.strip().splitlines())
        return f"{mark} exercise {self.exercise} {self.situation:<40} want {want}; got {got[:400]}"


def tags(cell) -> list[str]:
    return list(cell.metadata.get("tags", []))


def exercise_numbers(nb) -> list[int]:
    return sorted({int(m) for c in nb.cells for t in tags(c) for m in re.findall(r"^exercise-(\d+)-", t)})


def cells_tagged(nb, tag: str) -> list[str]:
    return [c.source for c in nb.cells if tag in tags(c)]


def wrong_answers(chapter: str) -> dict[int, list[Wrong]]:
    try:
        module = importlib.import_module(f"tests.wrong_answers.ch{chapter}")
    except ModuleNotFoundError:
        return {}
    return module.WRONG


def run_matrix(execute: Callable[[str], list[dict]], path: Path,
               only: int | None = None) -> list[Row]:
    """Run the matrix in a kernel where the whole notebook ran (``execute`` runs one cell)."""
    nb = nbformat.read(path, as_version=4)
    wrong = wrong_answers(path.name[:2])
    rows = []
    for n in exercise_numbers(nb):
        if only is not None and n != only:
            continue
        answers = cells_tagged(nb, f"exercise-{n}-answer")
        references = cells_tagged(nb, f"exercise-{n}-reference")
        check = cells_tagged(nb, f"exercise-{n}-check")[0]

        def attempt(situation: str, sources: list[str], expected: str, hint: str = "",
                    n: int = n, check: str = check) -> None:
            started = time.perf_counter()
            for source in sources:  # the attempt's cells, as the learner runs them (an error is theirs)
                execute(source)
            printed = text_of(execute(check))
            rows.append(Row(n, situation, expected, printed, time.perf_counter() - started, hint))

        attempt("reference (again after Run All)", references, "pass")
        attempt("empty", answers, "fail", "还没有答案")
        for case in wrong.get(n, []):
            if len(case.cells) != len(answers):
                raise ValueError(f"chapter {path.name[:2]} exercise {n}: a wrong answer has {len(case.cells)} "
                                 f"cells, the exercise {len(answers)}")
            attempt(f"wrong: {case.why or case.hint}"[:60], case.cells, "fail", case.hint)
        attempt("reference (after wrong ones)", references, "pass")
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--exercise", type=int)
    args = parser.parse_args(argv)
    from tests.kernels import LocalKernel
    from tests.notebook_env import notebook_environment

    nb = nbformat.read(args.notebook, as_version=4)
    with notebook_environment(), LocalKernel() as kernel:
        started = time.perf_counter()
        for number, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
            outputs = kernel.execute(cell.source)
            if any(o["output_type"] == "error" for o in outputs) and "raises-exception" not in tags(cell):
                print(f"cell {number} failed: {text_of(outputs)[-500:]}")
                return 1
        print(f"Run All: {time.perf_counter() - started:.1f} s")
        rows = run_matrix(kernel.execute, args.notebook, args.exercise)
    for row in rows:
        print(f"{row.seconds:5.1f} s  {row}")
    bad = [row for row in rows if not row.ok]
    print(f"{len(rows) - len(bad)} of {len(rows)} as expected")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
