"""One owner per chapter: the kernel that prepared it last.

A learner can open a chapter again in another kernel while its first kernel
still runs (a copy of the notebook, a console, an editor's kernel beside the
lab). Two kernels' workers on one chapter's database would take each other's
tasks and ticks, so preparing a chapter takes it over:

- the owner is recorded in the chapter's own Redis database (key
  ``course:owner``), so tests running side by side on brokers of their own
  never see each other's owners;
- what the previous owner started for the chapter is stopped warm: every
  process it started carries its owner token in the environment
  (``CELERY_COURSE_OWNER``), so a worker the learner started in a terminal,
  which has no token, is never touched;
- the previous kernel's next cell fails at once with a sentence that says the
  chapter moved and how to take it back (an IPython input transformer checks
  ownership before every cell runs: one GET on the chapter's database).
"""

from __future__ import annotations

import json
import os
import socket
import uuid

import psutil
import redis

from . import procs

#: The key of the owner record in the chapter's database.
OWNER_KEY = "course:owner"
#: The environment variable that marks what an owner started.
OWNER_VARIABLE = "CELERY_COURSE_OWNER"

_owned: dict | None = None        # {"number", "url", "token"} of the chapter this process owns
_client: redis.Redis | None = None


class ChapterMoved(RuntimeError):
    """This kernel's chapter was prepared again in another kernel."""

    def _render_traceback_(self) -> list[str]:  # IPython: show the sentence, not a traceback
        return [f"\x1b[31mChapterMoved\x1b[0m: {self}"]


def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def read_owner(url: str) -> dict | None:
    """The owner record in the chapter database at ``url`` (None if there is none)."""
    raw = _redis(url).get(OWNER_KEY)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def take_over(number: int, url: str) -> list[int]:
    """Stop what the chapter's previous owner started (warm: SIGTERM to each main
    process, children go with it), if that owner is another process. Returns the
    pids stopped. Call before the chapter's database is emptied."""
    previous = read_owner(url)
    if not previous or previous.get("token") == (_owned or {}).get("token"):
        return []
    found = procs.session_processes(previous["token"], variable=OWNER_VARIABLE)
    pids = {p.pid for p in found}
    # Only the main processes: a prefork worker's pool children stop with it (a warm stop).
    mains = [p for p in found if _parent_pid(p) not in pids]
    for proc in mains:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    if not procs.wait_for(lambda: not any(map(_alive, found)), procs.WARM_TIMEOUT, interval=0.05):
        for proc in filter(_alive, found):
            try:
                proc.kill()
            except psutil.Error:
                pass
        procs.wait_for(lambda: not any(map(_alive, found)), 5, interval=0.05)
    return sorted(pids)


def _alive(proc: psutil.Process) -> bool:
    """Still running: a process that exited but that its parent (the other kernel)
    has not reaped yet is a zombie, as good as gone."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _parent_pid(proc: psutil.Process) -> int | None:
    try:
        return proc.ppid()
    except psutil.Error:
        return None


def record_owner(number: int, url: str) -> str:
    """Make this process the chapter's owner (in its emptied database) and mark
    everything it starts from now on with a new token."""
    global _owned, _client
    token = uuid.uuid4().hex
    record = {"token": token, "pid": os.getpid(), "host": socket.gethostname(),
              "session": os.environ.get(procs.SESSION_VARIABLE, "")}
    _client = _redis(url)
    _client.set(OWNER_KEY, json.dumps(record))
    _owned = {"number": number, "url": url, "token": token}
    procs.MARKERS[OWNER_VARIABLE] = token
    _install_cell_check()
    return token


def check_owner() -> None:
    """Raise ChapterMoved if the chapter this process prepared is now another
    kernel's. Quiet when no chapter is prepared here, or when the broker does not
    answer (the cell's own code then says what is wrong with the broker)."""
    if _owned is None or _client is None:
        return
    try:
        raw = _client.get(OWNER_KEY)
    except redis.RedisError:
        return
    try:
        owner = json.loads(raw) if raw else {}
    except ValueError:
        owner = {}
    if owner.get("token") == _owned["token"]:
        return
    number = _owned["number"]
    if not owner:
        # Emptied by someone else (a FLUSHDB), not prepared again: nothing to say.
        return
    where = f"process {owner.get('pid')}"
    if owner.get("host") != socket.gethostname():
        where += f" on {owner.get('host')}"
    raise ChapterMoved(
        f"chapter {number:02d} was prepared again in another kernel ({where}) and runs there now; "
        f"what this kernel started for it was stopped. To take it back, run this notebook's 准备 cell again.")


def forget_owner() -> None:
    """This process gives the chapter up (its processes were stopped)."""
    global _owned, _client
    _owned = None
    _client = None
    procs.MARKERS.pop(OWNER_VARIABLE, None)


def _check_before_cell(lines: list[str]) -> list[str]:
    # The 准备 cell itself takes the chapter back: it is the one cell that runs.
    if not any("prepare_chapter(" in line for line in lines):
        check_owner()
    return lines


def _install_cell_check() -> None:
    """In an IPython kernel: check ownership before every cell (once installed)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    transformers = shell.input_transformers_post
    if _check_before_cell not in transformers:
        transformers.append(_check_before_cell)
