"""Headless Chromium for the course's screenshots and browser tests.

    from launcher.browser import chromium
    with chromium() as browser:              # the browser process is closed on exit
        page = browser.new_page()
        ...

Which Chromium (first found wins):
1. ``CHROMIUM`` (environment variable): the executable to use;
2. the system's: Debian's ``chromium`` package, or ``chromium`` /
   ``chromium-browser`` / ``google-chrome`` on PATH (snap builds are skipped:
   their confinement cannot read Playwright's temporary profile);
3. Playwright's own build (``python -m playwright install chromium``).
Otherwise ``BrowserNotFound`` says how to get one.

Uses Playwright's synchronous API: call it from scripts and tests, not from a
running asyncio loop (a Jupyter kernel).

``python -m launcher.browser`` (for ``make test``): prints the Chromium that
will be used; if there is none, runs ``playwright install chromium``; if that
fails too, says how to get one and exits with status 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Quiet, deterministic, container-friendly: no sandbox (containers often run
#: as root, where Chromium's sandbox refuses to start), no GPU, no calls home,
#: no first-run UI; /tmp instead of a possibly tiny /dev/shm (Docker: 64 MB).
#: The longest TMPDIR Chromium is started with as it is (its singleton socket goes 45 bytes deeper).
MAX_TMPDIR = 60
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)

#: Debian's /usr/bin/chromium is a shell script that execs this binary after
#: adding desktop flags (and, on some machines, printing a shell error).
DEBIAN_BINARY = Path("/usr/lib/chromium/chromium")

SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MACOS_APPS = (
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)

HOW_TO_GET_ONE = """\
No Chromium was found for Playwright. Install one, then run the command again:
  Debian:         sudo apt-get install chromium fonts-noto-cjk
  Ubuntu, macOS,
  anything else:  .venv/bin/python -m playwright install chromium
                  (Linux may also need: sudo .venv/bin/python -m playwright install-deps chromium)
Or point CHROMIUM at a Chromium or Chrome executable: CHROMIUM=/path/to/chrome make test"""


class BrowserNotFound(RuntimeError):
    """No Chromium to drive: the message says how to get one."""


def _is_snap(path: str) -> bool:
    return os.path.realpath(path).startswith("/snap/")


def _debian_wrapper(path: str) -> bool:
    """True for Debian's shell-script launcher in front of DEBIAN_BINARY."""
    try:
        with open(path, "rb") as f:
            is_script = f.read(2) == b"#!"
    except OSError:
        return False
    return is_script and DEBIAN_BINARY.is_file()


def system_chromium() -> str | None:
    """The system's Chromium or Chrome executable, or None."""
    override = os.environ.get("CHROMIUM")
    if override:
        found = shutil.which(override)
        if not found:
            raise BrowserNotFound(f"CHROMIUM={override} is not an executable file.\n\n{HOW_TO_GET_ONE}")
        return found
    candidates = ["/usr/bin/chromium"] + [shutil.which(n) or "" for n in SYSTEM_NAMES]
    if sys.platform == "darwin":
        candidates += list(MACOS_APPS)
    for path in candidates:
        if path and os.access(path, os.X_OK) and not _is_snap(path):
            return str(DEBIAN_BINARY) if _debian_wrapper(path) else path
    return None


def playwright_chromium(playwright) -> str | None:
    """Playwright's own Chromium, if `playwright install chromium` has fetched it."""
    try:
        path = playwright.chromium.executable_path
    except Exception:
        return None
    return path if path and os.path.isfile(path) else None


def find_chromium(playwright) -> str:
    """The executable ``chromium()`` will launch."""
    path = system_chromium() or playwright_chromium(playwright)
    if path is None:
        raise BrowserNotFound(HOW_TO_GET_ONE)
    return path


@contextmanager
def chromium(*, headless: bool = True, args: tuple[str, ...] = ()) -> Iterator:
    """A launched headless Chromium (a Playwright ``Browser``), closed on exit,
    whatever happens inside the ``with`` block."""
    from playwright.sync_api import sync_playwright

    # Chromium keeps a socket in TMPDIR, whose path must fit a Unix socket's 107 bytes: a deep
    # TMPDIR (a notebook run inside a test run) ended it at once ("Socket path too long").
    short_tmp = None
    env = None
    if len(tempfile.gettempdir()) > MAX_TMPDIR:
        short_tmp = tempfile.mkdtemp(prefix="chromium-", dir="/tmp")
        env = {**os.environ, "TMPDIR": short_tmp}
    try:
        with sync_playwright() as playwright:
            executable = find_chromium(playwright)
            browser = playwright.chromium.launch(
                executable_path=executable, headless=headless,
                args=[*CHROMIUM_ARGS, *args], timeout=60_000, env=env)
            try:
                yield browser
            finally:
                # Closes every context and page, then ends the browser process;
                # leaving sync_playwright() then stops Playwright's driver.
                browser.close()
    finally:
        if short_tmp:
            shutil.rmtree(short_tmp, ignore_errors=True)


def ensure() -> str:
    """A Chromium to launch: the system's, Playwright's, or Playwright's freshly
    installed (``playwright install chromium``). Raises BrowserNotFound."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        found = system_chromium() or playwright_chromium(playwright)
    if found:
        return found
    print("No Chromium found: running `playwright install chromium` ...", file=sys.stderr, flush=True)
    if subprocess.run([sys.executable, "-m", "playwright", "install", "chromium"]).returncode == 0:
        with sync_playwright() as playwright:
            found = playwright_chromium(playwright)
        if found:
            return found
    raise BrowserNotFound(HOW_TO_GET_ONE)


def main() -> int:
    try:
        print(f"Chromium: {ensure()}")
    except BrowserNotFound as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
