"""Chapter 10's exercise checks (selfcheck/ch10.py) without a notebook: the
reference answers pass, the empty stubs fail with "还没有答案", each plausible
wrong answer (tests/wrong_answers/ch10.py) gets its own hint, and the same
answer gets the same verdict whatever ran before it. Against real processes: a
crawl site (launcher.start_crawl_site, a small one), an embedded broker, the
wheel's FFmpeg (exercises 4 and 5: one 60 s clip for the module, in the kernel's
scratch folder, as in the notebook) and, for exercises 3 and 5, the new workers
each check starts (two thread workers; one prefork worker).

The cells are run the way the notebook runs them: a ``%%writeblock FILE BLOCK``
cell through selfcheck.Workspace (what the cell magic calls), any other cell
with exec() in the namespace the check is given (the kernel's globals()).
"""

from __future__ import annotations

import time

import httpx
import pytest

import launcher
from demo_tasks import video
from instruments.rate_windows import max_in_window
from selfcheck import ch10
from tests.helpers import run_cell
from tests.wrong_answers.ch10 import WRONG

#: The reference answers, as the notebook's collapsed cells hold them.
REFERENCE = {
    1: '''# 参考答案：练习 1（先自己做，再展开看）
from urllib.parse import urljoin, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical(href, base):
    if not href:
        return None                                # an empty href: no other page
    parts = urlsplit(urljoin(base, href))          # relative -> absolute; the scheme comes out lower-case
    if parts.scheme not in DEFAULT_PORTS:
        return None                                # mailto:, javascript:, tel:, ftp:, ...: not a page
    host = parts.hostname                          # lower-case
    netloc = host if parts.port in (None, DEFAULT_PORTS[parts.scheme]) else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))   # no fragment
''',
    2: '''# 参考答案：练习 2（先自己做，再展开看）
def busiest(times, width=1.0):
    ordered = sorted(times)                  # a log's arrival times need not be in order
    most, first = 0, 0
    for last, t in enumerate(ordered):
        while ordered[first] + width <= t:   # the window [ordered[first], + width) ends before t
            first += 1
        most = max(most, last - first + 1)   # ordered[first..last]: all in [ordered[first], + width)
    return most
''',
    3: '''%%writeblock my_tasks.py exercise-3
@app.task(bind=True, max_retries=None)     # every wait for a token is a retry: never give up
def polite_get(self, url):
    host = urlsplit(url).netloc                # one bucket per site: the same key in every worker
    ratelimit.take_or_retry(self, client, host, RATE)   # no token left: the task comes back a moment later
    return httpx.get(url, timeout=2).status_code
''',
    4: '''# 参考答案：练习 4（先自己做，再展开看）
def progress_percents(text, total):
    percents, block = [], {}
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        block[key] = value                             # a block: key=value lines ...
        if key != "progress":
            continue                                   # ... up to its progress= line
        if value == "end":
            percent = 100.0                            # FFmpeg is done, whatever out_time says
        elif block.get("out_time_us", "N/A") == "N/A":
            percent = 0.0                              # no frame written yet
        else:
            seconds = int(block["out_time_us"]) / 1_000_000    # microseconds (out_time_ms too!)
            percent = min(100.0, max(0.0, 100 * seconds / total))
        percents.append(round(percent, 1))
        block = {}
    return percents
''',
    5: '''%%writeblock my_tasks.py exercise-5
@app.task(bind=True)                           # bind=True: the task gets self, for update_state
def shrink(self, src, dst, height):
    def report(done, total):                   # called for every -progress block FFmpeg writes
        percent = round(100 * done / total, 1) if total else 0.0
        self.update_state(state="PROGRESS", meta={"percent": percent})

    info = video.transcode(src, dst, height=height, on_progress=report)
    return {"height": info.height, "duration": info.duration}   # a dict: JSON stores it, a VideoInfo not
''',
}

#: Exercise 3 the other way the chapter allows: wait in the task for the next token.
ACQUIRE_AND_SLEEP = '''%%writeblock my_tasks.py exercise-3
import time


@app.task
def polite_get(url):
    host = urlsplit(url).netloc
    while not (token := ratelimit.acquire(client, host, RATE)):
        time.sleep(token.retry_after)          # the bucket says when the next token is there
    return httpx.get(url, timeout=2).status_code
'''

#: The empty answer cells.
EMPTY = {
    1: "# 练习 1：函数 canonical(href, base)，返回规范化的绝对网址，不该跟随的链接返回 None\n"
       "def canonical(href, base):\n    ...\n",
    2: "# 练习 2：函数 busiest(times, width=1.0)，返回任意 [t, t+width) 窗口里最多有几个请求\n"
       "def busiest(times, width=1.0):\n    ...\n",
    3: "%%writeblock my_tasks.py exercise-3\n# 练习 3：任务 polite_get(url)\n",
    4: "# 练习 4：函数 progress_percents(text, total)，每一块 -progress 输出给一个百分数\n"
       "def progress_percents(text, total):\n    ...\n",
    5: "%%writeblock my_tasks.py exercise-5\n# 练习 5：任务 shrink(src, dst, height)\n",
}


def verdict(ns: dict, number: int, source: str) -> list[str]:
    run_cell(ns, source)
    found = ch10.exercises.problems(number, ns)
    assert isinstance(found, list)
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    proc = launcher.start_crawl_site(tmp_path_factory.mktemp("ch10-site") / "site.log", pages=30)
    yield proc
    proc.cleanup()


@pytest.fixture(scope="module")
def kernel(module_broker, site, tmp_path_factory):
    """What the chapter's kernel has when the exercises run: site, broker, exercises_dir with my_tasks.py."""
    folder = tmp_path_factory.mktemp("ch10") / "exercises"
    folder.mkdir()
    (folder / ch10.FILE).write_text(ch10.STARTER, encoding="utf-8")
    return {"site": site, "broker": module_broker, "exercises_dir": folder}


def wrong_answers_get_their_hints(ns: dict, number: int) -> None:
    for wrong in WRONG[number]:
        found = verdict(ns, number, wrong.cells[0])
        assert found and any(wrong.hint in p for p in found), (wrong.why, found)


# --- Exercise 1: the URL a crawler de-duplicates on -------------------------------------------

def test_exercise_1_reference_passes_again_and_again_and_wrong_answers_get_their_hints(kernel):
    ns = dict(kernel)
    assert verdict(ns, 1, REFERENCE[1]) == []
    assert verdict(ns, 1, REFERENCE[1]) == []
    empty = verdict(ns, 1, EMPTY[1])
    assert len(empty) == 1 and empty[0].startswith("还没有答案"), empty
    wrong_answers_get_their_hints(ns, 1)
    assert verdict(ns, 1, REFERENCE[1]) == []


def test_exercise_1_names_the_first_wrong_link_and_what_was_expected_on_the_sites_own_address(kernel, site):
    ns = dict(kernel)
    run_cell(ns, WRONG[1][0].cells[0])            # the fragment kept
    base = f"{site.url}/a/7.html"
    assert ch10.exercises.problems(1, ns) == [
        f"canonical('/a/3.html#top', {base!r}) 返回了 '{site.url}/a/3.html#top'，应该是 '{site.url}/a/3.html'："
        "去掉 # 后面的片段（fragment）：它只是同一页里的位置，不是另一个页面（17 个例子里有 3 个不对，这是第一个）"]
    # Without the site (its cell not run yet), the same links on the chapter's example address.
    assert "'http://127.0.0.1:8010/a/3.html'" in ch10.exercises.problems(1, {"canonical": ns["canonical"]})[0]


def test_exercise_1_the_table_holds_the_forms_the_chapters_site_writes(site):
    """Every href form an article of the site really writes is in the table (or normalises like one)."""
    hrefs = {href for page in site.site().pages.values() if page.kind == "article"
             for href in page.hrefs(site.url.removeprefix("http://"))}
    table = dict(ch10.url_cases(site.url))
    assert {"/a/3.html", "4.html", "../a/5.html", "/a/3.html#top", f"HTTP://{site.url[7:].upper()}/a/6.html",
            "mailto:a@b", "javascript:void(0)", "", "?page=2", "http://example.com:80/x"} <= set(table)
    assert any(h.startswith("mailto:") for h in hrefs) and any(h.startswith("javascript:") for h in hrefs)
    assert any(h.startswith("HTTP://") for h in hrefs) and any("#" in h for h in hrefs)


# --- Exercise 2: the busiest window in a request log -------------------------------------------

def test_exercise_2_reference_passes_again_and_again_and_wrong_answers_get_their_hints(kernel):
    ns = dict(kernel)
    assert verdict(ns, 2, REFERENCE[2]) == []
    empty = verdict(ns, 2, EMPTY[2])
    assert len(empty) == 1 and empty[0].startswith("还没有答案"), empty
    wrong_answers_get_their_hints(ns, 2)
    assert verdict(ns, 2, REFERENCE[2]) == []
    assert verdict(ns, 2, REFERENCE[2]) == []


def test_exercise_2_compares_with_the_sites_own_log(kernel, site):
    for n in range(12):
        httpx.get(f"{site.url}/a/{n}.html?ex2-test", timeout=5).raise_for_status()
    logged = ch10.site_times(site)
    assert len(logged) >= 12
    seen = []

    def busiest(times, width=1.0):
        seen.append((list(times), width))
        return max_in_window(times, width)

    assert ch10.exercises.problems(2, {**kernel, "busiest": busiest}) == []
    assert (logged, 1.0) in seen and (logged, 0.1) in seen, "the site's arrival times, as logged"
    # A function right on the small cases only is caught by the made-up minute and by the log.
    assert ch10.exercises.problems(2, {"busiest": lambda times, width=1.0: min(len(times), 4)})


# --- Exercise 3: a per-site limit over all workers ---------------------------------------------

def test_exercise_3_reference_stub_and_the_other_way_to_wait(kernel, site):
    ns = dict(kernel)
    before = len(site.requests())
    started = time.monotonic()
    assert verdict(ns, 3, REFERENCE[3]) == []
    took = time.monotonic() - started  # at RATE a second, CALLS calls cannot all be done sooner:
    assert took >= (ch10.CALLS - 1) / ch10.RATE * 0.75, f"the check took only {took:.1f} s"
    mine = [r for r in site.requests()[before:] if "ex3=" in r["path"] and "t" in r]
    assert len(mine) == ch10.CALLS, "each call asked the site once"
    assert max_in_window([r["t"] for r in mine], ch10.WINDOW) <= ch10.MOST
    empty = verdict(ns, 3, EMPTY[3])
    assert empty == ["还没有答案：在 %%writeblock my_tasks.py exercise-3 的单元格里定义任务 polite_get(url)"]
    assert verdict(ns, 3, ACQUIRE_AND_SLEEP) == []
    assert len(site.requests()) >= before + 2 * ch10.CALLS, "the site's log is never reset"


def test_exercise_3_a_per_worker_limit_gets_its_hint_and_the_reference_passes_again_after_it(kernel):
    """Celery's rate_limit="5/s" is caught because two workers run the calls: each keeps its own
    limit, together they let twice as many through. (Each exercise-3 answer takes seconds of real
    calls; `python -m tests.exercise_matrix` runs every wrong answer of tests/wrong_answers/ch10.py.)"""
    ns = dict(kernel)
    [per_worker] = [w for w in WRONG[3] if w.why.startswith('rate_limit="5/s"')]
    found = verdict(ns, 3, per_worker.cells[0])
    assert found and any(per_worker.hint in p for p in found), found
    assert verdict(ns, 3, REFERENCE[3]) == []


def test_exercise_3_asks_for_the_starter_and_the_site_first(kernel):
    assert ch10.exercises.problems(3, {}) == [ch10.START_FIRST]
    assert ch10.exercises.problems(3, {k: v for k, v in kernel.items() if k != "site"}) == [ch10.PREPARE_FIRST]


# --- Exercise 4: a percentage per -progress block ----------------------------------------------

def test_exercise_4_reference_passes_again_and_again_and_wrong_answers_get_their_hints(kernel):
    ns = dict(kernel)
    assert verdict(ns, 4, REFERENCE[4]) == []
    assert verdict(ns, 4, REFERENCE[4]) == []
    empty = verdict(ns, 4, EMPTY[4])
    assert len(empty) == 1 and empty[0].startswith("还没有答案"), empty
    wrong_answers_get_their_hints(ns, 4)
    assert verdict(ns, 4, REFERENCE[4]) == []


def test_exercise_4_reads_what_the_wheels_ffmpeg_really_writes():
    """The real text the check compares with: several blocks, out_time_ms equal to out_time_us
    (microseconds both: what the exercise's prose teaches), the last block progress=end."""
    text, total = ch10.ffmpeg_progress()
    blocks = ch10.progress_blocks(text)
    assert total == ch10.PROGRESS_CLIP_SECONDS and len(blocks) >= 3, text
    assert all(b["out_time_ms"] == b["out_time_us"] for b in blocks), "out_time_ms is in microseconds too"
    timed = [int(b["out_time_us"]) for b in blocks if b["out_time_us"] != "N/A"]
    assert timed == sorted(timed) and 0.9 * total * 1e6 < timed[-1] <= total * 1e6, "microseconds of a 10 s clip"
    assert [b["progress"] for b in blocks] == ["continue"] * (len(blocks) - 1) + ["end"]
    percents = ch10.expected_percents(text, total)
    assert percents == sorted(percents) and percents[-1] == 100.0 and 0 <= percents[0] < 50
    assert ch10.ffmpeg_progress() == (text, total), "made once per process"


def test_exercise_4_names_the_first_wrong_block_and_what_it_should_be():
    def stops_early(text, total):        # right, except that progress=end is not looked at
        return ch10.expected_percents(text, total, end=False)

    assert ch10.exercises.problems(4, {"progress_percents": stops_early}) == [
        "最后一块是 progress=end（out_time_us 比总长少一点）：progress_percents(…, total=4)：第 3 块（out_time_us="
        "3920000，progress=end）得到 98.0，应该是 100.0：progress=end 的那一块说 FFmpeg 做完了：给 100.0（最后一块的 "
        "out_time_us 常常比总长少一两帧）"]
    unrounded = ch10.exercises.problems(4, {"progress_percents": lambda text, total: [
        p + 0.04 for p in ch10.expected_percents(text, total)]})
    assert len(unrounded) == 1 and "保留 1 位小数" in unrounded[0], unrounded


# --- Exercise 5: a transcode task that reports its progress ------------------------------------

def _left_running() -> list[str]:
    return [p.name for p in launcher.running() if p.name == f"worker-{ch10.SHRINK_WORKER}"]


def test_exercise_5_reference_passes_and_the_stub_asks_for_an_answer(kernel):
    ns = dict(kernel)
    assert verdict(ns, 5, REFERENCE[5]) == []
    out = kernel["exercises_dir"] / "exercise-5"
    assert video.probe(out / "small.mp4").height == ch10.SHRINK_HEIGHT
    assert not _left_running(), "the check stops its worker"
    empty = verdict(ns, 5, EMPTY[5])
    assert empty == ["还没有答案：在 %%writeblock my_tasks.py exercise-5 的单元格里定义任务 shrink(src, dst, height)"]
    assert ch10.exercises.problems(5, {}) == [ch10.START_FIRST]


def test_exercise_5_a_task_without_update_state_gets_its_hint_and_the_reference_passes_after_it(kernel):
    """Each exercise-5 answer costs a worker and a real transcode (about 5 s): here one wrong answer;
    `python -m tests.exercise_matrix` (and the learner-mode test) runs every one of tests/wrong_answers/ch10.py."""
    ns = dict(kernel)
    [silent] = [w for w in WRONG[5] if w.why == "no update_state"]
    found = verdict(ns, 5, silent.cells[0])
    assert found and any(silent.hint in p for p in found), found
    assert not _left_running()
    assert verdict(ns, 5, REFERENCE[5]) == []


def test_the_answers_here_are_the_notebooks_own_cells():
    """What these tests run is what the notebook holds: its stubs and its collapsed reference answers."""
    import nbformat

    from launcher.paths import REPO_ROOT

    nb = nbformat.read(REPO_ROOT / "notebooks" / "10_crawling_and_media.ipynb", as_version=4)

    def tagged(tag: str) -> list[str]:
        return [c.source for c in nb.cells if tag in c.metadata.get("tags", [])]

    assert ch10.exercises.numbers == sorted(REFERENCE) == sorted(EMPTY)
    for n in ch10.exercises.numbers:
        assert tagged(f"exercise-{n}-reference") == [REFERENCE[n].rstrip("\n")], f"exercise {n}"
        assert tagged(f"exercise-{n}-answer") == [EMPTY[n].rstrip("\n")], f"exercise {n}"
