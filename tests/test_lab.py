"""`make lab`'s program: broker + JupyterLab up, then Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import launcher


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        out = subprocess.run(["pgrep", "-P", str(todo.pop())], capture_output=True, text=True).stdout
        for child in map(int, out.split()):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_lab_serves_the_notebooks_and_stops_everything_on_ctrl_c(tmp_path):
    env = dict(os.environ, LAB_PORT=str(launcher.free_port()),
               LAB_BROKER_PORT=str(launcher.free_port()),
               DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    env.pop("REDIS_URL", None)
    with open(tmp_path / "lab.log", "w") as log:  # the child writes to its own copy of the file
        lab = subprocess.Popen([sys.executable, "-m", "launcher.lab"], stdout=log, stderr=subprocess.STDOUT,
                               env=env, text=True)
    try:
        assert launcher.wait_for(lambda: "JupyterLab: http" in (tmp_path / "lab.log").read_text()
                                 or lab.poll() is not None, 60), "JupyterLab did not start in 60 s"
        output = (tmp_path / "lab.log").read_text()
        assert "embedded Valkey started by the course" in output, output
        assert "Django: database migrated" in output, output
        assert (tmp_path / "db.sqlite3").is_file()
        url = next(line for line in output.splitlines() if line.startswith("JupyterLab: ")).split(" ", 1)[1]
        base, token = url.split("/lab?token=")
        listing = json.load(urllib.request.urlopen(f"{base}/api/contents?token={token}", timeout=10))
        names = {item["name"] for item in listing["content"]}
        assert {"01_what_is_celery.ipynb", "03_first_task.ipynb"} <= names
        broker_url = f"redis://127.0.0.1:{env['LAB_BROKER_PORT']}/0"
        assert launcher.ping(broker_url)
        children = descendants(lab.pid)
        assert children, "lab started no processes?"

        lab.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert lab.wait(30) == 0
        assert "Stopped." in (tmp_path / "lab.log").read_text()
        assert launcher.wait_for(lambda: not any(alive(p) for p in children), 10), \
            f"left running: {[p for p in children if alive(p)]}"
        assert not launcher.ping(broker_url)
    finally:
        if lab.poll() is None:
            lab.kill()
