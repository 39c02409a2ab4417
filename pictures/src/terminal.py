"""Render text (a real, sanitized log) as a terminal-window PNG.

    from terminal import render
    render(log_text, "pictures/celery_worker.png", command="celery -A demo_tasks.tasks worker ...")

Dark background, a monospace font, a window title bar, the command on a
prompt line. Wide characters (Chinese) are drawn with a CJK font over two
cells, as a terminal does. The same text gives the same bytes: the font comes
with matplotlib (DejaVu Sans Mono) unless none is found, nothing depends on
the time, and the PNG carries no metadata.
"""

from __future__ import annotations

import unicodedata
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_SIZE = 15
LINE_HEIGHT = 21
PADDING = 18
TITLE_BAR = 30
MAX_COLUMNS = 110

BACKGROUND = (30, 30, 30)
TITLE_BACKGROUND = (56, 56, 56)
TITLE_TEXT = (170, 170, 170)
FOREGROUND = (212, 212, 212)
PROMPT = (106, 200, 120)
WARNING = (229, 192, 123)
ERROR = (240, 113, 120)
DOTS = ((255, 95, 86), (255, 189, 46), (39, 201, 63))

# Monospace fonts, tried in order: matplotlib's copy first (the same on every
# machine, so the same pixels), then common system ones.
MONO_FONT_FILES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/System/Library/Fonts/Menlo.ttc",
    "/System/Library/Fonts/Monaco.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
    "C:/Windows/Fonts/consola.ttf",
]
from fonts import CJK_FONT_FILES  # noqa: E402 - beside this file

NO_CJK_FONT = """\
The text has Chinese characters but no font with Chinese glyphs was found.
  Debian/Ubuntu: sudo apt-get install fonts-noto-cjk
  Fedora:        sudo dnf install google-noto-sans-cjk-fonts
  macOS:         PingFang ships with the system"""


def _matplotlib_mono() -> list[str]:
    try:
        import matplotlib
    except ImportError:
        return []
    return [str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSansMono.ttf")]


@cache
def mono_font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont:
    for path in _matplotlib_mono() + MONO_FONT_FILES:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    raise RuntimeError("No monospace font found (DejaVu Sans Mono, Menlo, ...). "
                       "Install matplotlib (`make install`) or fonts-dejavu.")


@cache
def cjk_font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont:
    """A CJK font, preferring the Simplified Chinese face of a collection."""
    for path in CJK_FONT_FILES:
        if not Path(path).is_file():
            continue
        faces = []
        for index in range(32):
            try:
                faces.append(ImageFont.truetype(path, size, index=index))
            except OSError:
                break
        for face in faces:
            family = face.getname()[0]
            if any(hint in family for hint in (" SC", "GB", "Hans")) and "Mono" in family:
                return face
        for face in faces:
            if any(hint in face.getname()[0] for hint in (" SC", "GB", "Hans")):
                return face
        if faces:
            return faces[0]
    raise RuntimeError(NO_CJK_FONT)


def is_wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def cells(text: str) -> int:
    return sum(2 if is_wide(c) else 1 for c in text)


def wrap(line: str, columns: int) -> list[str]:
    """Hard-wrap one line at ``columns`` cells, continuation lines indented by 2."""
    if cells(line) <= columns:
        return [line]
    rows, current, width = [], "", 0
    for char in line:
        w = 2 if is_wide(char) else 1
        if width + w > columns:
            rows.append(current)
            current, width = "  ", 2
        current += char
        width += w
    rows.append(current)
    return rows


def wrap_command(command: str, columns: int) -> list[str]:
    """``$ command``, broken at spaces the shell way (`` \\`` and an indent)."""
    rows, current = [], "$"
    for word in command.split(" "):
        if current not in ("$", "   ") and cells(f"{current} {word}") + 2 > columns:
            rows.append(current + " \\")
            current = "   "
        current = f"{current} {word}"
    rows.append(current)
    return rows


def line_colour(line: str, is_command: bool) -> tuple[int, int, int]:
    if is_command:
        return PROMPT
    if "WARNING" in line or line.startswith("[W "):
        return WARNING
    if "ERROR" in line or "CRITICAL" in line or line.startswith("[E "):
        return ERROR
    return FOREGROUND


def render(text: str, output: str | Path, *, command: str | None = None,
           title: str = "Terminal", columns: int = MAX_COLUMNS) -> Path:
    """Draw ``text`` (preceded by ``$ command`` if given) and save it as a PNG."""
    font = mono_font()
    cell_w = round(font.getlength("M"))
    source = text.expandtabs(8).rstrip("\n").splitlines()
    rows: list[tuple[str, bool]] = []
    if command:
        rows += [(r, True) for r in wrap_command(command, columns)]
    for line in source:
        rows += [(r, False) for r in wrap(line.rstrip(), columns)]
    width_cells = max([cells(r) for r, _ in rows] + [40])
    width = PADDING * 2 + width_cells * cell_w
    height = TITLE_BAR + PADDING * 2 + LINE_HEIGHT * len(rows)

    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, TITLE_BAR), fill=TITLE_BACKGROUND)
    for i, colour in enumerate(DOTS):
        cx, cy, r = 18 + i * 20, TITLE_BAR // 2, 6
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    title_w = font.getlength(title)
    draw.text(((width - title_w) / 2, (TITLE_BAR - FONT_SIZE) / 2 - 1), title, font=font, fill=TITLE_TEXT)

    wide_font = None
    y = TITLE_BAR + PADDING
    for row, is_command in rows:
        colour = line_colour(row, is_command)
        x = PADDING
        for char in row:
            if is_wide(char):
                wide_font = wide_font or cjk_font()
                draw.text((x, y), char, font=wide_font, fill=colour)
                x += 2 * cell_w
            else:
                if char != " ":
                    draw.text((x, y), char, font=font, fill=colour)
                x += cell_w
        y += LINE_HEIGHT

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    # No text chunks, no timestamps: the same pixels give the same bytes.
    image.save(output, format="PNG", optimize=True)
    return output


if __name__ == "__main__":  # a quick look: python pictures/src/terminal.py OUT.png < some.log
    import sys

    render(sys.stdin.read(), sys.argv[1], command=" ".join(sys.argv[2:]) or None)
    print(f"wrote {sys.argv[1]}")
