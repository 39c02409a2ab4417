"""Self-checks a learner runs in a chapter: checkpoints and exercise checks.

A **checkpoint** says whether what the chapter built so far works, with a
one-line fix when it does not::

    import selfcheck
    selfcheck.checkpoint("worker 已经就绪", worker.running, fix="重新运行“准备”单元格")
    # ✅ worker 已经就绪        or        ❌ worker 已经就绪
    #                                        怎么办：重新运行“准备”单元格

An **exercise check** looks at the learner's attempt and says what is still
wrong. Each chapter keeps its checks in ``selfcheck/chNN.py``::

    from selfcheck import ch01
    ch01.exercises.check(1, globals())

The notebook's cells, tagged so that the tests can find them:

- ``exercise-N-answer``: the learner's cell. It defines every name the check
  reads, with a stub (``answer = ...``, or a function whose body is ``...``), so
  that running it again (Run All twice) resets the attempt;
- ``exercise-N-check``: the check, right after the answer cell (it prints ❌
  while the stub is there) and again right after the reference answer (✅);
- ``exercise-N-reference``: the reference answer, its source collapsed in
  JupyterLab (``metadata.jupyter.source_hidden``).

Checks never raise: an exception in the learner's code is reported as one of
the problems, so Run All goes on. They print ✅ only when every condition holds.
They return a ``Verdict``: true when it passed, and shown as nothing by Jupyter
(the printed line is the answer), so a cell need not end in ``;``.
"""

from __future__ import annotations

import dis
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["FAIL", "OK", "Exercises", "Verdict", "checkpoint", "given", "workspace"]

OK = "✅"
FAIL = "❌"

#: What a check returns: the problems it found, each a one-line hint in Chinese.
Problems = list[str]


class Verdict(int):
    """1 (passed) or 0 (not yet): truthy like a bool, and invisible as a cell's
    last value in Jupyter, so only the printed ✅/❌ line shows."""

    def __repr__(self) -> str:
        return "passed" if self else "not passed"

    def _ipython_display_(self) -> None:
        pass


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def checkpoint(label: str, condition, *, fix: str) -> Verdict:
    """Print ✅ ``label`` if ``condition`` (a value, or a callable returning one)
    is true, else ❌ and ``fix``. An exception counts as false and is shown."""
    error = None
    try:
        ok = bool(condition() if callable(condition) else condition)
    except Exception as exc:  # the learner's state may be anything: report, never raise
        ok, error = False, _describe(exc)
    if ok:
        print(f"{OK} {label}")
    else:
        print(f"{FAIL} {label}\n   怎么办：{fix}")
        if error:
            print(f"   （出错：{error}）")
    return Verdict(ok)


def given(namespace: dict, name: str, what: str) -> Problems:
    """[] if the learner replaced the stub of ``name``, else one hint.
    A stub is ``...`` (Ellipsis), None, a missing name, or a function whose body is ``...``."""
    value = namespace.get(name, ...)
    if value is ... or value is None:
        return [f"还没有答案：把 `{name}` 设为{what}"]
    code = getattr(value, "__code__", None)
    if code is not None and _is_stub(code):
        return [f"还没有答案：写完函数 `{name}`（{what}）"]
    return []


#: The only instructions of a function whose body is ``...``, ``pass`` or a docstring.
_STUB_OPS = {"RESUME", "NOP", "LOAD_CONST", "POP_TOP", "RETURN_VALUE", "RETURN_CONST"}


def _is_stub(code) -> bool:
    """A function whose whole body is ``...`` (or ``pass``, or only a docstring):
    it returns None without looking at anything."""
    instructions = list(dis.get_instructions(code))
    return all(i.opname in _STUB_OPS for i in instructions) and all(
        i.argval is None or i.argval is Ellipsis or isinstance(i.argval, str)
        for i in instructions if i.opname in ("LOAD_CONST", "RETURN_CONST"))


@dataclass
class Exercises:
    """A chapter's exercise checks. Register one with ``@exercises.register(N)``:
    a function ``(namespace) -> problems`` (an empty list when it is right)."""

    chapter: int
    _checks: dict[int, Callable[[dict], Problems]] = field(default_factory=dict)

    def register(self, number: int):
        def add(check: Callable[[dict], Problems]):
            if number in self._checks:
                raise ValueError(f"chapter {self.chapter}: exercise {number} is registered twice")
            self._checks[number] = check
            return check
        return add

    @property
    def numbers(self) -> list[int]:
        return sorted(self._checks)

    def problems(self, number: int, namespace: dict) -> Problems:
        """What is still wrong with the attempt (an exception in it is a problem too)."""
        try:
            return list(self._checks[number](namespace))
        except Exception as exc:
            return [f"运行你的答案时出错：{_describe(exc)}"]

    def check(self, number: int, namespace: dict) -> Verdict:
        """Print ✅ or ❌ and what is still wrong; a true Verdict if right."""
        found = self.problems(number, namespace)
        if not found:
            print(f"{OK} 练习 {number}：通过")
            return Verdict(True)
        print(f"{FAIL} 练习 {number}：还没有完成")
        for problem in found:
            print(f"   - {problem}")
        return Verdict(False)


def workspace(folder, label: str) -> None:
    """Give the notebook the cell magic ``%%append_to FILE``: it adds the rest of
    the cell to the end of ``folder/FILE``, as ``%%writefile -a`` does, and says
    so as ``label/FILE`` (never the machine's temporary path). For exercises that
    change files of a project, the way an editor would."""
    from pathlib import Path

    from IPython import get_ipython

    folder = Path(folder)

    def append_to(line: str, cell: str) -> None:
        name = line.strip()
        with (folder / name).open("a", encoding="utf-8") as f:
            f.write("\n" + cell)
        print(f"加到了 {label}/{name} 的末尾")

    get_ipython().register_magic_function(append_to, magic_kind="cell", magic_name="append_to")
