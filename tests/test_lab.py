"""`make lab`'s program: broker + JupyterLab up, then Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import re
import urllib.request

import launcher
from launcher import credentials
from tests.helpers import alive, descendants, start_lab

#: Run by `manage.py shell -c`: does the local user log in with the generated password?
CAN_LOG_IN = ("import os; from django.contrib.auth import authenticate; "
              "print(authenticate(username=os.environ['COURSE_ADMIN_USER'], "
              "password=os.environ['COURSE_ADMIN_PASSWORD']) is not None)")


def test_lab_serves_the_course_and_stops_everything_on_ctrl_c(tmp_path):
    lab = start_lab(tmp_path, secrets=credentials.secrets_dir())  # the test run's passwords, never a learner's
    try:
        output = lab.output()
        assert "embedded Valkey started by the course" in output, output
        assert "Django: database migrated" in output, output
        assert (tmp_path / "db.sqlite3").is_file()
        # The passwords of this installation, printed once (as Jupyter prints its token).
        flower_password, admin_password = credentials.flower_auth()[1], credentials.admin_auth()[1]
        assert output.count(flower_password) == 1 and output.count(admin_password) == 1, output
        assert f"(from {credentials.where(credentials.ADMIN_FILE)})" in output, output
        assert not re.search(r"(?<![\w-])celery-course(?![\w-])", output)  # the old published password
        login = launcher.manage("shell", "--verbosity=0", "-c", CAN_LOG_IN,
                                env={**credentials.local_django_env(),
                                     "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"})
        assert login.stdout.strip() == "True"
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
