"""Change a notebook on disk safely while others work on the same notebooks.

    from tests.nbedit import editing
    with editing("notebooks/05_django_integration.ipynb") as nb:
        nb.cells[24].source = ...

Every writer of a notebook (an edit script, ``tests.execute_notebooks``) takes
the notebook's lock for its read-modify-write, so two never overwrite each
other's changes; a re-execution, which takes minutes, merges only its outputs
into the notebook as it is on disk when it ends (tests/execute_notebooks.py).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat


@contextmanager
def locked(path: Path | str) -> Iterator[None]:
    """Hold the notebook's lock (a ``.NAME.lock`` file beside it, git-ignored)."""
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def editing(path: Path | str) -> Iterator[nbformat.NotebookNode]:
    """Read the notebook under its lock, yield it for changes, write it back."""
    with locked(path):
        nb = nbformat.read(path, as_version=4)
        yield nb
        nbformat.write(nb, path)
