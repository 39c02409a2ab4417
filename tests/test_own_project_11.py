"""Chapter 11: examples/testing/'s pytest.ini and conftest.py in a learner's OWN project.

examples/testing/README.md («用到你自己的项目里») tells a learner how to use the folder's
pytest.ini and conftest.py in their own Django project. Here they are: a fresh
``django-admin startproject proj`` + ``startapp shop`` with Celery added as Celery's own
examples/django (and chapter 05) add it, the two files copied beside manage.py and changed
exactly as the README says and nothing more (each change a text substitution that must
match once, inside conftest.py's block "Change these for your project", and the value it
puts in must be the one the README shows: the test fails when the files or the README
drift apart; the project's settings.py is not touched), and three tests of the learner's,
one of each kind the README's table names -- ``unit`` (a plain call), ``worker`` (the
plugin's ``celery_worker`` thread) and ``integration`` (conftest's ``real_worker``, a real
``celery -A proj worker`` process that reads a row the test committed to the test
database file, and whose own messages -- a task sent from inside a task -- go to the
run's queue, not "celery"). ``python -m pytest`` runs them in a fresh process, with a
learner's environment and a broker of this test run; its JUnit XML says how each ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import pytest

from instruments.pytest_report import read_junit
from launcher.shown import without_settings
from tests.helpers import REPO_ROOT, WorkerWatch
from tests.notebook_env import is_developer_setting

EXAMPLES = REPO_ROOT / "examples" / "testing"
README = EXAMPLES / "README.md"
#: Seconds for startproject, startapp, makemigrations (each) and for the whole pytest run
#: (Django's test database, a worker thread, a worker process started and stopped warm).
COMMAND_TIMEOUT = 60.0
RUN_TIMEOUT = 120.0
#: The broker's database for this test (test_examples_testing.py uses 11 of the same broker).
BROKER_DB = 12

#: The README's instructions, word for word: what the substitutions below carry out.
README_STEPS = (
    "1. 把 `pytest.ini` 和 `conftest.py` 复制到你的项目里 `manage.py` 的旁边（需要的话连同测试文件）。",
    "2. `pytest.ini`：`DJANGO_SETTINGS_MODULE = 你的项目.settings`，`pythonpath = .`（`manage.py` 所在的文件夹）。",
    "3. `conftest.py`：只改开头标着 “Change these for your project” 的那一段：",
    "   - `PROJECT = \"你的项目\"`（`celery -A 你的项目` 里的名字）；",
    "   - `PROJECT_DIR = HERE`（`manage.py` 所在的文件夹，也就是 `conftest.py` 所在的文件夹）；",
    "   - `project_app()` 里的导入：`from 你的项目.celery import app`；",
    "   - `WORKER_INCLUDES = ()`（这里的 `anti_patterns` 是这个文件夹自己的，不属于项目）；",
    "   - `WORKER_ENV = {}`，或者你的项目要交给 worker 进程的环境变量"
    "（这里的 `REPORT_STEP_SECONDS` 是 `django_demo` 的）。",
    "4. `settings.py` 不用改：",
)
#: The project's name in the README's steps, and in this test.
YOURS, PROJ = "你的项目", "proj"
#: Step 2, for the learner's project (manage.py beside pytest.ini).
PYTEST_INI_CHANGES = (
    ("DJANGO_SETTINGS_MODULE = django_demo.settings\n", "DJANGO_SETTINGS_MODULE = proj.settings\n"),
    ("pythonpath = ../../django_demo .\n", "pythonpath = .\n"),
)
#: Step 3: the five names of conftest.py's marked block.
CONFTEST_CHANGES = (
    ('PROJECT = "django_demo"\n', 'PROJECT = "proj"\n'),
    ('PROJECT_DIR = (HERE / ".." / ".." / "django_demo").resolve()\n', "PROJECT_DIR = HERE\n"),
    ("    from django_demo.celery import app\n", "    from proj.celery import app\n"),
    ('WORKER_INCLUDES = ("anti_patterns",)\n', "WORKER_INCLUDES = ()\n"),
    ('WORKER_ENV = {"REPORT_STEP_SECONDS": "0.05"}\n', "WORKER_ENV = {}\n"),
)
#: conftest.py's marked block: where every change of step 3 must be.
BLOCK = ("# ======== Change these for your project", "# ======== (nothing below needs a change)")

# --- the learner's project, before the copy -----------------------------------------------

#: As Celery's examples/django/proj/celery.py (and chapter 05's step 1).
CELERY_PY = '''import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
'''
INIT_PY = '''from .celery import app as celery_app

__all__ = ("celery_app",)
'''
#: Added to startproject's settings.py: chapter 05's steps 3 and 4 (the app is shop here). The
#: SQLite OPTIONS are there because a learner of the course has them; the three tests pass without.
SETTINGS = '''
import os

INSTALLED_APPS += ["django_celery_results", "shop"]

CELERY_BROKER_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = "django-db"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = CELERY_RESULT_SERIALIZER = "json"

DATABASES["default"]["OPTIONS"] = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
'''
MODELS_PY = '''from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=100)
'''
TASKS_PY = '''from celery import shared_task

from .models import Product


@shared_task
def add(x, y):
    return x + y


@shared_task
def product_name(product_id):
    return Product.objects.get(pk=product_id).name


@shared_task(bind=True)
def queue_of_this_task(self):
    return self.request.delivery_info["routing_key"]


@shared_task
def send_queue_of_this_task():
    """A task that sends a task (as a retry or a chord's callback does): returns its id."""
    return queue_of_this_task.delay().id
'''
#: The learner's tests: one of each kind (the marker names it).
TEST_TASKS_PY = '''import pytest

from celery.result import AsyncResult

from proj.celery import app
from shop.models import Product
from shop.tasks import add, product_name, send_queue_of_this_task


@pytest.mark.unit
def test_add_in_this_process():
    assert add(2, 3) == 5


@pytest.mark.worker
def test_add_on_the_worker_thread(celery_worker):
    assert add.delay(2, 3).get(timeout=20) == 5


@pytest.mark.integration
def test_the_worker_process_reads_a_committed_row(real_worker):
    product = Product.objects.create(name="teapot")
    result = product_name.delay(product.pk)
    assert result.get(timeout=30) == "teapot"
    real_worker.wait_for_log(f"Task shop.tasks.product_name[{result.id}] succeeded")
    # A task sent from inside the worker process goes to this run's queue (real_worker's
    # default queue here), which the worker consumes: not to "celery", where nobody does.
    sent = AsyncResult(send_queue_of_this_task.delay().get(timeout=30))
    assert app.conf.task_default_queue != "celery"
    assert sent.get(timeout=20) == app.conf.task_default_queue
'''
#: Their node ids (the copied conftest.py refuses a test without exactly one kind marker).
TESTS = tuple(f"shop/test_tasks.py::{name}" for name in (
    "test_add_in_this_process", "test_add_on_the_worker_thread", "test_the_worker_process_reads_a_committed_row"))


def substituted(text: str, changes: Sequence[tuple[str, str]], name: str) -> str:
    """``text`` with each (old, new) of ``changes`` made; each ``old`` must be there exactly once."""
    for old, new in changes:
        assert text.count(old) == 1, (f"{name}: {old!r} is there {text.count(old)} times, not once: "
                                      "did the file change? Keep README.md's steps and this test in step.")
        text = text.replace(old, new)
    return text


def learner_env(redis_url: str) -> dict[str, str]:
    """A learner's fresh terminal: none of the course's or a developer's settings, nothing of
    this pytest run's (PYTEST_XDIST_WORKER, ...), REDIS_URL naming the broker."""
    env = {k: v for k, v in without_settings(os.environ).items()
           if not is_developer_setting(k) and not k.startswith("PYTEST_")}
    return {**env, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}


def run(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"`{' '.join(argv)}` failed ({done.returncode}):\n{done.stdout}{done.stderr}"


def make_project(folder: Path, env: dict[str, str]) -> Path:
    """startproject proj + startapp shop + Celery, a model and two tasks; returns the folder of manage.py."""
    admin = Path(sys.executable).parent / "django-admin"          # the .venv's, as a learner types it
    run([*([str(admin)] if admin.is_file() else [sys.executable, "-m", "django"]), "startproject", "proj"],
        folder, env)
    root = folder / "proj"
    run([sys.executable, "manage.py", "startapp", "shop"], root, env)
    (root / "proj" / "celery.py").write_text(CELERY_PY, encoding="utf-8")
    (root / "proj" / "__init__.py").write_text(INIT_PY, encoding="utf-8")
    settings = root / "proj" / "settings.py"
    settings.write_text(settings.read_text(encoding="utf-8") + SETTINGS, encoding="utf-8")
    (root / "shop" / "models.py").write_text(MODELS_PY, encoding="utf-8")
    (root / "shop" / "tasks.py").write_text(TASKS_PY, encoding="utf-8")
    run([sys.executable, "manage.py", "makemigrations", "shop", "--verbosity=0"], root, env)
    (root / "shop" / "test_tasks.py").write_text(TEST_TASKS_PY, encoding="utf-8")
    return root


def copy_as_the_readme_says(root: Path) -> None:
    """examples/testing/pytest.ini and conftest.py beside manage.py, changed as README.md's steps
    say: the values put in are the README's (with proj for 你的项目), the conftest.py changes all
    inside its marked block. Nothing else: the project's settings.py stays as it was."""
    readme = README.read_text(encoding="utf-8")
    for step in README_STEPS:
        assert step in readme, f"README.md no longer says {step!r}: keep this test's changes in step with it"
    for _, new in PYTEST_INI_CHANGES + CONFTEST_CHANGES:
        shown_in_readme = f"`{new.strip().replace(PROJ, YOURS)}`"
        assert shown_in_readme in readme, f"README.md does not show {shown_in_readme}: keep them in step"
    ini = (EXAMPLES / "pytest.ini").read_text(encoding="utf-8")
    (root / "pytest.ini").write_text(substituted(ini, PYTEST_INI_CHANGES, "pytest.ini"), encoding="utf-8")
    conftest = (EXAMPLES / "conftest.py").read_text(encoding="utf-8")
    assert all(conftest.count(marker) == 1 for marker in BLOCK), f"conftest.py's block markers changed: {BLOCK}"
    block = conftest[conftest.index(BLOCK[0]):conftest.index(BLOCK[1])]
    for old, _ in CONFTEST_CHANGES:
        assert old in block, f"conftest.py: {old!r} is not in the block the README says to change"
    (root / "conftest.py").write_text(substituted(conftest, CONFTEST_CHANGES, "conftest.py"), encoding="utf-8")


@pytest.fixture(scope="module")
def own_run(broker, tmp_path_factory):
    """The project made, the files copied and changed, `python -m pytest` run in it to the end."""
    folder = tmp_path_factory.mktemp("own-project-11")
    redis_url = urlunsplit(urlsplit(broker.url)._replace(path=f"/{BROKER_DB}"))
    env = learner_env(redis_url)
    started = time.monotonic()
    root = make_project(folder, env)
    copy_as_the_readme_says(root)
    made = time.monotonic() - started
    report, log = folder / "report.xml", folder / "output.txt"
    argv = [sys.executable, "-m", "pytest", f"--junitxml={report}", f"--basetemp={folder / 'basetemp'}",
            "-p", "no:cacheprovider"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    watch = WorkerWatch(proc.pid)
    try:
        try:
            proc.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`python -m pytest` in the project did not finish within {RUN_TIMEOUT:g} s:\n"
                        f"{log.read_text(errors='replace')[-4000:]}")
        watch.stop()
        yield {"root": root, "redis_url": redis_url, "code": proc.returncode, "report": report, "watch": watch,
               "output": log.read_text(errors="replace"), "made": made, "seconds": time.monotonic() - started}
    finally:
        if proc.poll() is None:          # what Ctrl+C does (the fixtures stop their worker), then a kill
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        watch.stop()
        for left in watch.left_over():
            left.kill()


def outcomes(report: Path) -> dict[str, str]:
    """nodeid -> passed/failed/error/skipped/..., from pytest's JUnit XML."""
    return {case.nodeid: case.outcome for case in read_junit(report)}


def test_the_readme_steps_make_the_three_kinds_of_test_pass_in_a_fresh_project(own_run):
    output = own_run["output"]
    assert own_run["code"] == 0, output[-6000:]
    assert outcomes(own_run["report"]) == dict.fromkeys(TESTS, "passed"), output[-6000:]
    assert "3 passed" in output, output[-3000:]
    # The copied conftest's header: the project's own app, on the broker REDIS_URL named.
    assert f"celery: broker {own_run['redis_url']} (REDIS_URL)" in output, output[:3000]


def test_the_worker_process_was_the_projects_and_is_gone(own_run):
    watch = own_run["watch"]
    mains = [cmd for _, cmd in watch.seen.values() if "--hostname" in cmd]
    assert mains, f"no `celery worker` process seen below the project's pytest:\n{own_run['output'][-3000:]}"
    # `celery -A proj worker`, started in the project's folder (PROJECT and PROJECT_DIR changed).
    assert mains[0][mains[0].index("-A") + 1] == "proj", mains[0]
    assert "anti_patterns" not in mains[0], mains[0]
    run_marker = mains[0][mains[0].index("--hostname") + 1].split("@")[0]      # examples-xxxxxxxx
    assert run_marker.startswith("examples-"), mains[0]
    assert watch.left_over() == []
    stray = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        if run_marker in " ".join(proc.info["cmdline"] or []) or proc.info["cwd"] == str(own_run["root"]):
            stray.append(proc.pid)
    assert stray == []
