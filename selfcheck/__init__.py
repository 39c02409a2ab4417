"""Self-checks a learner runs in a chapter: checkpoints and exercise checks.

A **checkpoint** says whether what the chapter built so far works, with a
one-line fix when it does not::

    import selfcheck
    selfcheck.checkpoint("worker 已经就绪", worker.running, fix="重新运行“准备”单元格")
    # ✅ 通过：worker 已经就绪        or        ❌ 未通过：worker 已经就绪
    #                                              怎么办：重新运行“准备”单元格

Every verdict also says 通过 / 未通过 in words: where no emoji font
is installed, ✅ and ❌ render as the same empty box.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FAIL", "OK", "Exercises", "Verdict", "Workspace", "checkpoint", "exercise_files", "given", "purge_queue",
           "start_exercise_worker", "workspace"]

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
    """Print ✅ 通过：``label`` if ``condition`` (a value, or a callable returning one)
    is true, else ❌ 未通过：``label`` and ``fix``. An exception counts as false and is shown."""
    error = None
    try:
        ok = bool(condition() if callable(condition) else condition)
    except Exception as exc:  # the learner's state may be anything: report, never raise
        ok, error = False, _describe(exc)
    if ok:
        print(f"{OK} 通过：{label}")
    else:
        print(f"{FAIL} 未通过：{label}\n   怎么办：{fix}")
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
        print(f"{FAIL} 练习 {number}：未通过")
        for problem in found:
            print(f"   - {problem}")
        return Verdict(False)


# --- Files a learner edits from the notebook ---------------------------------------

#: How a block is marked in a file, by suffix: the comment that opens and closes a line.
_COMMENTS = {".html": ("{#", "#}")}  # Django templates
_DEFAULT_COMMENT = ("#", "")


class Workspace:
    """Files of a project (a folder) that exercises change, a named **block** per
    answer. ``%%writeblock FILE BLOCK`` (the cell magic ``workspace()`` gives the
    notebook) writes the rest of its cell into ``FILE`` between two marker lines::

        # >>> exercise-1 (written by the notebook: running its %%writeblock cell again replaces this block)
        ...the cell...
        # <<< exercise-1

    The first time at the end of the file; every later time *in place of* the
    block written before. So the file always holds the latest attempt, once:
    running an answer cell again, the reference answer, or a wrong attempt after
    it replaces what was there -- never a second definition after the first
    (Celery keeps the first task registered under a name, and warns only on a
    stderr the learner does not see). The checks read the files afresh (a new
    worker, a new process) and ask ``stub()`` whether a block is still empty.
    """

    def __init__(self, folder, label: str):
        self.folder = Path(folder)
        #: How the folder is named to the learner (never the machine's temporary path).
        self.label = label

    # --- markers -------------------------------------------------------------------

    @staticmethod
    def _comment(file: str) -> tuple[str, str]:
        from pathlib import PurePosixPath

        return _COMMENTS.get(PurePosixPath(file).suffix, _DEFAULT_COMMENT)

    def _line(self, file: str, text: str) -> str:
        opening, closing = self._comment(file)
        return f"{opening} {text}{' ' + closing if closing else ''}"

    def begin_marker(self, file: str, block: str) -> str:
        return self._line(file, f">>> {block} (written by the notebook: running its %%writeblock cell "
                                f"again replaces this block)")

    def end_marker(self, file: str, block: str) -> str:
        return self._line(file, f"<<< {block}")

    def _is_begin(self, file: str, line: str, block: str) -> bool:
        opening, _ = self._comment(file)
        head = f"{opening} >>> {block}"
        stripped = line.strip()
        return stripped == head or stripped.startswith(head + " ")

    def _find(self, file: str, lines: list[str], block: str) -> tuple[int, int] | None:
        """(begin, end) line indexes of the block's markers, None if it is not there.
        ValueError if it begins but never ends (a marker deleted in an editor)."""
        begins = [i for i, line in enumerate(lines) if self._is_begin(file, line, block)]
        if not begins:
            return None
        end_line = self.end_marker(file, block)
        for j in range(begins[0] + 1, len(lines)):
            if lines[j].strip() == end_line:
                return begins[0], j
        raise ValueError(f"{self.label}/{file} 里有 {block} 这一段的开始标记，却没有结束标记 "
                         f"“{end_line}”：把它补上（或删掉整段），再运行这个单元格")

    # --- reading and writing ---------------------------------------------------------

    def path(self, file: str):
        return self.folder / file

    def block(self, file: str, block: str) -> str | None:
        """The text between the block's markers (None if the file or the block is missing)."""
        try:
            lines = self.path(file).read_text(encoding="utf-8").splitlines()
            found = self._find(file, lines, block)
        except (OSError, ValueError):
            return None
        return None if found is None else "\n".join(lines[found[0] + 1:found[1]])

    def stub(self, file: str, block: str) -> bool:
        """Is the block missing, or nothing but blank and comment lines (the empty answer cell)?"""
        text = self.block(file, block)
        if text is None:
            return True
        opening, closing = self._comment(file)
        for line in text.splitlines():
            line = line.strip()
            if line and not (line.startswith(opening) and line.endswith(closing)):
                return False
        return True

    def write_block(self, file: str, block: str, text: str) -> str:
        """Write ``text`` as the block (replacing it, or at the end of the file);
        return what was done, in a line for the learner."""
        path = self.path(file)
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        body = text.strip("\n").splitlines()
        new = [self.begin_marker(file, block), *body, self.end_marker(file, block)]
        found = self._find(file, lines, block)
        if found is None:
            while lines and not lines[-1].strip():
                lines.pop()
            if lines:
                lines.append("")  # a blank line before the block
            begin, done = len(lines), "在末尾加上了"
            lines += new
        else:
            begin, done = found[0], "替换了"
            lines[found[0]:found[1] + 1] = new
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return f"{self.label}/{file}：{done} {block} 这一段（第 {begin + 1}–{begin + len(new)} 行）"


def exercise_files(namespace: dict, file: str) -> Workspace | None:
    """The exercises' folder (``exercises_dir`` in the notebook) as a Workspace, once the
    exercise section's first cell has written ``file`` there; else None."""
    folder = namespace.get("exercises_dir")
    if folder is None or not (Path(folder) / file).exists():
        return None
    return Workspace(folder, "exercises")


def purge_queue(app, queue: str) -> None:
    """Drop every message waiting in ``queue``: a retry an earlier attempt scheduled (a
    warm stop puts back what a worker held) would otherwise run in the next attempt's worker."""
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)


def start_exercise_worker(files: Workspace, broker, queue: str, file: str = "my_tasks.py", *,
                          concurrency: int = 2, env: dict | None = None, name: str = "exercises",
                          extra_args: Sequence[str] = ()):
    """A new ``celery -A my_tasks worker -n NAME@%h`` for the learner's file, on ``queue`` only: it imports
    the file afresh, as the learner's own worker would after a restart. Returns ``(worker, None)``,
    or ``(None, problem)`` when the file cannot be imported or defines a task twice (then no
    worker is left running). The caller stops the worker (``worker.cleanup()``)."""
    import launcher

    try:
        worker = launcher.start_worker(Path(file).stem, broker=broker, fast=True, name=name,
                                       concurrency=concurrency, cwd=str(files.folder), queues=[queue],
                                       env={"REDIS_URL": broker.url, **(env or {})}, extra_args=extra_args)
    except launcher.ProcessError as exc:
        last = [line for line in str(exc).splitlines() if line.strip()][-1:]
        return None, f"worker 导入不了 {file}：{last[0].strip() if last else exc}"
    if "DuplicateTaskNameWarning" in worker.log():
        worker.cleanup()
        return None, (f"{file} 里有两个同名的任务（DuplicateTaskNameWarning）：Celery 只用先定义的那个。"
                      "每个任务只定义一次，写在它那道练习的单元格里")
    return worker, None


def workspace(folder, label: str) -> Workspace:
    """Give the notebook the cell magic ``%%writeblock FILE BLOCK`` for the files
    in ``folder`` (shown as ``label/FILE``): see ``Workspace``. For exercises that
    change files of a project, the way an editor would. Returns the workspace."""
    from IPython import get_ipython
    from IPython.core.error import UsageError

    files = Workspace(folder, label)

    def writeblock(line: str, cell: str) -> None:
        words = line.split()
        if len(words) != 2:
            raise UsageError("用法：%%writeblock 文件 段名（例如 %%writeblock my_tasks.py exercise-1）")
        try:
            print(files.write_block(words[0], words[1], cell))
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    get_ipython().register_magic_function(writeblock, magic_kind="cell", magic_name="writeblock")
    return files
