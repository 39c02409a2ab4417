"""Execute notebooks top to bottom and save their outputs, the way nbval re-runs them.

    python -m tests.execute_notebooks notebooks/*.ipynb     (or: make notebooks)

Each notebook gets what it gets under test (tests/notebook_env.py): a fresh
broker and database; it runs with notebooks/ as its working directory.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.nbedit import editing
from tests.notebook_env import notebook_environment


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    with notebook_environment():
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    _save_outputs(nb, path)
    return time.perf_counter() - started


def _save_outputs(executed: nbformat.NotebookNode, path: Path) -> None:
    """Put the outputs into the notebook as it is on disk now: prose changed while
    it ran is kept; a changed code cell makes the run stale (run it again)."""
    with editing(path) as nb:
        ran = [c for c in executed.cells if c.cell_type == "code"]
        now = [c for c in nb.cells if c.cell_type == "code"]
        if [c.source for c in ran] != [c.source for c in now]:
            raise RuntimeError(f"{path}: its code cells changed while it ran; execute it again")
        for old, new in zip(ran, now, strict=True):
            new.outputs, new.execution_count = old.outputs, old.execution_count


def main(paths: list[str]) -> int:
    for p in paths:
        seconds = execute(Path(p))
        print(f"{p}: executed in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
