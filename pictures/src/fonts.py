"""Fonts the picture scripts draw Chinese with: the files terminal.py looks for, and,
for the matplotlib drawings (architecture.py, on_commit.py, beat_timeline.py,
retry_timeline.py, workflow_timeline.py,
notifications_architecture.py), use_cjk_font() before drawing and save_figure() after."""

import sys
from pathlib import Path

# Fonts with Chinese glyphs, tried in order: Debian/Ubuntu, then macOS, then Windows.
CJK_FONT_FILES = [
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Medium.ttc",
    "/Library/Fonts/Arial Unicode.ttf",
    "C:/Windows/Fonts/msyh.ttc",
]

# Substrings of family names that indicate a font covering Chinese.
CJK_FAMILY_HINTS = ("CJK", "Hei", "PingFang", "WenQuanYi", "Source Han")
# Within a font collection, prefer the Simplified Chinese face.
SIMPLIFIED_HINTS = (" SC", "GB", "CN", "Hans")

NO_FONT_MESSAGE = """\
error: no font with Chinese glyphs was found, so the diagram cannot be drawn.
Install one and re-run:
  Debian/Ubuntu: sudo apt-get install fonts-noto-cjk
  Fedora:        sudo dnf install google-noto-sans-cjk-fonts
  macOS:         PingFang ships with the system (/System/Library/Fonts/PingFang.ttc)"""


def _family_from_file(path: str) -> str:
    """Register a font file and return its best family name for Chinese."""
    from matplotlib import font_manager

    font_manager.fontManager.addfont(path)
    # A .ttc collection registers one entry per face (JP, SC, TC, ...).
    names = sorted(
        {f.name for f in font_manager.fontManager.ttflist if f.fname == path}
    )
    for name in names:
        if any(hint in name for hint in SIMPLIFIED_HINTS):
            return name
    return names[0] if names else font_manager.FontProperties(fname=path).get_name()


def find_cjk_family() -> str:
    """Return a registered matplotlib font family able to render Simplified Chinese."""
    from matplotlib import font_manager

    for path in CJK_FONT_FILES:
        if Path(path).is_file():
            return _family_from_file(path)
    # Fall back to whatever the system font list offers.
    candidates = sorted(
        (f.name, f.fname)
        for f in font_manager.fontManager.ttflist
        if any(hint in f.name for hint in CJK_FAMILY_HINTS)
    )
    for name, _ in candidates:
        if any(hint in name for hint in SIMPLIFIED_HINTS):
            return name
    if candidates:
        return candidates[0][0]
    sys.exit(NO_FONT_MESSAGE)


def use_cjk_font() -> str:
    """Make matplotlib draw Chinese: the CJK family first, DejaVu Sans for any glyph it
    lacks, and an ASCII minus sign (CJK fonts often have no U+2212). Returns the family."""
    import matplotlib.pyplot as plt

    family = find_cjk_family()
    plt.rcParams["font.family"] = [family, "DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False
    return family


def save_figure(fig, output: Path, dpi: float | None = None) -> None:
    """Write ``fig`` to ``output`` and close it. No "Software" entry (and Agg writes
    no date): the same drawing gives the same bytes on a re-run."""
    import matplotlib.pyplot as plt

    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=dpi or "figure", metadata={"Software": None})
    plt.close(fig)
