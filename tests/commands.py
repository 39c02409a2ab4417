"""The command blocks of the README and of the chapters' markdown, and how a test
runs them as a learner would type them (tests/test_commands.py).

What counts
-----------
A *command block* is a fenced block (```) whose language is ``shell``, ``bash``,
``sh`` or ``console``, in README.md or in a markdown cell of a notebook in
notebooks/. Every other fence (``text``, ``python``, none) is not a command, and
neither is inline `code` in the prose. In a ``console`` block, the commands are
the lines that start with ``$ `` (the rest is output). Comment lines and blank
lines are skipped; a line ending in ``\\`` goes on on the next one.

Markers
-------
An HTML comment on the line right before the opening fence (in the same markdown
cell), invisible on GitHub and in JupyterLab, says how the block is run:

    (no marker)
        Run in the foreground; it must exit 0 within FOREGROUND_TIMEOUT seconds.
        The block runs as one bash script under ``set -euo pipefail``.

    <!-- background: ready "TEXT" -->
        A long-running program (a worker, Flower, runserver, beat, `make lab`):
        started in a terminal of its own and working once its output contains
        TEXT (within READY_TIMEOUT seconds); then stopped as a learner stops it,
        with Ctrl-C (SIGINT to its process group: Celery's warm shutdown), and
        the whole process group is gone afterwards (launcher's Proc).
        A block of several terminals gives one TEXT per long-running command,
        in order: ``<!-- background: ready "beat: Starting..." "ready." -->``.
        The commands after those run in one more terminal, in the foreground,
        and must exit 0 (e.g. README's `python -m demo_tasks.run_task` beside
        its worker). Lines that only set up a shell (``cd``, ``source``, ``.``,
        ``export``, ``unset``, ``NAME=value``) are typed into every terminal
        opened after them.

    <!-- not-run: REASON -->
        Not run here (Homebrew, apt, Docker, WSL, a mirror, ...). The reason,
        short and in English, is required (one test checks every reason; a
        not-run block is never reported as a skipped test).

A comment right before a command block that is not one of these is an error,
and so is a block with no marker that cannot run here: one that installs
packages, needs Docker, root, Windows or the network, runs the tests, or names a
port of this machine the test does not own (see ``unrunnable()``) fails at once,
asking for a ``not-run`` marker; any other unmarked block is run, and fails if it
does not exit 0 in time.

Where and with what
-------------------
- The working directory is the repository's root, unless the block changes it
  (``cd``): a scratch copy of the repository (``scratch_copy()``), so whatever a
  command writes (beat's ``celerybeat-schedule``, ``.secrets/...``) never lands
  in the checkout. ``.venv`` in the copy is the repository's own (``make`` there
  finds it installed and never runs pip); its ``.secrets/`` is a copy of the test
  run's own folder (launcher.credentials), never of the checkout's.
- The environment is a learner's terminal beside a running `make lab`: the
  repository's .venv activated (PATH, VIRTUAL_ENV); none of the course's own
  settings (DEBUG, SECRET_KEY, DJANGO_*, CELERY_*, FLOWER_*, COURSE_SECRETS_DIR,
  ...: tests/notebook_env.py's list of a developer's settings), since a
  learner's terminal has none: a block that needs ``DEBUG=true`` must say so;
  PYTHONUNBUFFERED=1 (a terminal shows output line by line); a Django database
  already migrated and a media folder, throwaway ones (DATABASE_URL, MEDIA_ROOT:
  `make lab` migrates the project's own); the .secrets/ files `make lab` makes
  (in the copy: the block reads them at ``.secrets/``, as the chapters say).
- The broker: each block gets its own embedded Valkey on a free port, named by
  REDIS_URL (every program of the course reads it; the article's default,
  ``redis://127.0.0.1``, is make lab's broker on 6379).
- A test never takes this machine's fixed ports, and never touches a learner's
  Redis on 6379: before running, ``127.0.0.1:6379`` (and ``redis://127.0.0.1``
  without a port) in a block becomes the test's broker (the database number is
  kept); ``--port=6379|5555|8000|8888`` (a server of the block's own) and a
  ``manage.py runserver`` without an address get a free port; `make lab` gets
  free ones through LAB_PORT and LAB_BROKER_PORT. Nothing else in a block is
  changed. (``redis-cli`` without ``-u URL`` is refused by ``unrunnable()``;
  Python code in a block that connects by itself must name its URL or read
  REDIS_URL, as the course's own programs do.)
- Everything a block's terminals start carries BLOCK_VARIABLE (not the
  course's CELERY_COURSE_SESSION: `make lab` would stop its own parents by it);
  what is left of it after the block (a program that went to the background)
  is stopped.

``python -m tests.commands`` lists every block with its marker, or what is wrong
with it, without running anything.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from launcher.broker import free_port
from launcher.credentials import LEARNER_DIR, SECRETS_VARIABLE, secrets_dir
from launcher.paths import NOTEBOOKS_DIR, REPO_ROOT
from launcher.procs import Proc, ProcessError, group_alive, sweep, wait_for
from tests.fences import fences
from tests.notebook_env import is_developer_setting

#: Fence languages whose blocks are commands.
LANGUAGES = ("shell", "bash", "sh", "console")
#: Seconds a foreground block has to exit; a background command has to print its TEXT.
FOREGROUND_TIMEOUT = 60.0
READY_TIMEOUT = 60.0
#: Seconds a Ctrl-C'd program has to exit before the stop escalates (SIGTERM: warm for
#: Celery too; then cold, kill). Ctrl-C is sometimes lost on beat with django-celery-beat's
#: DatabaseScheduler right after "beat: Starting..." (it is still building its scheduler).
CTRL_C_TIMEOUT = 5.0

_MARKER = re.compile(r"^\s*(?P<kind>[a-z][a-z-]*)\s*(?::(?P<arg>.*))?$", re.DOTALL)
_READY = re.compile(r'^ready((?:\s+"[^"]+")+)\s*$')


class MarkerError(ValueError):
    """A marker the test cannot read: the message says what is wrong."""


@dataclass(frozen=True)
class Marker:
    kind: str                       # "run" (no marker), "background" or "not-run"
    reason: str = ""                # not-run: why
    ready: tuple[str, ...] = ()     # background: one text per long-running command


@dataclass(frozen=True)
class Block:
    """One command block, where it is and what it says."""

    file: Path
    cell: int | None        # the markdown cell's index in the notebook (nb["cells"][i]); None in README
    line: int               # the opening fence's line, from 1 (in the cell, for a notebook)
    language: str
    text: str               # the lines between the fences, their indentation removed
    comment: str | None     # the HTML comment on the line before the fence, if any

    @property
    def id(self) -> str:
        """``README.md:43`` or ``05_django_integration.ipynb:cell14:5``."""
        where = f"cell{self.cell}:" if self.cell is not None else ""
        return f"{self.file.name}:{where}{self.line}"

    def marker(self) -> Marker:
        return parse_marker(self.comment)

    def commands(self, text: str | None = None) -> list[str]:
        """The block's commands (of ``text``: the block rewritten, by default its own)."""
        return commands_of(self.text if text is None else text, console=self.language == "console")


# --- finding the blocks ------------------------------------------------------

def blocks_in(markdown: str, file: Path, cell: int | None = None) -> list[Block]:
    """The command blocks of a markdown text."""
    return [Block(file, cell, f.line, f.language, f.body, f.comment.strip() if f.comment is not None else None)
            for f in fences(markdown) if f.language in LANGUAGES]


def collect(readme: Path = REPO_ROOT / "README.md", notebooks: Path = NOTEBOOKS_DIR) -> list[Block]:
    """Every command block of the README and of the chapters' markdown cells, in order."""
    found = blocks_in(readme.read_text(encoding="utf-8"), readme)
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for index, cell in enumerate(cells):
            if cell["cell_type"] == "markdown":
                found += blocks_in("".join(cell["source"]), path, index)
    return found


def parse_marker(comment: str | None) -> Marker:
    """The marker in an HTML comment's body (None: no marker, the block is run)."""
    if comment is None:
        return Marker("run")
    match = _MARKER.match(comment)
    kind, arg = (match["kind"], (match["arg"] or "").strip()) if match else ("", "")
    if kind == "not-run":
        if not arg:
            raise MarkerError("a not-run marker needs a reason: <!-- not-run: REASON -->")
        return Marker("not-run", reason=arg)
    if kind == "background":
        ready = _READY.match(arg)
        if not ready:
            raise MarkerError('a background marker says when the program is ready: '
                              '<!-- background: ready "TEXT" --> (one quoted TEXT per long-running command)')
        return Marker("background", ready=tuple(re.findall(r'"([^"]+)"', ready[1])))
    raise MarkerError(f"<!--{comment}--> right before a command block is not a marker; the markers are "
                      '<!-- not-run: REASON --> and <!-- background: ready "TEXT" -->')


# --- reading the commands ----------------------------------------------------

def commands_of(text: str, console: bool = False) -> list[str]:
    """The logical command lines of a block: continuations joined, comments and
    blank lines dropped; in a console block, only the ``$ `` lines."""
    found: list[str] = []
    continuing = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if continuing:
            found[-1] = found[-1][:-1].rstrip() + " " + line.strip()
        elif console:
            if not re.match(r"^\$(\s|$)", line):
                continue
            found.append(line[1:].strip())
        elif line.strip() and not line.lstrip().startswith("#"):
            found.append(line.strip())
        else:
            continue
        continuing = found[-1].endswith("\\")
    return [c for c in found if c]


def words(command: str) -> list[str]:
    """A command's words as the shell splits them (comments dropped; ``&&``, ``|``,
    ``;`` are words of their own). Unbalanced quotes: split on blanks."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        return list(lexer)
    except ValueError:
        return command.split()


_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")"}
#: Words in front of a program that are not the program.
_PREFIXES = {"env", "exec", "time", "nohup", "command"}


def programs(command: str) -> Iterator[list[str]]:
    """Each simple command of a command line (split at ``&&``, ``|``, ``;``), as its
    words from the program on (assignments like ``DEBUG=true`` and ``env`` skipped)."""
    simple: list[str] = []
    for word in [*words(command), ";"]:
        if word in _SEPARATORS or set(word) <= set(";&|()"):
            while simple and (_ASSIGNMENT.match(simple[0]) or simple[0] in _PREFIXES):
                simple.pop(0)
            if simple:
                yield simple
            simple = []
        else:
            simple.append(word)


def is_setup(command: str) -> bool:
    """Does this line only set up the shell (every terminal opened later types it too)?"""
    all_words = words(command)
    if not all_words or any(w in _SEPARATORS for w in all_words):
        return False
    return all_words[0] in {"cd", "source", ".", "export", "unset"} or all(_ASSIGNMENT.match(w) for w in all_words)


# --- what cannot run here ----------------------------------------------------

#: Programs a test never runs, and why (the start of a not-run reason).
NEVER = {
    **dict.fromkeys(("apt", "apt-get", "aptitude", "dnf", "yum", "zypper", "pacman", "apk", "snap"),
                    "installs system packages"),
    **dict.fromkeys(("brew", "port"), "installs packages with Homebrew/MacPorts (macOS)"),
    **dict.fromkeys(("choco", "winget", "scoop"), "installs Windows packages"),
    **dict.fromkeys(("wsl", "wsl.exe", "powershell", "pwsh", "cmd", "cmd.exe"), "runs on Windows"),
    **dict.fromkeys(("docker", "docker-compose", "podman"), "needs Docker"),
    **dict.fromkeys(("sudo", "su", "doas"), "needs root"),
    **dict.fromkeys(("systemctl", "service", "launchctl"), "manages system services"),
    **dict.fromkeys(("virtualenv", "pipx", "conda", "mamba"), "creates or changes a Python environment"),
    "pytest": "runs the tests (this one among them)",
}
#: `make` targets a test never runs.
MAKE_NEVER = {
    "test": "runs the tests (this one among them)", "test-notebook": "runs a chapter's tests",
    "install": "installs packages into .venv", "install-test": "installs packages into .venv",
    "clean": "deletes .venv", "browser": "downloads a browser",
    "notebooks": "re-executes every notebook (minutes)", "pictures": "regenerates the pictures (minutes)",
}
#: Redis's own programs: a client talks to 127.0.0.1:6379 unless given -u URL (which
#: rewrite() points at the test's broker); a server takes 6379 unless given --port.
_REDIS_CLIENTS = {"redis-cli", "valkey-cli", "redis-benchmark", "valkey-benchmark"}
_REDIS_SERVERS = {"redis-server", "valkey-server"}
#: This machine's ports that a learner's programs use: a test never takes them.
#: 8007: chapter 07's flaky service; 1025 and 8009: chapter 09's SMTP server and bot receiver.
FIXED_PORTS = (6379, 5555, 8000, 8007, 8888, 1025, 8009, 8010)
_LOCAL = r"(?:127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\])"
_URL = re.compile(r"\b(?:https?|wss?|ftp)://(?P<host>[^/\s:'\"]+)|\bgit@(?P<git>[^:\s]+):")


def _python_module(program: list[str]) -> str | None:
    """``pip`` for ``python -m pip ...``."""
    if re.fullmatch(r"python[0-9.]*", os.path.basename(program[0])) and "-m" in program[1:]:
        index = program.index("-m")
        return program[index + 1] if index + 1 < len(program) else None
    return None


def _why_never(program: list[str]) -> str | None:
    name = os.path.basename(program[0])
    module = _python_module(program)
    args = program[1:] if module is None else program[program.index("-m") + 2:]
    if name in NEVER:
        return f"{NEVER[name]} ({name})"
    if (name in ("pip", "pip3", "uv") or module == "pip") and {"install", "add", "sync"} & set(args):
        return "installs Python packages (pip install: the network, and a changed .venv)"
    if module in ("venv", "virtualenv"):
        return "creates a virtual environment"
    if module == "pytest":
        return NEVER["pytest"]
    if name == "playwright" or module == "playwright":
        return "downloads a browser (playwright install)"
    if name in _REDIS_CLIENTS and "-u" not in args:
        return f"talks to this machine's Redis ({name} without -u URL: 127.0.0.1:6379)"
    if name in _REDIS_SERVERS and "--port" not in args:
        return f"starts a Redis server on this machine's port 6379 ({name} without --port)"
    if name in ("make", "gmake"):
        for target in program[1:]:
            if target in MAKE_NEVER:
                return f"{MAKE_NEVER[target]} (make {target})"
    return None


def unrunnable(block: Block) -> str | None:
    """Why the block cannot run here whatever its marker says (None: it can). A
    block for which this says something needs ``<!-- not-run: REASON -->``."""
    rewritten, owned = rewrite(block.text, broker_port=0, port=lambda: 0)
    for command in block.commands(rewritten):
        for program in programs(command):
            why = _why_never(program)
            if why:
                return why
        text = " ".join(words(command))
        for url in _URL.finditer(text):
            host = url["host"] or url["git"]
            if not re.fullmatch(_LOCAL, host):
                return f"needs the network ({host})"
        for address in re.finditer(rf"{_LOCAL}:(\d+)", text):
            if int(address[1]) not in owned:
                return f"uses port {address[1]} of this machine, which a test does not own"
        fixed = re.search(r"\b(" + "|".join(map(str, FIXED_PORTS)) + r")\b", text)
        if fixed:
            return f"names port {fixed[1]} of this machine in a way the test cannot point at its own"
    return None


# --- the test's own addresses ------------------------------------------------

def rewrite(text: str, *, broker_port: int, port: Callable[[], int] = free_port) -> tuple[str, set[int]]:
    """``text`` with this machine's fixed addresses replaced by the test's own:
    the article's broker (127.0.0.1:6379, or ``redis://127.0.0.1`` without a port)
    by ``broker_port``; ``--port=`` or aiosmtpd's ``-l 127.0.0.1:`` with a fixed port (a server of its own) and
    a ``manage.py runserver`` without an address by ``port()``. Returns the text and the ports it put in."""
    owned = {broker_port}

    def fresh() -> int:
        number = port()
        owned.add(number)
        return number

    text = re.sub(rf"\b(rediss?://(?:[^@/\s'\"]*@)?{_LOCAL})(?::6379)?(?![:\d])",
                  lambda m: f"{m[1]}:{broker_port}", text)
    text = re.sub(rf"(?<![\w.])({_LOCAL}):6379\b", lambda m: f"{m[1]}:{broker_port}", text)
    fixed = "|".join(map(str, FIXED_PORTS))
    text = re.sub(rf"(--port[= ])({fixed})\b", lambda m: f"{m[1]}{fresh()}", text)
    # aiosmtpd's own option: -l HOST:PORT (chapter 09's SMTP server).
    text = re.sub(rf"(-l\s+{_LOCAL}:)({fixed})\b", lambda m: f"{m[1]}{fresh()}", text)
    text = re.sub(r"(\bmanage\.py\s+runserver\b(?:\s+--?[a-z-]+)*)(?=\s*(?:#.*)?$)",
                  lambda m: f"{m[1]} 127.0.0.1:{fresh()}", text, flags=re.MULTILINE)
    return text, owned


# --- where and with what -----------------------------------------------------

#: What a scratch copy leaves out: made by tools, or the learner's own.
_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", ".secrets", ".scratch", "__pycache__", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints",
    "*.egg-info", "build", "db.sqlite3*", "media", "staticfiles", "*.rdb", "*.aof", "celerybeat-schedule*")


#: The Makefile's stamps: `make` in a scratch copy finds them new, and never installs.
MAKE_STAMPS = (".installed-course", ".installed-test")


def scratch_copy(folder: Path) -> Path:
    """A copy of the repository in ``folder``/repo, with the repository's .venv and,
    as its .secrets/, a copy of the test run's own secrets folder (never the
    checkout's: launcher.credentials). The copy's .venv links every entry of the real
    one but has new stamps of its own: a `make lab` in the copy never runs pip (which
    would point the real .venv's editable install at the copy)."""
    root = folder / "repo"
    shutil.copytree(REPO_ROOT, root, ignore=_NOT_COPIED, symlinks=True)
    venv = root / ".venv"
    venv.mkdir()
    for entry in (REPO_ROOT / ".venv").iterdir():
        if entry.name not in MAKE_STAMPS:
            (venv / entry.name).symlink_to(entry)
    for stamp in MAKE_STAMPS:
        (venv / stamp).touch()
    named = Path(os.path.abspath(os.environ.get(SECRETS_VARIABLE) or LEARNER_DIR))
    if named == LEARNER_DIR:  # by name: nothing of the checkout's folder is touched, not even a stat
        raise RuntimeError(f"{named} is the checkout's own .secrets/: the tests use a folder of their own "
                           f"({SECRETS_VARIABLE}, set by the root conftest.py)")
    shutil.copytree(secrets_dir(), root / ".secrets")
    return root


def terminal_env(folder: Path, broker_url: str) -> dict[str, str]:
    """A learner's terminal beside `make lab` (see the module's docstring)."""
    env = {k: v for k, v in os.environ.items() if not is_developer_setting(k) and k != "VIRTUAL_ENV"}
    venv_bin = Path(sys.executable).parent
    env.update({
        "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv_bin.parent),
        "PYTHONUNBUFFERED": "1",
        "REDIS_URL": broker_url,
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "MEDIA_ROOT": str(folder / "media"),
        # `make lab`: never 8888 or 6379, and its Jupyter files inside the folder.
        "LAB_PORT": str(free_port()), "LAB_BROKER_PORT": str(free_port()),
        "JUPYTERLAB_SETTINGS_DIR": str(folder / "lab-settings"),
        "JUPYTER_RUNTIME_DIR": str(folder / "jupyter-runtime"),
    })
    return env


# --- running -----------------------------------------------------------------

class BlockFailed(AssertionError):
    """A block did not do what it says: the message says what, with the output."""


#: Set in every terminal of a block (its value: the block's run), so that
#: launcher.sweep(name, variable=BLOCK_VARIABLE) stops whatever the block left running.
BLOCK_VARIABLE = "COURSE_COMMAND_BLOCK"


class Terminal(Proc):
    """bash running the lines typed into one terminal, as its foreground job (a process group)."""

    def __init__(self, name: str, lines: list[str], *, cwd: Path, env: dict[str, str]):
        script = "\n".join(["set -euo pipefail", *lines])
        self.typed = "\n".join(lines)
        super().__init__(name, ["bash", "-c", script], cwd=cwd, env=env)

    @property
    def display(self) -> str:
        """The lines typed into this terminal, as the block prints them."""
        return self.typed

    def ctrl_c(self, timeout: float = CTRL_C_TIMEOUT) -> None:
        """What Ctrl-C does in a terminal: SIGINT to the foreground process group
        (a Celery worker then shuts down warm). Every process of the group gets
        ``timeout`` seconds to finish (`make` exits before the program it ran has
        cleaned up); then stop() ends whatever is left."""
        if self.running() or group_alive(self.pid):
            self._signal_group(signal.SIGINT)
            wait_for(lambda: not self.running() and not group_alive(self.pid), timeout)
        self.stop()

    def output(self, lines: int = 40) -> str:
        return self.tail(lines, raw=True)


@dataclass
class Terminals:
    """The terminals of one block, and how to end them all."""

    cwd: Path
    env: dict[str, str]
    name: str
    terminals: list[Terminal] = field(default_factory=list)

    def open(self, lines: list[str]) -> Terminal:
        number = len(self.terminals) + 1
        env = dict(self.env, **{BLOCK_VARIABLE: self.name})
        terminal = Terminal(f"terminal{number}", lines, cwd=self.cwd, env=env)
        self.terminals.append(terminal)
        return terminal

    def close(self) -> None:
        """Ctrl-C in every terminal, the last opened first; then stop whatever
        of theirs went on running in the background."""
        for terminal in reversed(self.terminals):
            terminal.ctrl_c()
        sweep(self.name, timeout=5.0, variable=BLOCK_VARIABLE)
        for terminal in self.terminals:
            terminal.cleanup()


def _failed(block: Block, what: str, terminal: Terminal) -> BlockFailed:
    return BlockFailed(f"{block.id}: {what}\n--- the command(s):\n{terminal.display}\n"
                       f"--- its output (last lines):\n{terminal.output()}")


def _run_foreground(block: Block, terminals: Terminals, lines: list[str]) -> None:
    terminal = terminals.open(lines)
    try:
        code = terminal.popen.wait(FOREGROUND_TIMEOUT)
    except subprocess.TimeoutExpired:
        terminal.ctrl_c()
        raise _failed(block, f"did not exit within {FOREGROUND_TIMEOUT:g} s. A long-running program? "
                             'Mark the block <!-- background: ready "TEXT" -->', terminal) from None
    if code != 0:
        raise _failed(block, f"exited with code {code}. If it cannot run here, mark the block "
                             "<!-- not-run: REASON -->", terminal)


def run(block: Block, *, cwd: Path, env: dict[str, str], broker_port: int, name: str) -> None:
    """Run a block as its marker says (not a not-run one) in ``cwd`` with ``env``,
    its addresses rewritten for the broker on ``broker_port``; raise BlockFailed
    if it does not work. ``name`` (unique) marks the processes of this run (BLOCK_VARIABLE)."""
    marker = block.marker()
    text, _ = rewrite(block.text, broker_port=broker_port)
    commands = block.commands(text)
    if not commands:
        raise BlockFailed(f"{block.id}: a command block with no command in it")
    terminals = Terminals(cwd, env, name)
    try:
        if marker.kind == "run":
            _run_foreground(block, terminals, commands)
            return
        started = [i for i, c in enumerate(commands) if not is_setup(c)][:len(marker.ready)]
        if len(started) < len(marker.ready):
            raise BlockFailed(f"{block.id}: the marker waits for {len(marker.ready)} programs, "
                              f"the block starts {len(started)}")
        for index, ready in zip(started, marker.ready, strict=True):
            terminal = terminals.open([c for c in commands[:index] if is_setup(c)] + [commands[index]])
            try:
                terminal.wait_for_log(ready, READY_TIMEOUT, since=0)
            except ProcessError as exc:
                raise _failed(block, f"never printed {ready!r}: {str(exc).splitlines()[0]}", terminal) from None
        rest = [c for i, c in enumerate(commands) if i not in started]
        if any(not is_setup(c) for c in rest):
            _run_foreground(block, terminals, rest)
    finally:
        terminals.close()


def main() -> None:
    """List every block: its id, its marker (or what is wrong), its first command."""
    for block in collect():
        try:
            marker = block.marker()
            state = {"run": "run", "background": f"background {list(marker.ready)}",
                     "not-run": f"not-run: {marker.reason}"}[marker.kind]
            if marker.kind != "not-run" and (why := unrunnable(block)):
                state = f"NEEDS <!-- not-run: {why} -->"
        except MarkerError as exc:
            state = f"BAD MARKER: {exc}"
        first = (block.commands() or [""])[0]
        print(f"{block.id:<38} {state}\n{'':<38} $ {first[:90]}")


if __name__ == "__main__":
    main()
