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

from tests.notebook_env import notebook_environment


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    with notebook_environment():
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(nb, path)
    return time.perf_counter() - started


def main(paths: list[str]) -> int:
    for p in paths:
        seconds = execute(Path(p))
        print(f"{p}: executed in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
