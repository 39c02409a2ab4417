"""Run notebooks the way a learner does in `make lab`: kernels created by the
running JupyterLab server (its REST API), cells executed over the kernel's own
channels, outputs compared with the committed ones through the same sanitizer
as nbval's. The kernel's environment and working directory are exactly those
a learner's kernel gets."""

from __future__ import annotations

import json
import queue
import re
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client import BlockingKernelClient

from launcher import sanitize
from tests.helpers import REPO_ROOT, LabSession

CELL_TIMEOUT = 180


@dataclass
class Mismatch:
    notebook: str
    cell: int          # the code cell's number, 1-based (its execution count in the committed notebook)
    what: str

    def __str__(self) -> str:
        return f"{self.notebook} cell {self.cell}: {self.what}"


def _api(lab: LabSession, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{lab.base}{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read()
    return json.loads(text) if text else {}


def execute_on(client, source: str, timeout: float = CELL_TIMEOUT) -> list[dict]:
    """Execute one cell on a kernel client and return its outputs (nbformat output dicts)."""
    msg_id = client.execute(source, allow_stdin=False, stop_on_error=False)
    outputs: list[dict] = []
    while True:
        msg = client.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            return outputs
        if kind == "stream":
            outputs.append({"output_type": "stream", "name": content["name"], "text": content["text"]})
        elif kind in ("execute_result", "display_data"):
            outputs.append({"output_type": kind, "data": content["data"]})
        elif kind == "error":
            outputs.append({"output_type": "error", "ename": content["ename"], "evalue": content["evalue"],
                            "traceback": content["traceback"]})


def text_of(outputs: list[dict]) -> str:
    """What a learner reads in a cell's outputs: streams, plain text and errors, joined."""
    parts = []
    for out in outputs:
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif "text/plain" in out.get("data", {}):
            parts.append(out["data"]["text/plain"])
        elif out["output_type"] == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
    return "".join(parts)


def _comparable(outputs: list[dict]) -> list[tuple[str, str]]:
    """What nbval compares, sanitized: stream text per stream (merged), text/plain, errors."""
    found: list[list[str]] = []  # [key, text]; a stream's pieces are merged at its first place
    for out in outputs:
        kind = out["output_type"]
        if kind == "stream":
            earlier = next((item for item in found if item[0] == out["name"]), None)
            if earlier is None:
                found.append([out["name"], out["text"]])
            else:
                earlier[1] += out["text"]
        elif kind in ("execute_result", "display_data") and "text/plain" in out.get("data", {}):
            found.append(["text/plain", out["data"]["text/plain"]])
        elif kind == "error":
            found.append(["error", f"{out['ename']}: {out['evalue']}"])
    return [(key, sanitize(text)) for key, text in found]


@dataclass
class NotebookKernel:
    """One notebook's kernel in the lab: started like JupyterLab starts it (a session)."""

    lab: LabSession
    path: Path
    #: A second kernel for the same notebook, as a console opened beside it: its session's name.
    session_path: str | None = None
    kernel_id: str = ""
    client: BlockingKernelClient | None = field(default=None, repr=False)
    #: Every address the last Run All printed (http://127.0.0.1:PORT...), as a learner would open them.
    printed_urls: set[str] = field(default_factory=set)

    def start(self) -> NotebookKernel:
        relative = self.path.relative_to(REPO_ROOT).as_posix()
        if self.session_path is None:
            body = {"path": relative, "type": "notebook", "name": self.path.name}
        else:  # a console in the notebook's folder: the same working directory
            body = {"path": f"{self.path.parent.name}/{self.session_path}", "type": "console",
                    "name": self.session_path}
        session = _api(self.lab, "POST", "/api/sessions", {**body, "kernel": {"name": "python3"}})
        self.kernel_id = session["kernel"]["id"]
        self._connect()
        return self

    def _connect(self, timeout: float = 120) -> None:
        """Connect to the kernel's channels and wait until it answers on them.

        Not jupyter_client's wait_for_ready(): its heartbeat check calls a kernel
        that is slow to start on a busy machine dead. Ready here means a
        kernel_info request was answered on the shell channel *and* its status
        messages arrived on iopub (so no output of the first cell can be missed)."""
        if self.client is not None:
            self.client.stop_channels()
        runtime = self.lab.folder / "jupyter-runtime"
        self.client = BlockingKernelClient(connection_file=str(runtime / f"kernel-{self.kernel_id}.json"))
        self.client.load_connection_file()
        self.client.start_channels(hb=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg_id = self.client.kernel_info()
            try:
                while True:
                    msg = self.client.get_iopub_msg(timeout=2)
                    if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                            and msg["content"]["execution_state"] == "idle"):
                        return
            except queue.Empty:
                continue  # not answered yet (or iopub not joined yet): ask again
        raise TimeoutError(f"the kernel of {self.path.name} did not answer within {timeout:g} s")

    def restart(self) -> None:
        """Kernel → Restart Kernel: the old kernel exits (and stops what it started)."""
        _api(self.lab, "POST", f"/api/kernels/{self.kernel_id}/restart")
        self._connect()

    def run_all(self) -> list[Mismatch]:
        """Run every code cell in order; compare with the committed outputs."""
        nb = nbformat.read(self.path, as_version=4)
        problems = []
        self.printed_urls = set()
        for number, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
            try:
                outputs = self.execute(cell.source)
            except queue.Empty:
                problems.append(Mismatch(self.path.name, number, f"no reply within {CELL_TIMEOUT} s; the cell "
                                                                 f"begins {cell.source[:200]!r}"))
                break
            for out in outputs:
                text = out.get("text", "") + out.get("data", {}).get("text/plain", "")
                self.printed_urls |= set(re.findall(r"http://127\.0\.0\.1:\d+[^\s'\"|]*", text))
            tagged = "raises-exception" in cell.metadata.get("tags", [])
            errors = [o for o in outputs if o["output_type"] == "error"]
            if errors and not tagged:
                first = (errors[0]["traceback"] or [errors[0]["evalue"]])[-1]
                problems.append(Mismatch(self.path.name, number, f"untagged error: {sanitize(first)[:300]}"))
                break  # as in Run All, the rest would only fail after it
            if tagged and not errors:
                problems.append(Mismatch(self.path.name, number, "raised nothing (tagged raises-exception)"))
            if "NBVAL_IGNORE_OUTPUT" in cell.source:
                continue
            got, expected = _comparable(outputs), _comparable(cell.outputs)
            if got != expected:
                diff = next(((g, e) for g, e in zip(got, expected, strict=False) if g != e), (got, expected))
                problems.append(Mismatch(self.path.name, number, f"output differs: got {diff[0]!r}, "
                                                                 f"committed {diff[1]!r}"))
        return problems

    def execute(self, source: str) -> list[dict]:
        """Execute one cell and return its outputs (as nbformat output dicts)."""
        assert self.client is not None
        return execute_on(self.client, source)

    def close(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
