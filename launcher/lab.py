"""`make lab`: make sure a broker is up, then serve JupyterLab on notebooks/.

Ctrl-C or SIGTERM stops JupyterLab (which shuts its kernels down, and each
kernel stops the workers it started) and then the broker, if we started it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from .broker import BrokerError, ensure_broker
from .procs import Proc, stop_all

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    try:
        # LAB_BROKER_PORT exists for the tests, which never touch 6379.
        broker = ensure_broker(port=int(os.environ.get("LAB_BROKER_PORT", "6379")))
    except BrokerError as exc:
        print(f"make lab: {exc}", file=sys.stderr)
        return 2
    print(f"Broker: {broker.describe()}")
    if broker.source == "reused":
        print("  (port 6379 already answered PING, so the course uses that server and will not stop it)")
    # Kernels, and the workers they start, find the broker through REDIS_URL.
    os.environ["REDIS_URL"] = broker.url
    # `!python ...` and `!celery ...` in notebooks must find this venv's programs.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

    port = os.environ.get("LAB_PORT", "8888")
    argv = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", f"--ServerApp.root_dir={ROOT / 'notebooks'}"]
    if os.geteuid() == 0:  # containers and CI machines often run as root
        argv.append("--allow-root")
    lab = Proc("jupyterlab", argv, cwd=ROOT / "notebooks")

    def stop(signum, frame):
        raise KeyboardInterrupt

    # Explicitly: a shell may start us with SIGINT ignored (e.g. `make lab &`).
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        url = None
        while lab.running() and url is None:
            for line in lab.log().splitlines():
                if "http://127.0.0.1:" in line and "token=" in line:
                    url = line[line.index("http://"):].strip()
                    break
            time.sleep(0.1)
        if url is None:
            print(f"JupyterLab exited. Its log:\n{lab.tail(30, raw=True)}", file=sys.stderr)
            return 1
        print(f"JupyterLab: {url}")
        print("In a second terminal (with .venv activated): celery -A demo_tasks.tasks worker --loglevel=info")
        print("Press Ctrl-C to stop JupyterLab and the broker.")
        while lab.running():
            time.sleep(0.5)
        print(f"JupyterLab exited. Its log:\n{lab.tail(30, raw=True)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping JupyterLab and the broker ...")
        return 0
    finally:
        # SIGTERM lets JupyterLab shut its kernels down cleanly; then the broker.
        lab.stop(timeout=20)
        stop_all()
        print("Stopped.")


if __name__ == "__main__":
    sys.exit(main())
