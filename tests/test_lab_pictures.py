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
