"""Chapter 10's site to crawl (services/crawl_site.py): the generated pages as pure
functions, and a real server process started by launcher.start_crawl_site(),
talked to over HTTP by hand (http.client: no redirect is followed for us)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import psutil
import pytest

import launcher
from launcher.paths import REPO_ROOT
from launcher.procs import port_taken
from launcher.scratch import make_scratch, remove_scratch
from launcher.shown import repo_relative
from services.crawl_site import HOST_MARK, HUGE_BYTES, KINDS, ROBOTS_TXT, generate

PAGES, SEED = 30, 3
#: The module's site: slow pages 0.4 s late, /hang.html silent 1 s.
SLOW_DELAY, HANG = 0.4, 1.0
UA = "course-test-crawler/1.0"
SPECIAL = ("/slow/0.html", "/slow/1.html", "/slow/2.html", "/flaky/0.html", "/flaky/1.html", "/error/500.html",
           "/old.html", "/loop/a.html", "/loop/b.html", "/files/report.pdf", "/huge.html", "/hang.html")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    proc = launcher.start_crawl_site(tmp_path_factory.mktemp("crawl") / "site.log", pages=PAGES, seed=SEED,
                                     slow_delay=SLOW_DELAY, hang=HANG)
    try:
        yield proc
    finally:
        proc.cleanup()


@pytest.fixture
def fresh(site):
    """The module's site, its log emptied and its flaky pages failing first again."""
    site.reset()
    return site


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(site, path: str, *, method: str = "GET", host: str | None = None, timeout: float = 10.0,
          limit: int | None = None) -> Reply:
    """One request by hand to ``site`` (a CrawlSiteProc, or a port): redirects are not followed;
    ``limit``: read at most that many bytes."""
    port = site if isinstance(site, int) else site.port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"User-Agent": UA} if host is None else {"User-Agent": UA, "Host": host}
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        body = response.read() if limit is None else response.read(limit)
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        connection.close()


def answered(proc, count: int) -> list[dict]:
    """The log once it has ``count`` requests, all answered (a client may have its answer a
    moment before the server has logged it)."""
    assert launcher.wait_for(lambda: len(log := proc.requests()) == count and None not in [e["status"] for e in log],
                             10), proc.requests()
    return proc.requests()


def host_of(proc) -> str:
    return f"127.0.0.1:{proc.port}"


class Visible(HTMLParser):
    """The hrefs of a page and its visible text (the text of <body>, no <script> or <style>)."""

    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.texts: list[str] = []
        self.hidden = 0
        self.in_body = False

    def handle_starttag(self, tag, attrs):
        if tag == "a" and dict(attrs).get("href") is not None:
            self.hrefs.append(dict(attrs)["href"])
        self.hidden += tag in ("script", "style")
        self.in_body = self.in_body or tag == "body"

    def handle_endtag(self, tag):
        self.hidden -= tag in ("script", "style")

    def handle_data(self, data):
        if self.in_body and not self.hidden and data.strip():
            self.texts.append(data.strip())


def fingerprint(site) -> str:
    """Everything a site is made of, hashed."""
    digest = hashlib.sha256()
    for path, page in site.pages.items():
        digest.update(repr((path, page.kind, page.status, page.content_type, page.title, page.text, page.links,
                            page.location, page.template)).encode())
    return digest.hexdigest()


# --- the generated site -----------------------------------------------------------------

def test_the_same_seed_gives_the_same_site_and_another_seed_another():
    one, again, other = generate(PAGES, SEED), generate(PAGES, SEED), generate(PAGES, SEED + 1)
    assert fingerprint(one) == fingerprint(again)
    # Another seed: the same paths and kinds, other words and other links.
    assert list(other.pages) == list(one.pages)
    articles = [f"/a/{n}.html" for n in range(PAGES)]
    assert sum(one.pages[p].title != other.pages[p].title for p in articles) >= PAGES - 2
    assert sum(one.pages[p].links != other.pages[p].links for p in articles) >= PAGES - 2
    # Pinned: the default site is the same on every machine and Python version (only Random.random() is drawn).
    # A deliberate change to the generator changes these: the chapter's figures change with them.
    default = generate()
    assert default.pages["/a/0.html"].title == "缓存线程：Request worker #0"
    assert fingerprint(default)[:16] == "3d60904b30f80474"
    assert {page.kind for page in default.pages.values()} == set(KINDS)
    assert len([p for p in default.pages.values() if p.kind == "article"]) == 120
    with pytest.raises(ValueError, match="10 to 10000 articles, not 5"):
        generate(5)


def test_the_pages_carry_mixed_links_and_text_in_two_languages():
    site = generate(PAGES, SEED)
    links = [link for page in site.pages.values() for link in page.links]
    for start in ("/a/", "../", "http://HOST:PORT/", "HTTP://HOST:PORT/", "mailto:", "javascript:",
                  "http://example.invalid/"):
        assert any(link.startswith(start) for link in links), start
    assert any("#section-" in link for link in links)
    assert any(link[0].isdigit() for link in links)  # "4.html", relative to /a/
    for n in range(PAGES):
        page = site.pages[f"/a/{n}.html"]
        targets = {urlsplit(urljoin(f"http://h:1/a/{n}.html", link)).path for link in page.hrefs("h:1")}
        assert 3 <= len({t for t in targets if site.pages.get(t) and site.pages[t].kind == "article"}) <= 8
        assert page.title in page.text.splitlines() and page.status == 200
        # Chinese and English words, from the fixed list.
        assert any("\u4e00" <= ch <= "\u9fff" for ch in page.text) and any(ch.isascii() and ch.isalpha()
                                                                          for ch in page.text)
    huge = site.pages["/huge.html"]
    assert sum(len(chunk) for chunk in huge.body) == HUGE_BYTES  # a new generator on each access
    assert sum(len(chunk) for chunk in huge.body) == HUGE_BYTES
    assert site.pages["/robots.txt"].body == ROBOTS_TXT.encode()


def test_reachable_honours_depth_and_robots():
    site = generate(PAGES, SEED)
    assert site.reachable(0) == {"/": 0}
    assert site.reachable(1) == {"/": 0, **{f"/a/{n}.html": 1 for n in range(5)}}
    everything = site.reachable(20)
    for depth in range(1, 6):
        within = site.reachable(depth)
        assert set(within.values()) == set(range(min(depth, max(everything.values())) + 1))
        assert within == {path: d for path, d in everything.items() if d <= depth}
    # Robots: /internal/ is never in it, unless told to ignore robots.txt.
    assert not [p for p in everything if p.startswith("/internal/")]
    rude = site.reachable(20, robots=False)
    assert rude["/internal/0.html"] == rude["/internal/1.html"] == 2 and set(everything) < set(rude)
    # Every special page at depth 2, linked from the articles 0-4; a dead link too.
    assert {path: everything[path] for path in SPECIAL} == dict.fromkeys(SPECIAL, 2)
    dead = [p for p in site.reachable(2) if p not in site.pages]
    assert dead and all(p.startswith("/a/") and int(p[3:-5]) >= PAGES for p in dead)
    # Some articles only at depth 3 (and on the 120-page site, 4).
    assert 3 in {d for p, d in everything.items() if p in site.pages}
    big = generate()
    kinds = {d for p, d in big.reachable(20).items() if p in big.pages and big.pages[p].kind == "article"}
    assert kinds == {1, 2, 3, 4}
    # max_pages: the first ones in breadth-first order.
    first = site.reachable(20, max_pages=12)
    assert len(first) == 12 and max(first.values()) <= min(d for p, d in everything.items() if p not in first)


# --- the server -------------------------------------------------------------------------

def test_a_crawl_of_the_served_pages_finds_what_reachable_says(fresh):
    """A small crawler of the test's own, over what the server sends: the links resolve, with
    robots.txt obeyed, to exactly reachable()'s pages and depths; each page is generate()'s."""
    model, host = fresh.site(), host_of(fresh)
    robots = RobotFileParser()
    robots.parse(fetch(fresh, "/robots.txt").body.decode().splitlines())

    def local(url: str) -> str | None:
        parts = urlsplit(url)
        return (parts.path or "/") if parts.scheme.lower() == "http" and parts.netloc.lower() == host else None

    def get(path: str) -> tuple[list[str], Reply | None]:
        """Fetch ``path``, following redirects by hand; returns the paths requested and the last answer."""
        chain = [path]
        while True:
            if path == "/hang.html":  # it says nothing for a while; no links to find there
                return chain, None
            reply = fetch(fresh, path)
            if reply.status == 500 and path.startswith("/flaky/"):
                reply = fetch(fresh, path)  # a retry succeeds
            location = reply.headers.get("location")
            if location is None:
                return chain, reply
            path = local(urljoin(f"http://{host}{path}", location))
            if path is None or path in chain or not robots.can_fetch(UA, f"http://{host}{path}"):
                return chain, reply
            chain.append(path)

    depths, level, checked = {"/": 0}, ["/"], set()
    with ThreadPoolExecutor(8) as pool:
        for depth in range(4):
            found = []
            for chain, reply in pool.map(get, level):
                for hop in chain[1:]:
                    depths[hop] = min(depths.get(hop, depth), depth)
                if reply is None or reply.status != 200 or not reply.headers["content-type"].startswith("text/html"):
                    continue
                if len(reply.body) > 1024 * 1024:
                    continue
                page = model.pages[chain[-1]]
                assert reply.body == page.render(host), chain
                visible = Visible()
                visible.feed(reply.body.decode("utf-8"))
                assert visible.hrefs == page.hrefs(host) and "\n".join(visible.texts) == page.text
                checked.add(chain[-1])
                for href in visible.hrefs if depth < 3 else ():
                    target = local(urljoin(f"http://{host}{chain[-1]}", href))
                    if target is not None and target not in depths and robots.can_fetch(UA, f"http://{host}{target}"):
                        depths[target] = depth + 1
                        found.append(target)
            level = found
    assert depths == model.reachable(3)
    # Every page with links it reached was generate()'s page, byte for byte.
    assert checked == {p for p in depths if p in model.pages and model.pages[p].kind in ("home", "article", "slow",
                                                                                          "flaky")}
    assert not [e for e in fresh.requests() if e["path"].startswith("/internal/")]


def test_robots_private_pages_404_head_and_the_host_in_full_links(fresh):
    model, host = fresh.site(), host_of(fresh)
    robots = fetch(fresh, "/robots.txt")
    assert (robots.status, robots.headers["content-type"]) == (200, "text/plain; charset=utf-8")
    lines = robots.body.decode().splitlines()
    assert "User-agent: *" in lines and "Disallow: /internal/" in lines and lines[0].startswith("#")
    parser = RobotFileParser()
    parser.parse(lines)
    assert not parser.can_fetch(UA, fresh.url + "/internal/0.html") and parser.can_fetch(UA, fresh.url + "/a/0.html")
    # Disallowed, but served all the same: only the crawler's manners keep it out.
    private = fetch(fresh, "/internal/0.html")
    assert private.status == 200 and private.body == model.pages["/internal/0.html"].render(host)
    for missing in (f"/a/{PAGES}.html", "/nope", "/a/"):
        reply = fetch(fresh, missing)
        assert (reply.status, reply.headers["content-type"]) == (404, "text/html; charset=utf-8"), missing
    page = fetch(fresh, "/a/0.html")
    head = fetch(fresh, "/a/0.html", method="HEAD")
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", str(len(page.body)))
    post = fetch(fresh, "/a/0.html", method="POST")
    assert (post.status, post.headers["allow"]) == (405, "GET, HEAD")
    # Full links name the Host the request was sent to ("HTTP://" ones in upper case); a bad Host: our address.
    path = next(p for p, pg in model.pages.items() if pg.kind == "article"
                and any(x.startswith(f"http://{HOST_MARK}/") for x in pg.links)
                and any(x.startswith(f"HTTP://{HOST_MARK}/") for x in pg.links))
    other = fetch(fresh, path, host=f"LocalHost:{fresh.port}").body
    assert other == model.pages[path].render(f"LocalHost:{fresh.port}")
    assert f'href="http://LocalHost:{fresh.port}/'.encode() in other
    assert f'href="HTTP://LOCALHOST:{fresh.port}/'.encode() in other
    assert fetch(fresh, path, host='x"><script>').body == model.pages[path].render(host)


def test_errors_redirects_binary_and_huge_pages(fresh):
    model = fresh.site()
    for _ in range(2):
        error = fetch(fresh, "/error/500.html")
        assert (error.status, error.headers["content-type"]) == (500, "text/html; charset=utf-8")
    old = fetch(fresh, "/old.html")
    target = model.pages["/old.html"].location
    assert (old.status, old.headers["location"]) == (301, target) and target.startswith("/a/")
    assert fetch(fresh, target).status == 200
    loop_a = fetch(fresh, "/loop/a.html")
    assert (loop_a.status, loop_a.headers["location"]) == (302, "/loop/b.html")
    loop_b = fetch(fresh, "/loop/b.html", host=f"localhost:{fresh.port}")
    assert (loop_b.status, loop_b.headers["location"]) == (302, f"http://localhost:{fresh.port}/loop/a.html")
    pdf = fetch(fresh, "/files/report.pdf")
    assert (pdf.status, pdf.headers["content-type"]) == (200, "application/pdf")
    assert pdf.body.startswith(b"%PDF-1.4") and pdf.body.endswith(b"%%EOF\n") and pdf.body == model.pages[
        "/files/report.pdf"].body
    huge = fetch(fresh, "/huge.html")
    assert (huge.status, huge.headers["content-type"], huge.headers["content-length"]) == (
        200, "text/html; charset=utf-8", str(HUGE_BYTES))
    assert len(huge.body) == HUGE_BYTES and huge.body.startswith(b"<!DOCTYPE html>") and huge.body.endswith(
        b"</html>\n")
    # A client that stops at 1 MB (a crawler's size limit) and hangs up: the site goes on.
    assert len(fetch(fresh, "/huge.html", limit=1024 * 1024).body) == 1024 * 1024
    assert fetch(fresh, "/a/1.html").status == 200
    assert [(e["path"], e["status"]) for e in answered(fresh, 10)][:3] == [
        ("/error/500.html", 500), ("/error/500.html", 500), ("/old.html", 301)]


def test_flaky_pages_fail_first_then_succeed_and_reset_restores_them(fresh):
    assert [fetch(fresh, "/flaky/0.html").status for _ in range(3)] == [500, 200, 200]
    assert [fetch(fresh, "/flaky/1.html").status for _ in range(2)] == [500, 200]  # each page on its own
    assert fetch(fresh, "/flaky/0.html").body == fresh.site().pages["/flaky/0.html"].render(host_of(fresh))
    fresh.reset()
    assert [fetch(fresh, "/flaky/0.html").status for _ in range(2)] == [500, 200]
    assert [e["status"] for e in answered(fresh, 2)] == [500, 200]


def test_the_log_records_each_request_at_arrival_and_its_answer(fresh):
    before = time.time()
    bodies = [fetch(fresh, path).body for path in ("/", "/a/3.html", "/nope.html", "/robots.txt")]
    assert fetch(fresh, "/_health").body == b'{"ok": true}'  # not logged
    assert fetch(fresh, "/a/3.html", method="HEAD").status == 200
    log = answered(fresh, 5)
    after = time.time()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("GET", "/", 200), ("GET", "/a/3.html", 200), ("GET", "/nope.html", 404), ("GET", "/robots.txt", 200),
        ("HEAD", "/a/3.html", 200)]
    assert [e["bytes"] for e in log] == [*map(len, bodies), 0]
    assert {e["ua"] for e in log} == {UA}
    for entry in log:  # every request waits --delay (0.02 s) between its arrival and its answer
        assert before <= entry["t"] and entry["t"] + 0.015 < entry["t_done"] <= after
    assert [e["id"] for e in log] == sorted(e["id"] for e in log)
    # Written when the request ARRIVES: a slow page's line is there before its answer.
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(fetch, fresh, "/slow/0.html")
        assert launcher.wait_for(lambda: fresh.requests()[-1]["path"] == "/slow/0.html", 10)
        entry = fresh.requests()[-1]
        assert (entry["status"], entry["t_done"]) == (None, None) and not waiting.done()
        assert waiting.result(10).status == 200
    assert launcher.wait_for(lambda: fresh.requests()[-1]["status"] == 200, 5)
    entry = fresh.requests()[-1]
    assert entry["t_done"] - entry["t"] >= SLOW_DELAY
    # The raw lines: one kind at arrival, one at the answer.
    lines = [json.loads(line) for line in fresh.log_file.read_text(encoding="utf-8").splitlines()]
    assert {tuple(line) for line in lines} == {("t", "path", "method", "ua", "id"),
                                               ("t_done", "path", "status", "bytes", "id")}
    fresh.reset()
    assert fresh.log_file.stat().st_size == 0 and fresh.requests() == []


def test_the_hang_page_hangs_while_other_requests_are_answered(fresh):
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        patient = pool.submit(fetch, fresh, "/hang.html", timeout=30)
        assert launcher.wait_for(lambda: [e["path"] for e in fresh.requests()] == ["/hang.html"], 10)
        with pytest.raises(TimeoutError):
            fetch(fresh, "/hang.html", timeout=0.3)  # an impatient client: its timeout comes first
        asked = time.monotonic()
        assert fetch(fresh, "/a/1.html").status == 200 and time.monotonic() - asked < HANG / 2
        assert not patient.done()
        reply = patient.result(30)
    assert reply.status == 200 and time.monotonic() - started >= HANG
    assert reply.body == fresh.site().pages["/hang.html"].render(host_of(fresh))


def test_a_second_site_on_a_taken_port_is_a_clear_error(site, tmp_path):
    with pytest.raises(launcher.PortInUse, match=rf"port {site.port} .*another program") as error:
        launcher.start_crawl_site(tmp_path / "other.log", pages=PAGES, port=site.port)
    assert "cannot listen on 127.0.0.1" in str(error.value)
    assert not (tmp_path / "other.log").exists()  # nothing written for a site that never ran
    assert [p.port for p in launcher.running() if p.name == "crawl-site"].count(site.port) == 1
    assert site.answers()


def test_bad_options_are_clear_errors(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "services.crawl_site", "--port", str(launcher.free_port()),
                               *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)

    small = run("--pages", "5", "--log", str(tmp_path / "a.log"))
    assert small.returncode == 2 and "--pages must be 10 to 10000, not 5" in small.stderr
    negative = run("--delay", "-1", "--log", str(tmp_path / "a.log"))
    assert negative.returncode == 2 and "--delay must be 0 or more seconds" in negative.stderr
    (tmp_path / "file").write_text("")
    unwritable = run("--log", str(tmp_path / "file" / "site.log"))
    assert unwritable.returncode == 1 and "cannot write the log" in unwritable.stderr


def test_requests_are_answered_concurrently_and_sigterm_stops_even_a_hanging_one(tmp_path):
    """8 requests that each wait 0.3 s take about 0.3 s together, not 2.4 s; then a SIGTERM
    ends the server within a second or two while a request to /hang.html (60 s) waits."""
    slow = launcher.start_crawl_site(tmp_path / "site.log", pages=PAGES, delay=0.3, hang=60)
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda n: fetch(slow, f"/a/{n}.html"), range(8)))
        elapsed = time.monotonic() - started
        assert [r.status for r in replies] == [200] * 8
        assert 0.3 <= elapsed < 1.2, f"8 requests of 0.3 s took {elapsed:.2f} s: served one after the other?"
        log = answered(slow, 8)
        assert all(e["t_done"] - e["t"] >= 0.29 for e in log)
        assert max(e["t"] for e in log) < min(e["t_done"] for e in log)  # all had arrived before one was answered

        hanging = socket.create_connection(("127.0.0.1", slow.port), timeout=10)
        try:
            hanging.sendall(f"GET /hang.html HTTP/1.0\r\nHost: {host_of(slow)}\r\n\r\n".encode())
            assert launcher.wait_for(lambda: slow.requests()[-1]["path"] == "/hang.html", 10)
            pid, port = slow.pid, slow.port
            stopping = time.monotonic()
            slow.stop()
            took = time.monotonic() - stopping
        finally:
            hanging.close()
        assert (slow.stopped_by, slow.popen.returncode) == ("SIGTERM", 0)
        assert took < 2.5, f"the stop took {took:.1f} s"
        assert not psutil.pid_exists(pid) and not port_taken(port)
        assert "crawl site stopped" in slow.log()
    finally:
        slow.cleanup()


def test_the_shown_command_starts_the_same_site_from_the_repository_root():
    scratch = make_scratch("crawl-site-")
    try:
        log = scratch / "site.log"
        proc = launcher.start_crawl_site(log, pages=PAGES, seed=SEED, delay=0, hang=2)
        try:
            shown, port = proc.display, proc.port
        finally:
            proc.cleanup()
        assert shown == (f"python -m services.crawl_site --port {port} --pages {PAGES} --seed {SEED} --delay 0 "
                         f"--hang 2 --log {repo_relative(log)}")
        assert not Path(repo_relative(log)).is_absolute()
        log.unlink()
        # Typed into a new terminal at the repository's root, .venv activated, nothing else from here.
        script = f"set -e\nsource {shlex.quote(str(Path(sys.prefix) / 'bin' / 'activate'))}\n{shown}"
        terminal = launcher.Proc("terminal-crawl-site", ["bash", "-c", script], cwd=REPO_ROOT,
                                 env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ["HOME"]})
        try:
            terminal.wait_until_listening(port, 30, answers=lambda: launcher.procs.http_answers(
                f"http://127.0.0.1:{port}/_health", 0.5))
            model = generate(PAGES, SEED)
            for path in ("/", "/a/7.html", f"/a/{PAGES - 1}.html"):
                assert fetch(port, path).body == model.pages[path].render(f"127.0.0.1:{port}"), path
            assert fetch(port, f"/a/{PAGES}.html").status == 404
            lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
            assert [line["path"] for line in lines if "t" in line][:4] == [
                "/", "/a/7.html", f"/a/{PAGES - 1}.html", f"/a/{PAGES}.html"]
        finally:
            terminal.cleanup()
    finally:
        remove_scratch(scratch)
