"""`make lab`'s program: broker + JupyterLab up, then Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import urllib.request

import launcher
from tests.helpers import alive, descendants, start_lab


def test_lab_serves_the_course_and_stops_everything_on_ctrl_c(tmp_path):
    lab = start_lab(tmp_path)
    try:
        output = lab.output()
        assert "embedded Valkey started by the course" in output, output
        assert "Django: database migrated" in output, output
        assert (tmp_path / "db.sqlite3").is_file()
        # It opens at chapter 01; its root is the repository, so ../pictures/ resolves.
        assert "/lab/tree/notebooks/01_what_is_celery.ipynb?token=" in lab.url
        listing = json.load(urllib.request.urlopen(f"{lab.base}/api/contents/notebooks?token={lab.token}",
                                                   timeout=10))
        assert {"01_what_is_celery.ipynb", "03_first_task.ipynb"} <= {item["name"] for item in listing["content"]}
        picture = urllib.request.urlopen(f"{lab.base}/files/pictures/celery_architecture.png?token={lab.token}",
                                         timeout=10)
        assert picture.status == 200 and picture.headers["Content-Type"] == "image/png"
        assert launcher.ping(lab.broker_url)
        children = descendants(lab.process.pid)
        assert children, "lab started no processes?"

        assert lab.stop() == 0  # Ctrl-C
        assert "Stopped." in lab.output()
        assert launcher.wait_for(lambda: not any(alive(p) for p in children), 10), \
            f"left running: {[p for p in children if alive(p)]}"
        assert not launcher.ping(lab.broker_url)
    finally:
        lab.process.kill()
