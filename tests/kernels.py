"""A notebook kernel started here (jupyter_client), as JupyterLab starts one:
the working directory is notebooks/, the environment this process's (under
tests.notebook_env, what `make lab` gives a kernel). For tests and tools that
need a live kernel without a JupyterLab server (tests.exercise_matrix)."""

from __future__ import annotations

from dataclasses import dataclass, field

from jupyter_client import KernelManager

from tests.helpers import NOTEBOOKS
from tests.learner import execute_on, text_of


@dataclass
class LocalKernel:
    manager: KernelManager = field(default_factory=lambda: KernelManager(kernel_name="python3"))

    def start(self, timeout: float = 120) -> LocalKernel:
        self.manager.start_kernel(cwd=str(NOTEBOOKS[0].parent))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=timeout)
        return self

    def execute(self, source: str, timeout: float = 180) -> list[dict]:
        return execute_on(self.client, source, timeout)

    def run(self, source: str, timeout: float = 180) -> str:
        """Execute a cell; what it printed (an error as ``Name: message``)."""
        return text_of(self.execute(source, timeout))

    def shutdown(self) -> None:
        """Shut the kernel down the way JupyterLab does: it exits and stops what it started."""
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=False)

    def __enter__(self) -> LocalKernel:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()
