"""demo_tasks against a real worker process (never eager mode)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from celery.exceptions import NotRegistered
from celery.exceptions import TimeoutError as CeleryTimeoutError
from kombu.exceptions import EncodeError

import launcher
from tests.helpers import REPO_ROOT, returns_within

ARTICLE_OUTPUT = "Is Task ready: False\ntask result: 8\n"


@pytest.fixture(scope="module")
def app(demo_app, demo_worker):
    return demo_app


def test_add_runs_in_the_worker(app, demo_worker):
    result = app.add.delay(4, 4)
    assert result.get(timeout=10) == 8
    assert result.state == "SUCCESS"
    assert launcher.wait_for(lambda: result.id in demo_worker.log(), 30)


def run_article_script(app, argv, **kwargs) -> str:
    """Run the article's run_task.py and return what it printed.

    Its first line is a real race: ready() right after delay() is True if the
    worker finishes within one round trip (e.g. when the script is descheduled
    on a loaded machine). So the workers stop taking messages from the queue
    first: nobody can have run the task when ready() asks, and the first line
    is "False" every time. As soon as it is printed, they take messages again,
    and get(timeout=1) has its result."""
    assert app.control.cancel_consumer("celery", reply=True), "no worker answered"
    script = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    try:
        first = script.stdout.readline()
        assert app.control.add_consumer("celery", reply=True), "no worker answered"
        rest, errors = script.communicate(timeout=30)
    finally:
        app.control.add_consumer("celery", reply=True)
        script.kill()
    assert script.returncode == 0, errors
    return first + rest


def test_run_task_module_prints_the_articles_output(app, broker):
    output = run_article_script(app.app, [sys.executable, "-m", "demo_tasks.run_task"],
                                env=dict(os.environ, REDIS_URL=broker.url))
    assert output == ARTICLE_OUTPUT


def test_the_articles_flat_form_works_too():
    """`cd demo_tasks && celery -A tasks worker` + `python run_task.py`, as in the article."""
    from celery import Celery

    b = launcher.start_embedded()
    control = Celery("control", broker=b.url, set_as_current=False)
    try:
        worker = launcher.start_worker("tasks", broker=b, fast=True, cwd=str(REPO_ROOT / "demo_tasks"))
        assert "  . tasks.add" in worker.tail(60)
        output = run_article_script(control, [sys.executable, "run_task.py"], cwd=REPO_ROOT / "demo_tasks",
                                    env=dict(os.environ, REDIS_URL=b.url))
        assert output == ARTICLE_OUTPUT
        worker.cleanup()
    finally:
        control.close()
        b.stop()


def test_wrong_argument_types_end_in_failure_and_get_reraises(app):
    result = app.add.delay("a", 1)
    with pytest.raises(TypeError, match="can only concatenate str"):
        result.get(timeout=10)
    assert result.state == "FAILURE"


def test_failing_task_reraises_or_returns_the_exception(app):
    result = app.divide.delay(1, 0)
    with pytest.raises(ZeroDivisionError):
        result.get(timeout=10)
    assert isinstance(result.get(timeout=10, propagate=False), ZeroDivisionError)
    assert "ZeroDivisionError" in result.traceback


def test_missing_argument_fails_at_call_time(app):
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'y'"):
        app.add.delay(1)


def test_unserialisable_argument_fails_at_delay(app):
    with pytest.raises(EncodeError, match="not JSON serializable"):
        app.add.delay(object(), 1)


def test_unknown_task_fails_instead_of_hanging(app, demo_worker):
    result = app.app.send_task("demo_tasks.tasks.no_such_task", args=(1,))
    with pytest.raises(NotRegistered):
        result.get(timeout=10)
    assert "Received unregistered task" in demo_worker.log()


def test_get_with_a_timeout_raises_instead_of_hanging(app):
    result = app.slow_add.delay(1, 1, seconds=2)
    with pytest.raises(CeleryTimeoutError):
        returns_within(30, lambda: result.get(timeout=0.3), "get(timeout=0.3) on a 2-second task")
    assert result.get(timeout=10) == 2


def test_delay_with_the_broker_down_raises_instead_of_hanging():
    dead = f"redis://127.0.0.1:{launcher.free_port()}/0"
    # timeout=60: a generous deadline on the wait itself (a hang fails the test here).
    done = subprocess.run([sys.executable, "-m", "demo_tasks.run_task"], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, REDIS_URL=dead), check=False)
    assert done.returncode == 1
    # Celery's own words, with the cause (the refused connection) chained above them.
    assert "Connection refused" in done.stderr
    assert "Retry limit exceeded while trying to reconnect" in done.stderr
