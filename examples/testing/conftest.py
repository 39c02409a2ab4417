"""Fixtures for testing a Django project's Celery tasks (chapter 11).

To use them in your own project, copy this file and pytest.ini beside your
manage.py and change: ``DJANGO_SETTINGS_MODULE`` and ``pythonpath`` in pytest.ini,
and the block "Change these for your project" below (PROJECT, PROJECT_DIR, the import
in project_app(), WORKER_INCLUDES, WORKER_ENV). Your settings.py needs no change: the
worker process gets the test database, media folder and queue through a settings
module of its own (see worker_process).

What the tests get:

- ``celery_app``       YOUR project's Celery app (not a test app), with this run's
                       own queues; what a test changes is put back after it.
- ``celery_worker``    (Celery's own plugin) a real worker in a thread of this process.
- ``worker_process``   a real ``celery -A PROJECT worker`` process that uses the
                       test database file; ``real_worker``: the same, for one test.
- ``eager_mode``       task_always_eager on for one test, and off again after it.
- ``broker_url``       the broker REDIS_URL names, checked first: if it does not answer
                       within about 2 s, every test that needs it fails at once, saying
                       what to do. The ``unit`` tests never ask for it.

The plugin's session-wide celery_session_app/celery_session_worker are switched off
(see celery_session_app below).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from celery import Task
from kombu import Exchange, Queue

# Celery's pytest plugin (fixtures celery_app, celery_worker, celery_config, ...). Celery
# does not register it with pytest (celery 5.x has no "pytest11" entry point: see its
# dist-info/entry_points.txt), so it is off until a test suite asks for it, here. Only a
# top-level conftest.py may say this -- one reason pytest.ini makes this folder the rootdir.
pytest_plugins = ("celery.contrib.pytest",)

HERE = Path(__file__).resolve().parent

# ======== Change these for your project (README.md, «用到你自己的项目里») ========
#: What `celery -A ...` is given: the package that holds the project's Celery app.
PROJECT = "django_demo"
#: The Django project: the folder of manage.py (also in pytest.ini's pythonpath).
#: Yours, with this file beside manage.py: HERE.
PROJECT_DIR = (HERE / ".." / ".." / "django_demo").resolve()


def project_app():
    """The project's Celery app: the one `celery -A PROJECT worker` runs."""
    from django_demo.celery import app

    return app


#: Modules of tasks outside the project that the worker process must import too
#: (`celery worker --include`): here anti_patterns.py of this folder. Yours: ().
WORKER_INCLUDES = ("anti_patterns",)
#: The project's own environment variables for the worker process (on top of this
#: process's environment): here, the report task sleeps this long per row. Yours: {}.
WORKER_ENV = {"REPORT_STEP_SECONDS": "0.05"}
# ======== (nothing below needs a change) ==========================================

#: This run's name. Each queue below carries it, so that no other worker on the same
#: broker (the one in your `make lab` terminal, a chapter's, another test run's) ever
#: takes one of our messages, and we never take theirs: a worker consumes the queues
#: it is told to, and every worker on a broker database that shares a queue name
#: competes for its messages.
RUN = f"examples-{secrets.token_hex(4)}"
#: The default queue while a test uses the worker thread (celery_worker).
THREAD_QUEUE = f"{RUN}-thread"
#: The default queue while a test uses the worker process (real_worker); the process
#: consumes only this one. Two queues, so the thread never takes the process's tasks.
PROCESS_QUEUE = f"{RUN}-process"
#: Where the word counts go (the project routes "wordcounts.tasks.*" to "wordcounts").
WORDCOUNTS_QUEUE = f"{RUN}-wordcounts"
#: A queue no worker of this run consumes (test_eager_mode.py routes a task to it).
NOWHERE_QUEUE = f"{RUN}-nowhere"
#: The worker process's node name (`celery inspect ping -d NAME` answers to it).
WORKER_NODE = f"{RUN}@localhost"

KINDS = ("unit", "worker", "integration", "eager")


# --- every test says what it needs -----------------------------------------------------

def pytest_collection_modifyitems(config, items):
    """Exactly one of the markers unit/worker/integration/eager on every test, so that
    `-m unit` (no broker) really selects every test that can run without one."""
    for item in items:
        kinds = [kind for kind in KINDS if item.get_closest_marker(kind)]
        if len(kinds) != 1:
            raise pytest.UsageError(
                f"{item.nodeid} has the markers {kinds or 'none'}: give every test exactly one of "
                f"{', '.join(KINDS)} (pytest.ini says what each means).")


def pytest_report_header(config):
    return [f"celery: broker {shown(project_app().conf.broker_url)} (REDIS_URL); "
            f"this run's queues: {THREAD_QUEUE}, {PROCESS_QUEUE}, {WORDCOUNTS_QUEUE}"]


def shown(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


# --- the database ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """The test database in a FILE, not in memory (SQLite's test default).

    A worker process cannot see a database that lives in this process's memory; a file
    it can open too (worker_process gives it that file's name in its settings). The
    worker thread (celery_worker) uses connections of its own as well. The file is in
    pytest's temporary folder, one per run (and per pytest-xdist process)."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("database") / "test.sqlite3")


@pytest.fixture(scope="session", autouse=True)
def media_root(tmp_path_factory) -> Iterator[Path]:
    """Report files go to a temporary folder, never into the project's media/ folder.
    (Django's override_settings: put back when the session ends. The worker process
    is given the same folder as MEDIA_ROOT.)"""
    from django.test import override_settings

    folder = tmp_path_factory.mktemp("media")
    with override_settings(MEDIA_ROOT=folder):
        yield folder


# --- the broker ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """The project's broker (settings.CELERY_BROKER_URL, from REDIS_URL), checked once.

    A broker that does not answer makes Celery wait and retry (that is what it should
    do in production): a test would hang, or fail much later with a timeout that does
    not say why. So: one connection attempt of at most 2 s, then every test that asked
    for the broker fails with this message. When the session ends, the keys of this
    run's queues are deleted (messages a test left behind, e.g. in NOWHERE_QUEUE)."""
    app = project_app()
    url = app.conf.broker_url
    started, problem = time.monotonic(), None
    try:
        # The project's own connection settings, with a 2 s limit on connecting AND on the
        # answer: a server that accepts the connection and never answers (not a Redis,
        # a stuck one) would otherwise keep the check waiting for ever.
        with app.connection_for_write(transport_options={"socket_connect_timeout": 2, "socket_timeout": 2}) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
    except Exception as exc:   # kombu's OperationalError, or anything the URL itself causes
        problem = str(exc) or type(exc).__name__
    if problem is not None:    # (outside the except: the message without a chain of tracebacks)
        pytest.fail(
            f"No broker answers at {shown(url)} (tried for {time.monotonic() - started:.1f} s: {problem}). "
            "These tests need one: start Redis (`make lab` starts one; or `docker run -p 6379:6379 redis`), "
            "or set REDIS_URL to a running one, e.g. REDIS_URL=redis://127.0.0.1:6379/11. "
            "Without a broker, run the unit tests only: python -m pytest -m unit", pytrace=False)
    yield url
    delete_run_keys(app)


def delete_run_keys(app) -> None:
    """Delete what this run left on the broker: its queues, and their bindings (Redis only)."""
    if not app.conf.broker_url.startswith(("redis://", "rediss://")):
        return
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        keys = list(client.scan_iter(match=f"*{RUN}*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
def redis_client(broker_url):
    """A redis-py client on the broker's database (to look at queues: LLEN)."""
    with project_app().connection_for_write() as conn:
        yield conn.default_channel.client


# --- the project's Celery app, configured for this run ------------------------------------

def forget_routing_tables(app) -> None:
    """Celery reads most settings each time it needs them, but builds its table of
    queues (and the default queue, its exchange and the router) once, when the first
    message is sent. After queues or routes change, forget those, or the next message
    still goes where the old settings said."""
    for name in ("queues", "default_queue", "default_exchange", "router", "send_task_message"):
        app.amqp.__dict__.pop(name, None)
    app.amqp._rtable = None


#: Settings Celery copies into each task when the app binds it (Task.from_config: e.g.
#: task_store_eager_result -> Task.store_eager_result, task_track_started, task_time_limit,
#: task_acks_late): changing app.conf afterwards changes no task -- so configured() sets
#: them on the tasks too. (In settings.py, read before the tasks are bound, they just work.)
COPIED_INTO_TASKS = {setting: attribute for attribute, setting in Task.from_config}
_MISSING = object()


@contextmanager
def configured(app, **changes):
    """Celery settings ``changes`` on ``app`` while the block runs; then what was there before."""
    before = {key: app.conf[key] for key in changes}
    app.conf.update(changes)
    forget_routing_tables(app)
    patched = []
    for setting, value in changes.items():
        attribute = COPIED_INTO_TASKS.get(setting)
        for task in app.tasks.values() if attribute else ():
            # Only tasks that took the app's value: a task's own option (e.g. report_exists's
            # track_started=False) wins over the setting, as it does in production.
            if getattr(task, attribute) == before[setting]:
                patched.append((task, attribute, task.__dict__.get(attribute, _MISSING)))
                setattr(task, attribute, value)
    try:
        yield app
    finally:
        for task, attribute, old in reversed(patched):
            if old is _MISSING:
                delattr(task, attribute)
            else:
                setattr(task, attribute, old)
        app.conf.update(before)
        forget_routing_tables(app)


def queues(*names: str) -> list[Queue]:
    """Queues as the project declares its own: a direct exchange and routing key of the same name."""
    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in names]


def marker_overrides(request) -> dict:
    """The settings of a test's @pytest.mark.celery(...) (the plugin's marker, e.g.
    @pytest.mark.celery(task_eager_propagates=True)), for every kind of test here."""
    mark = request.node.get_closest_marker("celery")
    return dict(mark.kwargs) if mark else {}


@pytest.fixture(scope="session")
def celery_config(broker_url):
    """The settings this test run needs, applied ON TOP of the project's own (read
    from Django's settings: the broker, the django-db result backend, JSON only ...).

    - queues of this run's own (see RUN), the word counts routed to one of them;
    - worker_hijack_root_logger off: the worker thread must not take over the root
      logger (pytest's log capture lives there). The plugin's own test app sets this
      (celery/contrib/testing/app.py, DEFAULT_TEST_CONFIG); with your app you set it.

    The result backend stays the project's "django-db" (django_celery_results): it
    supports chords (a ChordCounter row per chord), and it writes to the test database.
    The plugin's test app would use broker "memory://" and backend "cache+memory://":
    neither is what your project runs on."""
    return {
        "task_default_queue": THREAD_QUEUE,
        "task_queues": queues(THREAD_QUEUE, WORDCOUNTS_QUEUE),
        "task_routes": {"wordcounts.tasks.*": {"queue": WORDCOUNTS_QUEUE}},
        "worker_hijack_root_logger": False,
        "worker_log_color": False,
    }


@pytest.fixture(scope="session")
def celery_session_app():
    """The plugin's session-wide app and worker (celery_session_app, celery_session_worker)
    are not used here. The plugin's own celery_session_app builds a separate TestApp: your
    @shared_task tasks are there too, but none of your project's configuration (broker,
    result backend, routes, serializers ...): a test against it tests your functions on
    someone else's Celery. And a worker thread that lives for the whole session runs tasks
    between tests and across them, writing to the database while pytest-django allows
    no access (outside a test) or rolls back what it wrote (``db``). Use celery_worker (one
    per test, about a second to start) or worker_process (one process for the session)."""
    pytest.fail("celery_session_app/celery_session_worker are switched off in this folder: "
                "use celery_worker or worker_process (conftest.py says why).", pytrace=False)


@pytest.fixture
def celery_app(request, celery_config, transactional_db):
    """The plugin's celery_app (used by celery_worker) made YOUR app, with this run's
    settings and the test's @pytest.mark.celery(...) ones, all put back after the test.

    Why not the plugin's own: it is a TestApp (celery.contrib.testing.app). Your
    @shared_task tasks are registered on it too (a shared task registers on every app,
    and the TestApp is the current app during the test) -- what it lacks is your
    project's CONFIGURATION: its broker is memory://, its result backend cache+memory://,
    and none of your routes, queues, serializers, time zone or other CELERY_* settings
    apply. (Tasks made with @app.task on your own app are not on it at all.)

    transactional_db: another thread or process (a worker) sees only committed rows.
    pytest-django's default ``db`` runs each test in a transaction that is never
    committed: the worker would not find the test's rows, and (SQLite in WAL mode)
    the test would not see what the worker wrote. transactional_db commits for real
    and empties the tables after the test.

    The plugin's celery_parameters, celery_enable_logging and use_celery_app_trap are
    arguments of its TestApp: with your own app they have nothing to do."""
    with configured(project_app(), **{**celery_config, **marker_overrides(request)}) as app:
        yield app


@pytest.fixture(scope="session")
def celery_includes():
    """Modules the worker thread imports before it starts. celery.contrib.testing.tasks
    registers the task "celery.ping" -- the plugin's TestApp imports it, your app does
    not; without it the start-up check below fails with a bare AssertionError."""
    return ("celery.contrib.testing.tasks",)


@pytest.fixture(scope="session")
def celery_worker_parameters():
    """Arguments of the worker thread (celery.contrib.testing.worker.start_worker).

    perform_ping_check (the default, spelled out): before the test starts, send
    celery.ping and wait for "pong" through the result backend -- the worker is
    consuming and results come back, or the fixture fails within ping_task_timeout.
    queues: what the thread consumes (this run's, not another worker's)."""
    return {"queues": (THREAD_QUEUE, WORDCOUNTS_QUEUE), "perform_ping_check": True,
            "ping_task_timeout": 20.0, "shutdown_timeout": 20.0}


# --- eager mode, for one test at a time ---------------------------------------------------

@pytest.fixture
def eager_mode(request):
    """task_always_eager on (and the test's @pytest.mark.celery(...) settings) for this
    test only; put back after it, whatever happens, so that eager mode never leaks into
    the next test. It needs no broker -- which is exactly why it is tempting."""
    with configured(project_app(), task_always_eager=True, **marker_overrides(request)) as app:
        yield app


# --- a real worker process ----------------------------------------------------------------

class WorkerProcess:
    """A `celery worker` started with subprocess, its output in a log file."""

    def __init__(self, argv: list[str], env: dict, cwd: Path, log_path: Path):
        self.argv, self.env, self.cwd, self.log_path = argv, env, cwd, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            # Its own process group (POSIX), so that stop() can reach the pool's children
            # too if the worker does not stop by itself.
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=(os.name == "posix"))

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_until_ready(self, app, timeout: float) -> None:
        """Until the worker answers a ping (it is consuming), or fail with its log's tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"The worker exited with code {self.proc.returncode} while starting. "
                                   f"Its log ({self.log_path}) ends with:\n{self.tail()}")
            if app.control.ping(destination=[WORKER_NODE], timeout=0.5):
                return
        raise RuntimeError(f"The worker did not answer a ping within {timeout:g} s. "
                           f"Its log ({self.log_path}) ends with:\n{self.tail()}")

    def wait_for_log(self, text: str, timeout: float = 15.0) -> str:
        """The first log line that contains ``text``, once it is there (or fail after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log().splitlines():
                if text in line:
                    return line
            if time.monotonic() > deadline:
                # Not an AssertionError: a strict xfail(raises=AssertionError) must not take it for
                # the failure it expects.
                raise TimeoutError(f"No line with {text!r} in the worker's log within {timeout:g} s. "
                                     f"It ends with:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown: SIGTERM, and the worker finishes what it runs, then exits.
        If it has not exited within ``timeout``: killed, with its pool's children."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if os.name == "posix":
                import signal

                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
            self.proc.wait(10)


#: The settings module worker_process writes for its worker (in the worker's own tmp folder).
WORKER_SETTINGS = "worker_test_settings"


def worker_settings(settings_module: str, database: str, media: Path) -> str:
    """The source of WORKER_SETTINGS: the project's settings, and then what this run needs.

    Why a module of its own, and not environment variables: your settings read what they
    read. A fresh project's settings.py does not read DATABASE_URL (nor MEDIA_ROOT, nor
    CELERY_TASK_DEFAULT_QUEUE): given only those, its worker would open YOUR DEVELOPMENT
    DATABASE (db.sqlite3), write report files into your media folder and take the
    messages of the "celery" queue. Settings that are set here win, whatever yours read.
    (The CELERY_ names work as the Celery app reads Django's settings in Celery's own
    Django example: app.config_from_object("django.conf:settings", namespace="CELERY").)
    """
    queue = repr(PROCESS_QUEUE)
    return f"""# Written by conftest.py (worker_process) for the worker process of test run {RUN}.
from {settings_module} import *  # noqa: F401,F403

from kombu import Exchange, Queue

# The test database file pytest-django made and migrated, not the project's own database.
DATABASES = {{**DATABASES, "default": {{**DATABASES["default"], "NAME": {database!r}}}}}  # noqa: F405
# Report files go to the test's media folder.
MEDIA_ROOT = {str(media)!r}
# One queue, this run's: the worker consumes it (-Q), and every task sent from inside
# the worker (a retry, a chord's callback, a task that sends another) goes to it too,
# whatever the project's routes say -- as real_worker sends the test's own messages.
CELERY_TASK_DEFAULT_QUEUE = {queue}
CELERY_TASK_QUEUES = [Queue({queue}, Exchange({queue}, type="direct"), routing_key={queue})]
CELERY_TASK_ROUTES = {{}}
"""


@pytest.fixture(scope="session")
def worker_process(broker_url, django_db_setup, media_root, tmp_path_factory) -> Iterator[WorkerProcess]:
    """A real `celery -A PROJECT worker`, as you start one in a terminal, for the
    whole session: started by the first test that needs it, stopped warm at the end
    (on errors and Ctrl+C too: fixture teardown).

    What it gets, and why:
    - DJANGO_SETTINGS_MODULE=worker_test_settings, a module written into the worker's
      tmp folder (on its PYTHONPATH): the settings pytest-django uses (pytest.ini's
      DJANGO_SETTINGS_MODULE), with the test database file (django_db_setup made and
      migrated it), the test's media folder and this run's queue (see RUN) put in
      (worker_settings says why not through environment variables);
    - -Q: this run's queue only;
    - --pool=prefork: the prefork pool enforces time limits, soft and hard; gevent the
      hard one only (celery/concurrency/gevent.py); solo, threads and eventlet ignore
      them. On Windows, where prefork does not work, leave out the integration and
      eager tests: python -m pytest -m "unit or worker";
    - --without-mingle --without-gossip: it does not wait to greet other workers;
    - --include WORKER_INCLUDES: modules of tasks that are not the project's.
    Everything else (REDIS_URL, DEBUG, SECRET_KEY, ...) is this process's environment,
    plus WORKER_ENV."""
    from django.db import connection

    database = connection.settings_dict
    if database["ENGINE"] != "django.db.backends.sqlite3":
        pytest.fail("worker_process knows SQLite only: give the worker your test database "
                    f"({database['ENGINE']}, {database['NAME']}) in worker_settings() here.", pytrace=False)
    # (Not settings.SETTINGS_MODULE: under override_settings -- media_root -- that is None.)
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if not settings_module:
        pytest.fail("worker_process needs a settings module (pytest.ini's DJANGO_SETTINGS_MODULE), "
                    "not settings.configure(): the worker process imports it.", pytrace=False)
    folder = tmp_path_factory.mktemp("worker")
    (folder / f"{WORKER_SETTINGS}.py").write_text(
        worker_settings(settings_module, str(database["NAME"]), media_root), encoding="utf-8")
    env = {
        **os.environ,
        **WORKER_ENV,
        "DJANGO_SETTINGS_MODULE": WORKER_SETTINGS,
        "PYTHONPATH": os.pathsep.join([str(folder), str(PROJECT_DIR), str(HERE), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
    }
    # `python -m celery` is the `celery` command of this same Python environment.
    argv = [sys.executable, "-m", "celery", "-A", PROJECT, "worker", "--loglevel=INFO",
            "--pool=prefork", "--concurrency=2", "--queues", PROCESS_QUEUE, "--hostname", WORKER_NODE,
            "--without-mingle", "--without-gossip"]
    for module in WORKER_INCLUDES:
        argv += ["--include", module]
    worker = WorkerProcess(argv, env, PROJECT_DIR, folder / "worker.log")
    worker.start()
    try:
        worker.wait_until_ready(project_app(), timeout=60)
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def real_worker(request, worker_process, transactional_db):
    """For one test: messages go to the worker process's queue (and the test's
    @pytest.mark.celery(...) settings apply), committed data only (transactional_db,
    see celery_app). Put back after the test."""
    changes = {"task_default_queue": PROCESS_QUEUE, "task_queues": queues(PROCESS_QUEUE),
               "task_routes": {}, **marker_overrides(request)}
    with configured(project_app(), **changes):
        yield worker_process
