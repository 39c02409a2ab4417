"""Every picture the course shows exists and is an image; every picture is shown somewhere."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import REPO_ROOT as ROOT
from tests.helpers import documents, image_links

PICTURES = ROOT / "pictures"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg"}

def references() -> list[tuple[Path, str, Path]]:
    """(document, link as written, resolved file) for every local image link."""
    found = []
    for doc, text in documents():
        for link in image_links(text):
            found.append((doc, link, (doc.parent / link.split("#")[0]).resolve()))
    return found


def pictures() -> list[Path]:
    return sorted(p for p in PICTURES.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def check_image(path: Path) -> None:
    if path.suffix.lower() == ".svg":
        ET.parse(path)
        return
    with Image.open(path) as image:
        image.verify()  # raises on a truncated or corrupt file
    with Image.open(path) as image:
        assert image.width > 0 and image.height > 0


def test_documents_show_pictures():
    assert references(), "no notebook or README shows a picture: is the link pattern right?"


@pytest.mark.parametrize("doc, link, target", references(),
                         ids=lambda v: v.name if isinstance(v, Path) else str(v))
def test_every_referenced_picture_exists_under_pictures_and_is_an_image(doc, link, target):
    where = f"{doc.relative_to(ROOT)} shows {link}"
    assert target.is_relative_to(PICTURES), f"{where}: pictures live in pictures/"
    assert target.is_file(), f"{where}, which does not exist (run `make pictures`?)"
    check_image(target)


@pytest.mark.parametrize("picture", pictures(), ids=lambda p: p.name)
def test_every_picture_is_shown_somewhere_and_is_an_image(picture):
    shown = {target for _, _, target in references()}
    assert picture.resolve() in shown, \
        f"pictures/{picture.name} is not shown by README.md or any notebook: show it or delete it"
    check_image(picture)


# --- the terminal renderer used by `make pictures` -----------------------------

sys.path.insert(0, str(PICTURES / "src"))
import terminal  # noqa: E402


def test_terminal_pictures_are_deterministic_and_draw_chinese(tmp_path):
    text = "[TIME: INFO/MainProcess] w1@HOST ready.\n任务已完成 (task done)\n"
    first = terminal.render(text, tmp_path / "a.png", command="celery -A demo_tasks.tasks worker")
    second = terminal.render(text, tmp_path / "b.png", command="celery -A demo_tasks.tasks worker")
    assert first.read_bytes() == second.read_bytes()
    with Image.open(first) as image:
        assert image.format == "PNG" and not image.info.get("Software")
        # The Chinese line (the third row) has ink: its glyphs were drawn with a CJK font.
        y = terminal.TITLE_BAR + terminal.PADDING + 2 * terminal.LINE_HEIGHT
        row = image.crop((terminal.PADDING, y, terminal.PADDING + 10 * 9, y + terminal.LINE_HEIGHT))
        assert len(row.getcolors(maxcolors=100_000)) > 2


def test_long_commands_wrap_the_shell_way():
    rows = terminal.wrap_command("celery -A demo_tasks.tasks --broker=redis://127.0.0.1:PORT/0 flower "
                                 "--address=127.0.0.1 --port=PORT --basic-auth=course:***", 60)
    assert rows[0].startswith("$ celery") and all(r.endswith(" \\") for r in rows[:-1])
    assert all(terminal.cells(r) <= 60 for r in rows)
    assert " ".join(r.rstrip(" \\").strip() for r in rows).startswith("$ celery -A demo_tasks.tasks")
