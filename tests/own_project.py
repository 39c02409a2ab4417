"""The code blocks a chapter tells the learner to put into their OWN project,
and how a test assembles them, exactly as printed, into a fresh project and runs
them against a real broker and a real worker (tests/test_own_project_NN.py).

What counts
-----------
An *own-project block* is a fenced block in a markdown cell of a notebook in
notebooks/ with a marker, an HTML comment on the line right before the opening
fence (as tests/commands.py's markers; invisible on GitHub and in JupyterLab):

    <!-- own-project: FILE MODE -->
        A Django project: FILE is a path from the folder that holds manage.py
        of a fresh ``django-admin startproject proj`` + ``python manage.py
        startapp myapp`` (``proj/settings.py``, ``myapp/tasks.py``, ...).

    <!-- own-project-plain: FILE MODE -->
        A plain folder, for a snippet that is not Django (``tasks.py``, ...).

MODE says what the block does to FILE:

    new       FILE does not exist yet: the block is the whole file.
    replace   FILE exists (startproject/startapp made it, or an earlier block):
              the block is the whole new file.
    append    added to the end of FILE (after a blank line).
    fragment  part of FILE that cannot run alone; its FIRST line is a comment
              ``# 片段：…`` saying what it is part of. Only its syntax is checked.
              Fragments should be rare: prefer a complete block.

A mode that does not match the project (``new`` for a file that exists,
``replace``/``append`` for one that does not) is an error naming the block, and
so is a marker this module cannot read. Python blocks (```python) must compile;
other languages (```html for a template) are written as they are.

Assembly
--------
The Django blocks build ONE project across the chapters, in notebook order, as
a learner who follows the course builds theirs: chapter 05's five steps, then
chapter 06 adds a schedule to the same ``proj/settings.py``, and so on. The
project of chapter NN is startproject + startapp + every non-fragment Django
block of the chapters up to NN (``Project.assemble()``), then ``migrate``.
Every process of it runs in the project's folder with the course's .venv and a
learner's terminal environment: none of the course's settings (launcher.shown),
only REDIS_URL naming the test's broker (the five steps read it) and the
variables a chapter tells the learner to set in their terminal (``running(settings=...)``:
chapter 09's EMAIL_HOST and EMAIL_PORT).

Keys and coverage
-----------------
A block's key is ``NN:FILE`` (``05:proj/settings.py``), ``NN:FILE#2`` for the
second block of the same chapter on the same FILE, and so on: stable when
cells move. A test names the blocks whose effect it checks with ``@checks(KEY,
...)``; a test of tests/test_own_project_00.py fails when a marked non-fragment
block is checked by no test (a new chapter's block cannot go untested), and when
a fragment does not say it is one. A failing test names the chapter, the cell
and the block of every key it checks.

``python -m tests.own_project`` lists the blocks and their keys.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from launcher.broker import Broker, start_embedded
from launcher.celery_procs import FAST_FLAGS
from launcher.paths import NOTEBOOKS_DIR
from launcher.procs import Proc, ProcessError, stop_together
from launcher.shown import without_settings
from tests.fences import fences

KINDS = {"own-project": "django", "own-project-plain": "plain"}
MODES = ("new", "replace", "append", "fragment")
FRAGMENT_PREFIX = "# 片段："
#: The fresh Django project's package and app (the chapters' prose says ``proj`` and ``myapp``).
PROJECT, APP = "proj", "myapp"
#: Seconds a worker or beat has to say it is ready; a ``manage.py`` command has to finish.
READY_TIMEOUT = 30.0
COMMAND_TIMEOUT = 90.0

#: Any comment that starts with "own-project" is meant as a marker (and is an error if it does not read).
_MARKER = re.compile(r"^\s*(?P<kind>own-project[a-z-]*)\s*(?::(?P<arg>.*?))?\s*$", re.DOTALL)
_RESULT = "OWN-PROJECT-RESULT "


class BlockError(ValueError):
    """A marked block that cannot be read or assembled: the message names it."""


@dataclass(frozen=True)
class Block:
    """One marked block: where it is, what it says, where it goes."""

    notebook: Path
    cell: int            # the markdown cell's index (nb["cells"][i])
    line: int            # the opening fence's line in the cell, from 1
    language: str        # the fence's language ("python", "html", ...)
    text: str            # the lines between the fences, their indentation removed
    kind: str            # "django" or "plain"
    target: str          # the file, from the project's folder
    mode: str            # new, replace, append or fragment
    key: str             # "05:proj/settings.py", "05:proj/settings.py#2", ...

    @property
    def chapter(self) -> str:
        return self.notebook.name[:2]

    def describe(self) -> str:
        """Where it is and where it goes, e.g. ``chapter 05 (05_django_integration.ipynb),
        cell 24, line 8: proj/celery.py (new; key 05:proj/celery.py)``."""
        return (f"chapter {self.chapter} ({self.notebook.name}), cell {self.cell}, line {self.line}: "
                f"{self.target} ({self.mode}; key {self.key})")


# --- finding the blocks ------------------------------------------------------------

def parse_marker(body: str) -> tuple[str, str, str] | None:
    """(kind, target, mode) of an own-project marker's body; None if the comment is
    no own-project marker at all. A malformed one raises BlockError."""
    if not body.strip().startswith("own-project"):
        return None
    match = _MARKER.match(body)
    if not match or match["kind"] not in KINDS:
        raise BlockError(f"<!--{body}--> is not a marker: the markers are "
                         "<!-- own-project: FILE MODE --> and <!-- own-project-plain: FILE MODE -->")
    words = (match["arg"] or "").split()
    if len(words) != 2 or words[1] not in MODES:
        raise BlockError(f"<!--{body}--> needs a file and a mode: <!-- {match['kind']}: FILE MODE -->, "
                         f"MODE one of {', '.join(MODES)}")
    target, mode = words
    if target.startswith("/") or ".." in Path(target).parts:
        raise BlockError(f"<!--{body}-->: FILE is a path inside the project, from the folder of manage.py")
    return KINDS[match["kind"]], target, mode


def blocks_in(markdown: str, notebook: Path, cell: int) -> list[tuple[int, str, str, tuple[str, str, str]]]:
    """(line, language, text, (kind, target, mode)) of each marked block of a markdown cell."""
    found = []
    for f in fences(markdown):
        try:
            marker = parse_marker(f.comment) if f.comment is not None else None
        except BlockError as exc:
            raise BlockError(f"{notebook.name}, cell {cell}, line {f.line}: {exc}") from None
        if marker is not None:
            found.append((f.line, f.language, f.body + "\n", marker))
    return found


def collect(notebooks: Path = NOTEBOOKS_DIR) -> list[Block]:
    """Every marked block of every chapter, in order (chapter, cell, line)."""
    found: list[Block] = []
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        seen: dict[str, int] = {}
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for index, cell in enumerate(cells):
            if cell["cell_type"] != "markdown":
                continue
            for line, language, text, (kind, target, mode) in blocks_in("".join(cell["source"]), path, index):
                seen[target] = seen.get(target, 0) + 1
                key = f"{path.name[:2]}:{target}" + (f"#{seen[target]}" if seen[target] > 1 else "")
                found.append(Block(path, index, line, language, text, kind, target, mode, key))
    return found


@functools.cache
def _all_blocks() -> tuple[Block, ...]:
    return tuple(collect())


def block(key: str) -> Block:
    """The marked block with this key (see the module's docstring)."""
    for candidate in _all_blocks():
        if candidate.key == key:
            return candidate
    known = ", ".join(b.key for b in _all_blocks())
    raise BlockError(f"no marked block has the key {key!r} (did its marker or its chapter change?). Known: {known}")


def chapter_blocks(chapter: str, kind: str = "django") -> list[Block]:
    """The blocks the project of ``chapter`` is made of: every non-fragment block of
    that kind of the chapters up to ``chapter``, in order."""
    return [b for b in _all_blocks() if b.kind == kind and b.mode != "fragment" and b.chapter <= chapter]


def syntax_problem(b: Block) -> str | None:
    """What is wrong with a block as text (before it is assembled), or None."""
    first = b.text.lstrip("\n").splitlines()[0] if b.text.strip() else ""
    if b.mode == "fragment" and not first.startswith(FRAGMENT_PREFIX):
        return f"a fragment's first line says what it is part of: `{FRAGMENT_PREFIX}…` (it is {first!r})"
    if b.mode != "fragment" and first.startswith(FRAGMENT_PREFIX):
        return f"its first line says it is a fragment, but its marker's mode is {b.mode!r}"
    if b.language == "python":
        try:
            compile(b.text, f"<{b.key}>", "exec")
        except SyntaxError as exc:
            return f"it is not valid Python: {exc.msg} (block line {exc.lineno})"
    return None


# --- naming the blocks a test checks -------------------------------------------------

def checks(*keys: str) -> Callable:
    """Mark a test as the check of these blocks' effect. A failure of the test
    says which blocks (chapter, cell, line, file) it was checking."""
    def decorate(test: Callable) -> Callable:
        @functools.wraps(test)
        def wrapper(*args, **kwargs):
            try:
                return test(*args, **kwargs)
            except Exception as exc:
                named = "\n".join("  - " + _describe(k) for k in keys)
                raise AssertionError(f"own-project blocks failed when assembled as printed:\n{named}\n"
                                     f"{type(exc).__name__}: {exc}") from exc

        wrapper.own_project_blocks = keys
        return wrapper

    return decorate


def _describe(key: str) -> str:
    try:
        return block(key).describe()
    except BlockError as exc:
        return str(exc)


# --- the fresh project ------------------------------------------------------------------

def executable(name: str) -> list[str]:
    """A console script of the course's .venv (``celery``, ``django-admin``), as a learner
    with .venv activated types it; ``python -m`` if the venv has no such script."""
    script = Path(sys.executable).parent / name
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", {"django-admin": "django"}.get(name, name)]


class Project:
    """A fresh project in ``root`` (the folder of manage.py, for Django) and the
    environment of a learner's terminal with REDIS_URL naming ``broker_url`` and the
    variables in ``settings`` (a chapter's EMAIL_HOST, ...)."""

    def __init__(self, root: Path, kind: str, broker_url: str, settings: Mapping[str, str] | None = None):
        self.root, self.kind, self.broker_url = root, kind, broker_url
        self.settings = {"REDIS_URL": broker_url, **(settings or {})}
        self.blocks: list[Block] = []
        self.procs: list[Proc] = []
        self.ready_texts: dict[Proc, str] = {}   # what each long-running program logs when it is ready

    @property
    def env(self) -> dict[str, str]:
        """A learner's terminal: none of the course's settings (no DJANGO_SETTINGS_MODULE,
        PYTHONPATH, CELERY_*, ...), REDIS_URL and ``settings``, output line by line."""
        return {**without_settings(os.environ), **self.settings, "PYTHONUNBUFFERED": "1"}

    def run(self, argv: Sequence[str], timeout: float = COMMAND_TIMEOUT,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        """Run a command in the project's folder (or ``cwd``); a non-zero exit raises
        ProcessError with its output."""
        cwd = cwd or self.root
        try:
            done = subprocess.run(list(argv), cwd=cwd, env=self.env, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise ProcessError(f"`{' '.join(argv)}` in {cwd} did not finish within {timeout:g} s:\n"
                               f"{exc.stdout or ''}{exc.stderr or ''}") from None
        if done.returncode != 0:
            raise ProcessError(f"`{' '.join(argv)}` in {cwd} failed with code {done.returncode}:\n"
                               f"{done.stdout}{done.stderr}")
        return done

    def manage(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
        """``python manage.py ARGS`` in the project's folder."""
        return self.run([sys.executable, "manage.py", *args], timeout=timeout)

    def django(self, code: str, timeout: float = COMMAND_TIMEOUT):
        """Run ``code`` in ``python manage.py shell`` (a process of its own: the project's
        settings never enter this test process) and return the JSON of its ``result``."""
        done = self.manage("shell", "-c", f"{code}\nimport json\nprint({_RESULT!r} + json.dumps(result))",
                           timeout=timeout)
        lines = [line for line in done.stdout.splitlines() if line.startswith(_RESULT)]
        if not lines:
            raise ProcessError(f"`manage.py shell` printed no result:\n{done.stdout}{done.stderr}")
        return json.loads(lines[-1][len(_RESULT):])

    # --- assembling ---------------------------------------------------------------

    def add(self, b: Block) -> None:
        """Put one block into the project, as its marker says."""
        problem = syntax_problem(b)
        if problem is not None:
            raise BlockError(f"{b.describe()}: {problem}")
        path = self.root / b.target
        if b.mode == "new" and path.exists():
            raise BlockError(f"{b.describe()}: the mode is 'new', but {b.target} exists already "
                             "(made by startproject/startapp or an earlier block): say 'replace' or 'append'")
        if b.mode in ("replace", "append") and not path.exists():
            raise BlockError(f"{b.describe()}: the mode is {b.mode!r}, but there is no {b.target} "
                             "to change: say 'new'")
        path.parent.mkdir(parents=True, exist_ok=True)
        if b.mode == "append":
            before = path.read_text(encoding="utf-8")
            path.write_text(before.rstrip("\n") + "\n\n" + b.text, encoding="utf-8")
        elif b.mode in ("new", "replace"):
            path.write_text(b.text, encoding="utf-8")
        self.blocks.append(b)

    @classmethod
    def assemble(cls, folder: Path, chapter: str, broker_url: str, kind: str = "django",
                 settings: Mapping[str, str] | None = None) -> Project:
        """The project of ``chapter`` in ``folder``: for Django, ``django-admin startproject
        proj`` + ``python manage.py startapp myapp``, then every block up to the chapter
        (chapter_blocks()), then ``migrate``; a plain folder gets its blocks only."""
        if kind == "plain":
            root = folder / "plain"
            root.mkdir()
            project = cls(root, kind, broker_url, settings)
        else:
            project = cls(folder / PROJECT, kind, broker_url, settings)
            project.run([*executable("django-admin"), "startproject", PROJECT], cwd=folder)
            project.manage("startapp", APP)
        for b in chapter_blocks(chapter, kind):
            project.add(b)
        if kind == "django":
            try:
                project.manage("migrate", "--verbosity=0")
            except ProcessError as exc:
                raise BlockError(f"`python manage.py migrate` fails in the project of chapter {chapter}, made of:\n"
                                 + project.listing() + f"\n{exc}") from None
        return project

    def listing(self) -> str:
        return "\n".join("  - " + b.describe() for b in self.blocks)

    # --- processes ------------------------------------------------------------------

    def start(self, name: str, argv: Sequence[str], ready: str, wait: bool = True) -> Proc:
        """Start a long-running program in the project's folder; wait until it logs
        ``ready`` (``wait=False``: later, with ``wait_ready()``, to start several side by side)."""
        proc = Proc(name, list(argv), cwd=self.root, settings=self.settings)
        self.procs.append(proc)
        self.ready_texts[proc] = ready
        if wait:
            self.wait_ready(proc)
        return proc

    def wait_ready(self, proc: Proc) -> None:
        proc.wait_for_log(self.ready_texts[proc], READY_TIMEOUT, since=0, fail_on=("Cannot connect to",),
                          advice=f"The project is made of these blocks:\n{self.listing()}")

    def start_worker(self, name: str = "w1", queues: Sequence[str] = (), app: str = PROJECT,
                     wait: bool = True) -> Proc:
        """``celery -A proj worker --loglevel=info`` as the chapter prints it (``-n NAME@%h``
        and ``-Q`` when asked; 2 pool processes, no gossip/mingle/heartbeat: ready sooner)."""
        argv = [*executable("celery"), "-A", app, "worker", "--loglevel=info", "-n", f"{name}@%h",
                "--concurrency=2", *FAST_FLAGS]
        if queues:
            argv += ["-Q", ",".join(queues)]
        return self.start(f"own-{name}", argv, " ready.", wait)

    def start_beat(self, app: str = PROJECT, wait: bool = True) -> Proc:
        """``celery -A proj beat --loglevel=info`` (its schedule file in the project's folder)."""
        return self.start("own-beat", [*executable("celery"), "-A", app, "beat", "--loglevel=info"],
                          "beat: Starting...", wait)

    def stop(self) -> None:
        """Stop (warm) every process started here and remove their logs."""
        procs, self.procs = self.procs, []
        stop_together(procs)   # side by side: a warm stop of a worker takes a second or two


@dataclass
class Running:
    """A chapter's assembled project, its broker, its workers (by name) and its beat."""

    project: Project
    broker: Broker
    workers: dict[str, Proc]
    beat: Proc | None = None

    @property
    def worker(self) -> Proc:
        """The first worker (``w1``: the default queue)."""
        return next(iter(self.workers.values()))


@contextmanager
def running(chapter: str, workers: dict[str, Sequence[str]] | None = None, beat: bool = False,
            kind: str = "django", settings: Mapping[str, str] | None = None) -> Iterator[Running]:
    """A broker (embedded Valkey on a free port), the project of ``chapter`` assembled in
    a temporary folder, its workers (name -> queues; default one ``w1`` on the default
    queue) and, with ``beat``, ``celery -A proj beat``, all started side by side. Everything
    is stopped and removed at the end, also when something fails on the way."""
    folder = Path(tempfile.mkdtemp(prefix=f"own-project-{chapter}-"))
    broker = None
    project = None
    try:
        broker = start_embedded()
        project = Project.assemble(folder, chapter, broker.url, kind, settings)
        started = {}
        if kind == "django":
            started = {name: project.start_worker(name, queues, wait=False)
                       for name, queues in (workers or {"w1": ()}).items()}
        scheduler = project.start_beat(wait=False) if beat else None
        for proc in [*started.values(), *([scheduler] if scheduler else [])]:
            project.wait_ready(proc)
        yield Running(project, broker, started, scheduler)
    finally:
        if project is not None:
            project.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    """List every marked block: key, where it is, what is wrong with it."""
    for b in collect():
        problem = syntax_problem(b)
        print(f"{b.key:40} {b.notebook.name} cell {b.cell} line {b.line} ({b.kind}, {b.mode})"
              + (f"  !! {problem}" if problem else ""))


if __name__ == "__main__":
    main()
