"""Scratch folders: where a chapter keeps what it makes (its SQLite database,
media, beat's schedule file), inside the repository, so that a learner finds
them in JupyterLab's file browser and every path the course shows is relative
to the repository: ``.scratch/chapter05-k3j2x9ab/db.sqlite3``.

Each folder is made new (a random suffix: two kernels of one chapter, or a
test beside a running `make lab`, never share one) and holds an owner file
(``.owner``: the pid and the session of the process that made it). It is
removed when its owner stops what the chapter started; folders whose owner
died without doing so (a killed kernel) are removed by the next ones made.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import psutil

from .paths import REPO_ROOT

SCRATCH_ROOT = REPO_ROOT / ".scratch"
OWNER_FILE = ".owner"
_current: Path | None = None


def make_scratch(prefix: str) -> Path:
    """A new, empty folder ``.scratch/PREFIXxxxxxxxx`` owned by this process, now the current one."""
    global _current
    remove_orphans()
    SCRATCH_ROOT.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH_ROOT))
    owner = {"pid": os.getpid(), "session": os.environ.get("CELERY_COURSE_SESSION", "")}
    (folder / OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")
    _current = folder
    return folder


def current_scratch() -> Path | None:
    """The scratch folder this process made last (None outside a chapter, or once it is removed)."""
    return _current if _current is not None and _current.is_dir() else None


def remove_scratch(folder: Path) -> None:
    global _current
    shutil.rmtree(folder, ignore_errors=True)
    if _current == folder:
        _current = None


def _owner(folder: Path) -> dict:
    try:
        return json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def remove_orphans(session: str | None = None) -> list[Path]:
    """Remove the scratch folders whose owner is gone, and (``session``) those of a
    session that is ending. Returns what was removed."""
    removed = []
    for folder in sorted(SCRATCH_ROOT.glob("*")) if SCRATCH_ROOT.is_dir() else []:
        if not folder.is_dir():
            continue
        owner = _owner(folder)
        pid = owner.get("pid")
        dead = not isinstance(pid, int) or not psutil.pid_exists(pid)
        if dead or (session and owner.get("session") == session):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
