"""A real browser against a live Flower: headless Chromium driven by Playwright.

Never skipped: without a Chromium, launcher.browser raises BrowserNotFound and
says how to get one (so `make test` fails with that message).
"""

from __future__ import annotations

import pytest
import requests
from celery import Celery
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

import launcher
from launcher.browser import chromium
from launcher.flower import start_flower

APP = "demo_tasks.tasks"
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def live_flower(module_broker):
    """A worker that sends events and heartbeats (Flower shows it online), and Flower."""
    worker = launcher.start_worker(APP, broker=module_broker, name="bw",
                                   extra_args=["-E", "--without-gossip", "--without-mingle"])
    flower = start_flower(APP, broker=module_broker, name="flower-browser")
    yield flower
    launcher.stop_together([flower, worker])


@pytest.fixture
def browser():
    # Per test: Playwright's sync API cannot nest, and a test may start its own.
    with chromium() as b:
        yield b


@pytest.fixture
def client(module_broker):
    """A Celery client of our own: the test sends tasks by name, like any producer."""
    app = Celery("browser-test", broker=module_broker.url, backend=module_broker.url,
                 set_as_current=False)
    yield app
    app.close()


def test_without_credentials_the_page_is_refused(browser, live_flower):
    context = browser.new_context()
    try:
        page = context.new_page()
        statuses = []
        page.on("response", lambda r: statuses.append(r.status))
        # Headless Chromium cannot show the login dialog: the navigation fails.
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            page.goto(live_flower.url + "/")
        assert statuses == [401]
    finally:
        context.close()


def test_with_credentials_the_worker_is_online_and_a_new_task_succeeds(browser, live_flower, client):
    user, password = live_flower.auth
    context = browser.new_context(http_credentials={"username": user, "password": password},
                                  viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        assert page.goto(live_flower.url + "/").status == 200
        row = page.locator("#workers-table tbody tr", has_text="bw@")
        expect(row).to_contain_text("Online", timeout=TIMEOUT_MS)

        result = client.send_task("demo_tasks.tasks.add", args=(20, 22))
        assert result.get(timeout=20) == 42

        # Flower learns of the success from the worker's events; wait for that first.
        def flower_state():
            reply = requests.get(f"{live_flower.url}/api/task/info/{result.id}",
                                 auth=live_flower.auth, timeout=5)
            return reply.json().get("state") if reply.status_code == 200 else None

        assert launcher.wait_for(lambda: flower_state() == "SUCCESS", 20)

        assert page.goto(live_flower.url + "/tasks").status == 200
        task_row = page.locator("#tasks-table tbody tr", has_text=result.id)
        expect(task_row).to_contain_text("demo_tasks.tasks.add")
        expect(task_row).to_contain_text("SUCCESS")

        assert page.goto(f"{live_flower.url}/task/{result.id}").status == 200
        expect(page.locator("#task-page")).to_contain_text("SUCCESS")
        expect(page.locator("#task-page")).to_contain_text("42")
    finally:
        context.close()


# --- finding a browser (no real browser needed for these) -----------------------

def test_without_any_chromium_the_error_says_how_to_get_one(monkeypatch):
    import launcher.browser as lb

    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setattr(lb, "system_chromium", lambda: None)
    monkeypatch.setattr(lb, "playwright_chromium", lambda playwright: None)
    with pytest.raises(lb.BrowserNotFound, match="sudo apt-get install chromium fonts-noto-cjk"), chromium():
        pass  # pragma: no cover - never reached

    # `python -m launcher.browser` (make test) tries Playwright's own build first.
    calls = []
    monkeypatch.setattr(lb.subprocess, "run", lambda argv, **kw: calls.append(argv) or
                        type("Done", (), {"returncode": 1})())
    with pytest.raises(lb.BrowserNotFound, match="playwright install chromium"):
        lb.ensure()
    assert calls and calls[0][-3:] == ["playwright", "install", "chromium"]


def test_chromium_env_var_must_name_an_executable(monkeypatch, tmp_path):
    import launcher.browser as lb

    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-browser"))
    with pytest.raises(lb.BrowserNotFound, match=r"CHROMIUM=.* is not an executable"):
        lb.system_chromium()


def test_chromium_starts_under_a_deep_temporary_folder_and_leaves_nothing(monkeypatch, tmp_path):
    """A notebook run inside a test run has a TMPDIR two folders deep: Chromium's singleton socket
    no longer fit a Unix socket path there and Chromium died at once. chromium() gives it a short one."""
    import tempfile
    from pathlib import Path

    deep = tmp_path / ("d" * 40) / ("e" * 40)
    deep.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(deep))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    before = set(Path("/tmp").glob("chromium-*"))
    with chromium() as b:
        page = b.new_page()
        page.set_content("<p id=x>中文</p>")
        assert page.locator("#x").inner_text() == "中文"
    assert set(Path("/tmp").glob("chromium-*")) == before, "its short temporary folder is removed"
