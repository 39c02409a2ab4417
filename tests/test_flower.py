"""launcher.flower against real processes: Flower, a worker and an embedded broker."""

from __future__ import annotations

import psutil
import pytest
import requests

import launcher
from launcher import sanitize
from launcher.credentials import FLOWER_FILE, flower_auth, secrets_dir
from launcher.flower import article_command, command, start_flower
from launcher.procs import group_alive
from tests.helpers import returns_within

APP = "demo_tasks.tasks"
NOWHERE = "redis://broker.invalid:6379/0"  # .invalid never resolves (RFC 2606)


def workers(flower, auth=True):
    return requests.get(flower.url + "/api/workers", auth=flower.auth if auth else None, timeout=5)


@pytest.fixture(scope="module")
def events_worker(module_broker):
    """A worker that sends task events (-E), as Flower needs; heartbeats on."""
    worker = launcher.start_worker(APP, broker=module_broker, name="fl",
                                   extra_args=["-E", "--without-gossip", "--without-mingle"])
    yield worker
    worker.cleanup()


@pytest.fixture(scope="module")
def flower(module_broker, events_worker):
    proc = start_flower(APP, broker=module_broker)
    assert launcher.wait_for(lambda: "fl@" in "".join(workers(proc).json()), 30)
    yield proc
    proc.cleanup()


def test_command_puts_global_options_before_the_subcommand():
    args = command("tasks", "redis://h:1/0", port=5555)
    assert args == ["-A", "tasks", "--broker=redis://h:1/0", "flower", "--address=127.0.0.1", "--port=5555"]
    article = article_command("tasks", "redis://h:1/0", port=5555)
    assert article[:4] == ["-A", "tasks", "flower", "--broker=redis://h:1/0"]


def test_a_broker_url_with_a_password_stays_off_the_command_line():
    args = command("tasks", "redis://celery:pa55word@h:1/0", port=5555)
    assert args == ["-A", "tasks", "flower", "--address=127.0.0.1", "--port=5555"]


def command_lines(proc) -> str:
    """What `ps` shows of a process and all its children, to every user of the machine."""
    main = psutil.Process(proc.pid)
    return "\n".join(" ".join(p.cmdline()) for p in [main, *main.children(recursive=True)])


def test_starts_ready_on_loopback_with_auth_and_lists_the_worker(flower, events_worker):
    assert flower.running() and flower.url.startswith("http://127.0.0.1:")
    assert flower.auth == flower_auth()
    assert flower.auth[1] not in flower.display  # the password is not shown
    # Shown as where it is read from: the command, pasted into a terminal, does the same.
    # (the test run's own folder, by its path; a learner's reads `.secrets/...`: tests/test_credentials.py)
    assert f'FLOWER_BASIC_AUTH="$(cat {secrets_dir() / FLOWER_FILE})" celery -A ' in flower.display
    # Not in the process list: Flower read it from FLOWER_BASIC_AUTH.
    assert flower.auth[1] not in command_lines(flower) and "basic-auth" not in command_lines(flower)
    reply = workers(flower)
    assert reply.status_code == 200
    assert [name.split("@")[0] for name in reply.json()] == ["fl"]


def test_api_and_pages_refuse_requests_without_credentials(flower):
    assert workers(flower, auth=False).status_code == 401
    assert requests.get(flower.url + "/api/workers", auth=("course", "wrong"), timeout=5).status_code == 401
    page = requests.get(flower.url + "/", timeout=5)
    assert page.status_code == 401
    assert page.headers["WWW-Authenticate"] == 'Basic realm="flower"'


def test_api_shows_a_task_run_through_it(flower):
    reply = requests.post(flower.url + "/api/task/async-apply/demo_tasks.tasks.add",
                          json={"args": [20, 22]}, auth=flower.auth, timeout=5)
    assert reply.status_code == 200
    task_id = reply.json()["task-id"]

    def result():
        return requests.get(f"{flower.url}/api/task/result/{task_id}", auth=flower.auth, timeout=5).json()

    assert launcher.wait_for(lambda: result()["state"] == "SUCCESS", 15)
    assert result()["result"] == 42
    info = lambda: requests.get(f"{flower.url}/api/task/info/{task_id}", auth=flower.auth, timeout=5)  # noqa: E731
    assert launcher.wait_for(lambda: info().status_code == 200 and info().json()["state"] == "SUCCESS", 15)
    assert info().json()["name"] == "demo_tasks.tasks.add"


def test_log_and_command_show_the_real_port_and_broker(flower):
    text = flower.tail(50)
    assert f"Visit me at http://127.0.0.1:{flower.port}" in text
    assert f"--port={flower.port}" in flower.display
    assert f"REDIS_URL={flower.broker_url} " in flower.display  # the app reads its result backend from it
    # ... and the comparison blanks both.
    assert sanitize(flower.display).count("PORT") == 3  # REDIS_URL, --broker and --port


def test_articles_order_ignores_broker(module_broker, events_worker):
    """`celery -A APP flower --broker=URL`: Flower uses the app's own broker (REDIS_URL)."""
    wrong = start_flower(APP, broker=NOWHERE, article_order=True, name="flower-article",
                         env={"REDIS_URL": module_broker.url})
    right = start_flower(APP, broker=NOWHERE, name="flower-celery5",
                         env={"REDIS_URL": module_broker.url})
    try:
        assert wrong.argv.index("flower") < wrong.argv.index(f"--broker={NOWHERE}")
        assert launcher.wait_for(lambda: "Broker: " in wrong.log() and "Broker: " in right.log(), 15)
        assert "incorrectly specified the following celery arguments after flower command: ['--broker']" \
            in wrong.log()
        assert f"Broker: redis://:**@127.0.0.1:{module_broker.port}/0" in wrong.tail(50, grep="Broker: ")
        assert "broker.invalid" not in wrong.log()
        assert "Broker: redis://:**@broker.invalid:6379/0" in right.log()
        # It works, on the app's broker: it sees the worker.
        assert launcher.wait_for(lambda: "fl@" in "".join(workers(wrong).json()), 30)
    finally:
        launcher.stop_together([wrong, right])


def test_without_basic_auth_pages_are_open_but_the_api_is_not(module_broker, monkeypatch):
    # A learner's FLOWER_* variables must not reach the child (this one would open the API).
    monkeypatch.setenv("FLOWER_UNAUTHENTICATED_API", "true")
    open_flower = start_flower(APP, broker=module_broker, auth=False, name="flower-open")
    try:
        assert open_flower.auth is None and "--basic-auth" not in " ".join(open_flower.argv)
        assert requests.get(open_flower.url + "/", timeout=5).status_code == 200
        assert requests.get(open_flower.url + "/workers", timeout=5).status_code == 200
        api = requests.get(open_flower.url + "/api/workers", timeout=5)
        assert api.status_code == 401
        assert "FLOWER_UNAUTHENTICATED_API" in api.text
    finally:
        open_flower.cleanup()


def test_the_old_published_password_is_refused_and_the_generated_one_accepted(flower):
    user, password = flower_auth()
    assert len(password) >= 20 and password != "celery-course"
    assert requests.get(flower.url + "/api/workers", auth=("course", "celery-course"),
                        timeout=5).status_code == 401
    assert requests.get(flower.url + "/api/workers", auth=(user, password), timeout=5).status_code == 200


def test_credentials_from_the_environment_are_used(module_broker, monkeypatch):
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "alice:s3cret-from-env")
    proc = start_flower(APP, broker=module_broker, name="flower-alice")
    try:
        assert proc.auth == ("alice", "s3cret-from-env")
        assert workers(proc).status_code == 200
        assert requests.get(proc.url + "/api/workers", auth=("course", flower_auth()[1]),
                            timeout=5).status_code == 401
        assert "s3cret-from-env" not in command_lines(proc)
    finally:
        proc.cleanup()


def test_a_password_protected_broker_reaches_flower_outside_its_arguments(module_broker, tmp_path):
    """REDIS_URL with a password (what a learner sets to turn one on) works, and
    `ps` shows neither that password nor Flower's."""
    secured = launcher.start_embedded(password="br0ker-secret")
    try:
        proc = start_flower(APP, broker=secured.url, name="flower-secured")
        try:
            assert "br0ker-secret" in secured.url
            assert workers(proc).status_code == 200
            assert "br0ker-secret" not in command_lines(proc) and proc.auth[1] not in command_lines(proc)
            assert "br0ker-secret" not in proc.display
        finally:
            proc.cleanup()
    finally:
        secured.stop()


def test_stop_leaves_no_process(module_broker):
    proc = start_flower(APP, broker=module_broker, name="flower-stop")
    pgid, url = proc.pid, proc.url
    assert proc in launcher.running()
    proc.stop()
    assert not group_alive(pgid)
    assert proc not in launcher.running()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/healthcheck", timeout=2)
    proc.cleanup()


def test_an_app_that_does_not_import_fails_fast_with_its_log(module_broker):
    with pytest.raises(launcher.ProcessError, match=r"exited with code .*no_such_module"):
        returns_within(60, lambda: start_flower("no_such_module", broker=module_broker, name="flower-broken"),
                       "start_flower() of an app that does not import")
    assert not [p for p in launcher.running() if p.name == "flower-broken"]
