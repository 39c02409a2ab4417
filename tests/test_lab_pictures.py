"""Every picture a chapter shows loads in JupyterLab, as `make lab` serves it:
a real JupyterLab (launcher.lab on free ports) in a real Chromium (Playwright).

Never skipped: without a Chromium, launcher.browser raises BrowserNotFound and
says how to get one."""

from __future__ import annotations

import json
import urllib.request

import pytest

from launcher.browser import chromium
from tests.helpers import documents, image_links, start_lab

#: chapter file -> the pictures its markdown shows
PICTURES = {doc: image_links(text) for doc, text in documents() if doc.suffix == ".ipynb"}
TIMEOUT_MS = 60_000
SHOWN_NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    session = start_lab(tmp_path_factory.mktemp("lab"))
    # JupyterLab renders only the cells in view ("windowing"): turn that off, through
    # its settings API, so that every cell's pictures are in the page.
    request = urllib.request.Request(
        f"{session.base}/lab/api/settings/@jupyterlab/notebook-extension:tracker",
        data=json.dumps({"raw": json.dumps({"windowingMode": "none"})}).encode(), method="PUT",
        headers={"Authorization": f"token {session.token}", "Content-Type": "application/json"})
    assert urllib.request.urlopen(request, timeout=30).status in (200, 204)
    yield session
    assert session.stop() == 0


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def test_the_course_shows_pictures():
    assert sum(len(links) for links in PICTURES.values()) >= 10


@pytest.mark.parametrize("path", [p for p, links in PICTURES.items() if links], ids=lambda p: p.name)
def test_every_picture_of_a_chapter_loads_in_jupyterlab(lab, browser, path):
    expected = len(PICTURES[path])
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        # A workspace of its own: only this notebook is open (JupyterLab would
        # otherwise reopen the tabs of the earlier tests).
        page.goto(f"{lab.base}/lab/workspaces/{path.stem}/tree/notebooks/{path.name}?token={lab.token}")
        images = f"{SHOWN_NOTEBOOK} .jp-RenderedMarkdown img"
        page.wait_for_selector(f"{SHOWN_NOTEBOOK} .jp-RenderedMarkdown", state="attached")
        loaded = """([selector, n]) => {
            const images = [...document.querySelectorAll(selector)];
            return images.length >= n && images.every(i => i.complete);
        }"""
        page.wait_for_function(loaded, arg=[images, expected])
        widths = page.eval_on_selector_all(images, "images => images.map(i => i.naturalWidth)")
        assert len(widths) == expected, f"{path.name}: {len(widths)} images in the page, {expected} in the notebook"
        assert all(w > 0 for w in widths), f"{path.name}: pictures that did not load: {widths}"
    finally:
        context.close()


#: JupyterLab's toasts (react-toastify), e.g. "Would you like to get notified about official Jupyter news?"
TOAST = ".Toastify__toast"


def test_first_open_greets_the_learner_with_the_chapter_and_no_prompt(lab, browser):
    """A learner's first open (a new browser profile, new user settings): the first
    chapter, and no toast asking about Jupyter news (make lab sets fetchNews "false")."""
    settings = json.load(urllib.request.urlopen(urllib.request.Request(
        f"{lab.base}/lab/api/settings/@jupyterlab/apputils-extension:notification",
        headers={"Authorization": f"token {lab.token}"}), timeout=30))
    # overrides.d changes the schema's default; the user settings stay empty
    assert settings["schema"]["properties"]["fetchNews"]["default"] == "false", settings["schema"]["properties"]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(f"{lab.base}/lab/workspaces/first-open/tree/notebooks/01_what_is_celery.ipynb?token={lab.token}")
        page.wait_for_selector(f"{SHOWN_NOTEBOOK} .jp-RenderedMarkdown h1", state="attached")
        # The prompt is emitted once the application is restored and the settings are
        # loaded, i.e. right around now: give it a few seconds to show.
        page.wait_for_timeout(4000)
        toasts = page.locator(TOAST).all_inner_texts()
        assert not toasts, f"toasts on first open: {toasts}"
    finally:
        context.close()
