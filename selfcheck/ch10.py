"""Chapter 10's exercise checks, against the chapter's real crawl site (``site``,
services/crawl_site.py, its own request log), the wheel's real FFmpeg and, for
exercises 3 and 5, new workers for the learner's ``my_tasks.py``.

1. ``canonical(href, base)`` (in the notebook): the absolute, normalised URL a
   crawler de-duplicates on, or None for a link it must not follow. The check
   feeds a fixed table of links as the chapter's site writes them (relative,
   with a fragment, an upper-case scheme and host, a default port, a query of its
   own, mailto:, javascript:, tel:, ftp:, an empty href), on a base URL of the
   chapter's site (or http://127.0.0.1:8010 when the site is not there), and
   says what is wrong with the first link the function gets wrong, and what it
   should have returned.
2. ``busiest(times, width=1.0)`` (in the notebook): the most requests in any
   half-open window [t, t + width) of the arrival times (in any order); 0 for
   none. Fixed cases, a seeded random one, and the arrival times in the site's
   own request log (``site.requests()``), each compared to
   ``instruments.rate_windows.max_in_window``.
3. ``polite_get(url)`` in ``my_tasks.py`` (``%%writeblock my_tasks.py
   exercise-3``): at most RATE (5) requests a second to the site over ALL
   workers, by taking a token from chapter 08's bucket in Redis
   (demo_tasks/ratelimit.py) before each request; it returns the HTTP status
   code. The check starts TWO workers for the file (queue ``ch10-exercises``,
   threads, 2 calls at a time each: a limit that each worker keeps on its own
   lets twice RATE through), empties the site's bucket, sends CALLS (20) calls, each to a path
   of its own with this run's mark in the query, and waits for them (WAIT,
   giving up earlier when nothing finishes for STALL seconds). The verdict comes
   from the tasks' states and results, and from the SITE's log of the requests
   that carry this run's mark: each arrived once, no window of WINDOW (2)
   seconds holds more than MOST (12) of them, and all of them took at least
   MIN_SPAN seconds (see those constants for why both, and why the room).
4. ``progress_percents(text, total)`` (in the notebook): one percentage per block
   of what FFmpeg writes with ``-progress pipe:1`` (``out_time_us`` of ``total``
   seconds, clamped to 0-100, rounded to 1 decimal; ``N/A`` gives 0.0 and the
   ``progress=end`` block 100.0). Fixed cases (PROGRESS_CASES), then the text
   the wheel's real FFmpeg writes while it encodes a short clip (made once per
   process: ``ffmpeg_progress()``), each compared to ``expected_percents``; the
   hint names the first wrong block and what it should be.
5. ``shrink(src, dst, height)`` in ``my_tasks.py`` (``%%writeblock my_tasks.py
   exercise-5``): a bound task that transcodes with ``video.transcode``, reports
   ``update_state(state="PROGRESS", meta={"percent": ...})`` and returns
   ``{"height": ..., "duration": ...}``. The check makes a CLIP_SECONDS clip in
   the chapter's scratch folder (once: it is kept), starts ONE prefork worker
   (concurrency 1, ``-n exercises-5``, same queue), SUBSCRIBEs to the result
   backend's channel for a task id of its own (Celery's Redis backend PUBLISHes
   every state it stores on ``celery-task-meta-<id>``) before it sends the task,
   so it sees every state in order without polling, and judges the states, the
   result and the output folder.

Whatever ran before, the same answer gets the same verdict: checks 3 and 5 use
marks and task ids no earlier run used, read only the records of this run (the
site's log of this run's requests; this task's channel; an output folder made
empty first), start their workers afresh (they import the file as it is now) and
purge the exercise's queue before and after; the site's log is never reset (the
chapter's own records would vanish). Checks 1, 2 and 4 only read.
"""

from __future__ import annotations

import functools
import random
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import selfcheck

exercises = selfcheck.Exercises(10)

#: The learner's file, in the chapter's scratch folder (``exercises_dir``).
FILE = "my_tasks.py"
#: The queue the exercise's workers listen on (not the chapter worker's).
QUEUE = "ch10-exercises"

START_FIRST = "先运行“练习”一节开头的单元格（它写好 my_tasks.py 的开头）"
PREPARE_FIRST = "先运行本章“准备”一节的单元格（它启动要爬的网站 site）"

#: The beginning of my_tasks.py: the exercises add their tasks below it.
STARTER = '''"""Your tasks for chapter 10's exercises 3 and 5, all on the queue ch10-exercises.

Exercise 3 (polite_get): the check runs it on TWO thread workers (RATE must hold for both
together), as these two commands start them:
celery -A my_tasks worker --loglevel=info --queues=ch10-exercises --pool=threads --concurrency=2 -n exercises-1@%h
celery -A my_tasks worker --loglevel=info --queues=ch10-exercises --pool=threads --concurrency=2 -n exercises-2@%h

Exercise 5 (shrink): the check runs it on ONE prefork worker that runs one task at a time
(FFmpeg uses the cores), as this command starts it:
celery -A my_tasks worker --loglevel=info --queues=ch10-exercises --pool=prefork --concurrency=1 -n exercises-5@%h
"""

import os
from urllib.parse import urlsplit

import httpx
import redis
from celery import Celery

from demo_tasks import ratelimit, video

app = Celery("my_tasks", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
app.conf.task_default_queue = "ch10-exercises"    # not the queue of the chapter's worker

#: The Redis that holds chapter 08's token buckets: one bucket per key, shared by every worker.
client = redis.Redis.from_url(os.environ["REDIS_URL"])
#: At most this many requests a second to one site, over ALL workers together.
RATE = 5

# Each exercise's answer is a block below, written by the notebook (%%writeblock my_tasks.py exercise-N).
'''


# --- Exercise 1: the URL a crawler de-duplicates on -------------------------------------------

#: The base when the chapter's site is not there (the port the chapter's shown commands use).
FALLBACK_SITE = "http://127.0.0.1:8010"


def url_cases(site_url: str) -> list[tuple[str, str | None]]:
    """(href as a page of ``site_url`` writes it, the canonical URL or None), the base being
    ``site_url + "/a/7.html"``. The order: the forms the chapter's site writes first."""
    origin = site_url.rstrip("/")
    hostport = urlsplit(origin).netloc
    page = f"{origin}/a/7.html"
    return [
        ("/a/3.html", f"{origin}/a/3.html"),
        ("4.html", f"{origin}/a/4.html"),
        ("../a/5.html", f"{origin}/a/5.html"),
        ("/a/3.html#top", f"{origin}/a/3.html"),
        (f"HTTP://{hostport.upper()}/a/6.html", f"{origin}/a/6.html"),
        ("http://WWW.Example.COM/Docs/", "http://www.example.com/Docs/"),
        ("http://example.com:80/x", "http://example.com/x"),
        ("HTTPS://example.com:443", "https://example.com/"),
        ("http://example.com:8080/Docs/Index.HTML", "http://example.com:8080/Docs/Index.HTML"),
        ("?page=2", f"{page}?page=2"),
        ("/search?q=Celery&b=2&a=1#results", f"{origin}/search?q=Celery&b=2&a=1"),
        ("#section-2", page),
        ("mailto:a@b", None),
        ("javascript:void(0)", None),
        ("tel:+86-10-12345678", None),
        ("ftp://example.com/file.txt", None),
        ("", None),
    ]


def _base(ns: dict) -> tuple[str, str]:
    """(the site's origin, the base URL the links are on): the chapter's site if it is there."""
    url = getattr(ns.get("site"), "url", None)
    origin = url.rstrip("/") if isinstance(url, str) and url.startswith("http") else FALLBACK_SITE
    return origin, f"{origin}/a/7.html"


def _split(url: str):
    try:
        parts = urlsplit(url)
        return parts, parts.port
    except ValueError:
        return None, None


def url_problem(href: str, base: str, want: str | None, got: object) -> str | None:
    """The hint for ``canonical(href, base)`` returning ``got`` (None if that is right)."""
    if got == want and (got is None or isinstance(got, str)):
        return None
    call = f"canonical({href!r}, {base!r}) 返回了 {got!r}，应该是 {want!r}"
    scheme = urlsplit(href).scheme.lower() if href else ""
    if want is None:
        if not href:
            return f"{call}：空的 href 不指向别的页面，不跟随，返回 None（urljoin 会把它变成 base 本身）"
        if scheme in ("mailto", "javascript", "tel"):
            return (f"{call}：{scheme}: 链接不是网页（发邮件、运行脚本、打电话），爬虫不能跟随，返回 None"
                    "（只跟随 http 和 https）")
        return f"{call}：只跟随 http 和 https 的链接，{scheme}: 的返回 None"
    if got is None:
        return f"{call}：这是一个要跟随的网页链接，不该返回 None"
    if not isinstance(got, str):
        return f"{call}：要返回一个字符串（网址），或者 None"
    parts, port = _split(got)
    expected = urlsplit(want)
    if parts is None or not parts.scheme or not parts.netloc:
        return f"{call}：相对链接要先用 urljoin(base, href) 变成绝对网址（协议和主机都有）"
    if parts.fragment or got.endswith("#"):
        return f"{call}：去掉 # 后面的片段（fragment）：它只是同一页里的位置，不是另一个页面"
    if parts.scheme.lower() == expected.scheme and port == {"http": 80, "https": 443}.get(expected.scheme):
        return f"{call}：默认端口不写：http 的 :80、https 的 :443 去掉，它们和不写是同一个网址"
    if (parts.scheme != parts.scheme.lower() or parts.netloc != parts.netloc.lower()) \
            and got.lower() == want.lower():
        return f"{call}：协议和主机名不区分大小写，统一改成小写（HTTP://HOST 和 http://host 是同一个网址）"
    if got.lower() == want.lower():
        return (f"{call}：路径和查询串区分大小写（/Docs 和 /docs 可能是两个页面）：只把协议和主机改成小写，"
                "路径和查询串保持原样")
    if parts.path == "" and expected.path == "/":
        return f"{call}：没有路径的网址，路径写成 /（http://host 和 http://host/ 是同一个页面）"
    if parts.query != expected.query:
        return f"{call}：? 后面的查询串保持原样（不排序、不去掉）：?page=2 和没有查询串是两个页面"
    return call


@exercises.register(1)
def canonical_urls(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "canonical", "返回规范化的绝对网址，不该跟随的链接返回 None")
    if problems:
        return problems
    function = ns["canonical"]
    origin, base = _base(ns)
    cases = url_cases(origin)
    wrong = []
    for href, want in cases:
        try:
            got = function(href, base)
        except Exception as exc:
            skip = ("：这样的链接不跟随，先看协议（urlsplit(...).scheme），不是 http、https 就返回 None"
                    if want is None else "")
            wrong.append(f"canonical({href!r}, {base!r}) 出错：{type(exc).__name__}: {exc}{skip}")
            continue
        problem = url_problem(href, base, want, got)
        if problem:
            wrong.append(problem)
    if not wrong:
        return []
    more = f"（{len(cases)} 个例子里有 {len(wrong)} 个不对，这是第一个）" if len(wrong) > 1 else ""
    return [wrong[0] + more]


# --- Exercise 2: the busiest window in a request log -------------------------------------------

#: (times, width, what the case is about): the fixed cases, simplest first. Every time is exact in
#: binary, so that t + width lands exactly on the next time where a case is about that edge.
BUSIEST_CASES: list[tuple[list[float], float, str]] = [
    ([], 1.0, "没有请求"),
    ([3.0], 1.0, "只有一个请求"),
    ([0.5, 0.75, 1.25, 1.375], 1.0, "跨过整秒的一串请求"),
    ([0.0, 0.25, 0.5, 0.75, 1.0], 1.0, "正好在窗口结尾到达的请求"),
    ([2.0, 2.0, 2.0, 3.0], 1.0, "同一时刻到达的几个请求"),
    ([10.5, 0.25, 10.75, 0.5, 10.625, 11.25, 0.0], 1.0, "没排序的到达时间"),
    ([0.0, 0.125, 0.25, 0.375, 0.5], 0.25, "width=0.25 的窗口"),
    ([1, 2, 3, 7], 2.0, "整数时间、width=2"),
]


def _random_times(count: int = 300, seed: int = 10) -> list[float]:
    """Arrival times of a made-up log: bursts and quiet stretches over a minute, unsorted."""
    rng = random.Random(seed)
    times = [rng.uniform(0, 60) for _ in range(count)]
    times += [30 + rng.uniform(0, 0.7) for _ in range(12)]      # a burst
    rng.shuffle(times)
    return [round(t, 6) for t in times]


#: At most this many of the site's arrival times (the newest): a check takes a moment, even with a
#: learner's answer that compares every pair.
SITE_TIMES = 1000


def site_times(site) -> list[float]:
    """The arrival times in the site's request log (the newest SITE_TIMES), in the log's order."""
    times = [r["t"] for r in site.requests() if isinstance(r.get("t"), (int, float))]
    return times[-SITE_TIMES:]


def _closed(times, width: float) -> int:
    """The most in a closed window [t, t + width]: the off-by-one the half-open window avoids."""
    ordered = sorted(times)
    return max((sum(1 for u in ordered if t <= u <= t + width) for t in ordered), default=0)


def _buckets(times, width: float) -> int:
    """The most in one of the fixed buckets [k*width, (k+1)*width): windows that start on whole seconds only."""
    counts: dict[int, int] = {}
    for t in times:
        counts[int(t // width)] = counts.get(int(t // width), 0) + 1
    return max(counts.values(), default=0)


def _shown(times) -> str:
    return repr(list(times)) if len(times) <= 8 else f"[{len(times)} 个时间]"


def busiest_problem(function, times, width: float, what: str) -> str | None:
    """What is wrong with ``function`` on one case (None if it is right)."""
    from instruments.rate_windows import max_in_window

    want = max_in_window(times, width)
    call = f"{what}：busiest({_shown(times)}, width={width:g})"
    try:
        got = function(list(times), width)
    except Exception as exc:
        empty = "：没有请求时返回 0（max() 遇到空序列会出错，给它 default=0）" if not times else ""
        return f"{call} 出错：{type(exc).__name__}: {exc}{empty}"
    if isinstance(got, bool) or not isinstance(got, (int, float)) or (isinstance(got, float) and not got.is_integer()):
        return f"{call} 返回了 {got!r}：要返回一个整数（窗口里最多的请求数）"
    if got == want:
        return None
    head = f"{call} 返回了 {got!r}，应该是 {want}"
    if got == _closed(times, width) and got > want:
        return (f"{head}：窗口是半开的 [t, t+width)：正好在 t+width 到达的请求属于下一个窗口，不算进来"
                "（比较用 <，不用 <=）")
    if got == _buckets(times, width) and got < want:
        return (f"{head}：窗口可以从任何时刻开始，不只是整秒：0.5 秒到 1.5 秒之间的请求也在同一个 "
                f"{width:g} 秒的窗口里，按 int(t) 分组会把它们拆开；"
                "从每个请求的时刻开一个窗口，数 [t, t+width) 里有几个")
    try:
        on_sorted = function(sorted(times), width)
    except Exception:
        on_sorted = None
    if on_sorted == want:
        return f"{head}：到达时间不一定排好了序（日志里有先后交错的请求）：先 sorted(times)"
    if width != 1.0:
        try:
            with_one = function(list(times), 1.0)
        except Exception:
            with_one = None
        if got == with_one == max_in_window(times, 1.0):
            return f"{head}：用参数 width 作窗口的长度，不要写死 1 秒"
    return head


@exercises.register(2)
def busiest_window(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "busiest", "返回任意 [t, t+width) 窗口里最多有几个请求")
    if problems:
        return problems
    function = ns["busiest"]
    cases = list(BUSIEST_CASES)
    made_up = _random_times()
    cases += [(made_up, 1.0, "一分钟里 312 个请求（有一阵密集的）"), (made_up, 0.5, "同样的请求、width=0.5")]
    site = ns.get("site")
    if site is not None and hasattr(site, "requests"):
        times = site_times(site)
        if times:
            cases += [(times, 1.0, f"本章网站的请求记录（{len(times)} 个到达时间）"),
                      (times, 0.1, f"本章网站的请求记录（{len(times)} 个到达时间）")]
    for times, width, what in cases:
        problem = busiest_problem(function, times, width, what)
        if problem:
            return [problem]
    return []


# --- Exercise 3: a per-site limit over all workers ---------------------------------------------

TASK = "my_tasks.polite_get"
#: The limit the STARTER sets (requests a second to the site, over all workers).
RATE = 5
#: How many calls the check sends (at RATE a second: about 4 s).
CALLS = 20
#: How long the check waits for the calls at most (a busy machine is slow, not wrong).
WAIT = 20.0
#: It gives up earlier when no call finished for this long (RATE a second means one every 0.2 s).
STALL = 3.0
#: The bucket limits the moments Redis hands out tokens; the site logs when a request ARRIVES, a
#: few milliseconds later -- on a busy machine a few hundred (the worker's thread is scheduled,
#: httpx connects), and the check cannot see the grants of the learner's code to measure that
#: delay (instruments/rate_windows.slack). So two things are judged from the site's log, each with
#: room for late arrivals and each far from what a limit kept by each worker alone gives:
#: - no window of WINDOW seconds holds more than MOST requests. A shared bucket hands out at most
#:   2 * RATE = 10 tokens in any 2 s; MOST leaves room for two arrivals late enough to bunch with
#:   later ones (a 1 s window with room for one failed a right answer once on a loaded machine: 7
#:   arrivals in 1 s over a 4.3 s run); two workers that each keep RATE a second send all 20 in 2 s;
#: - the CALLS requests take at least MIN_SPAN seconds: a shared bucket of RATE a second hands out its
#:   CALLS tokens over (CALLS - 1) / RATE = 3.8 s, less a late first arrival; two workers that
#:   each keep RATE a second need half that, 1.9 s.
WINDOW = 2.0
MOST = 2 * RATE + 2
MIN_SPAN = 0.75 * (CALLS - 1) / RATE
#: Two workers, each running CONCURRENCY calls at a time (threads: the calls wait on the network). A
#: limit each worker keeps by itself (Celery's rate_limit) lets RATE a second through per worker --
#: twice RATE together; a sleep in the task slows one thread only -- more than that.
WORKER_NAMES = ("exercises-1", "exercises-2")
CONCURRENCY = 2


def _files(ns: dict) -> selfcheck.Workspace | None:
    return selfcheck.exercise_files(ns, FILE)


def _purge(app) -> None:
    selfcheck.purge_queue(app, QUEUE)


def _start_workers(files: selfcheck.Workspace, broker) -> tuple[list, str | None]:
    """The two workers: (workers, None), or ([], the first problem) with none left running.
    One after the other, from this thread: a process the launcher starts gets SIGTERM when
    the THREAD that started it ends (PR_SET_PDEATHSIG), so never from a short-lived pool."""
    workers = []
    for name in WORKER_NAMES:
        worker, problem = selfcheck.start_exercise_worker(files, broker, QUEUE, FILE, concurrency=CONCURRENCY,
                                                          name=name, extra_args=["--pool=threads"])
        if problem:
            for started in workers:
                started.cleanup()
            return [], problem
        workers.append(worker)
    return workers, None


def host_keys(url: str) -> list[str]:
    """The bucket keys a learner may name the site by: its host with the port, and without."""
    parts = urlsplit(url)
    return list(dict.fromkeys(k for k in (parts.netloc, parts.hostname, url.rstrip("/")) if k))


def _wait(results) -> tuple[int, bool]:
    """Wait until every call ended, WAIT passed, or none ended for STALL seconds.
    (how many ended, whether it stalled)."""
    import launcher

    state = {"done": 0, "since": time.monotonic()}

    def settled() -> bool:
        done = sum(r.ready() for r in results)
        if done != state["done"]:
            state["done"], state["since"] = done, time.monotonic()
        return done == len(results) or time.monotonic() - state["since"] > STALL

    launcher.wait_for(settled, WAIT, interval=0.1)
    return state["done"], state["done"] < len(results) and time.monotonic() - state["since"] > STALL


def _ran_on(workers, results) -> dict[str, list[int]]:
    """{worker name: the indexes of the calls it finished}, from each worker's own log."""
    index = {r.id: i for i, r in enumerate(results)}
    done = re.compile(rf"Task {re.escape(TASK)}\[([0-9a-f-]+)\] succeeded")
    return {w.name.removeprefix("worker-"): [index[i] for i in done.findall(w.log()) if i in index]
            for w in workers}


def _rate_limit_option(source: str) -> str | None:
    found = re.search(r"rate_limit\s*=\s*[\"']([^\"']*)[\"']", source)
    return found.group(1) if found else None


def _own_limit_advice(source: str) -> str:
    """What in the learner's block limits each worker by itself (read from the block's text)."""
    option = _rate_limit_option(source)
    advice = []
    if option is not None:
        advice.append(f"rate_limit=\"{option}\" 是 Celery 在每个 worker 里各自数的（每个 worker 一个令牌桶）")
    if re.search(r"\bsleep\s*\(", source) and "ratelimit." not in source:
        advice.append("time.sleep 只让正在运行它的那一个任务慢下来，别的 worker（和别的线程、进程）照样发请求")
    return "；".join(advice)


SHARED_BUCKET = ("要在每次请求之前从 Redis 里同一个令牌桶拿一个令牌：ratelimit.take_or_retry(self, client, host, RATE)"
                 "（任务要 bind=True、max_retries=None），或者 ratelimit.acquire(client, host, RATE)，"
                 "拿不到就等 retry_after 秒再拿；所有 worker 用同一个键（站点的 host）")


def _failure(result) -> str:
    return f"{type(result.result).__name__}: {result.result}"[:200]


def _judge_polite(app, site, broker, workers, source: str) -> list[str]:
    import redis

    from demo_tasks import ratelimit
    from instruments.rate_windows import max_in_window

    run = uuid.uuid4().hex[:10]
    mark = f"ex3={run}"
    paths = [f"/a/{n}.html?{mark}" for n in range(CALLS)]
    with redis.Redis.from_url(broker.url) as client:
        for key in host_keys(site.url):      # a full bucket, whatever an earlier attempt left in it
            ratelimit.reset(client, key)
    results = [app.send_task(TASK, (site.url + path,), task_id=str(uuid.uuid4()), queue=QUEUE)
               for path in paths]
    done, stalled = _wait(results)
    arrived: dict[str, list[float]] = {path: [] for path in paths}
    for record in site.requests():
        if record.get("path") in arrived and isinstance(record.get("t"), (int, float)):
            arrived[record["path"]].append(record["t"])
    where = f"{FILE} 的 polite_get"
    problems: list[str] = []

    failed = [r for r in results if r.ready() and r.state == "FAILURE"]
    if failed:
        names = {type(r.result).__name__ for r in failed}
        if "MaxRetriesExceededError" in names:
            problems.append(f"{where}：{len(failed)} 个调用失败了（MaxRetriesExceededError）：每次拿不到令牌，"
                            f"take_or_retry 就让任务重试一次，Celery 默认最多重试 3 次。{CALLS} 个调用排队拿令牌，"
                            "有的要等很多次：任务要写 max_retries=None")
        elif any("JSON serializable" in str(r.result) for r in failed):
            problems.append(f"{where}：任务的返回值存不进结果后端（{_failure(failed[0])}）：返回状态码 "
                            "reply.status_code（一个整数），不要返回 Response 对象")
        else:
            problems.append(f"{where}：{len(failed)} 个调用失败了，第一个的错误是 {_failure(failed[0])}")

    counts = [len(arrived[path]) for path in paths]
    if done < CALLS and not failed:
        waited = (f"可是 {done} 个结束以后，{STALL:g} 秒里再没有一个结束" if stalled
                  else f"可是等了 {WAIT:g} 秒只有 {done} 个结束")
        option = _rate_limit_option(source)
        why = (f"rate_limit=\"{option}\" 是每个 worker 各自的限速，而且单位要看清：\"5/m\" 是每分钟 5 个，"
               "\"5/s\" 才是每秒 5 个。" if option and not option.rstrip().endswith("/s") else "")
        problems.append(f"{where}：{CALLS} 个调用每秒 {RATE} 个，{CALLS / RATE:g} 秒左右就该做完；{waited}"
                        f"（站点收到 {sum(counts)} 个请求）。{why}"
                        f"{'' if why else '限速是不是慢了？'}每秒 {RATE} 个：ratelimit 的 rate 给 RATE")
    if any(c > 1 for c in counts):
        twice = sum(c > 1 for c in counts)
        problems.append(f"{where}：{twice} 个网址站点收到了不止一次：先拿令牌，拿到了再发请求；拿不到令牌时重试，"
                        "这时还没有发请求（每个调用只请求一次）")
    missing = [path for i, path in enumerate(paths) if counts[i] == 0 and results[i].successful()]
    if missing:
        problems.append(f"{where}：任务成功了，站点却没有收到 {missing[0].split('?')[0]} 的请求：要用 httpx.get(url, "
                        "timeout=2) 请求传进来的 url")

    times = [t for path in paths for t in arrived[path]]
    most = max_in_window(times, WINDOW)
    span = max(times) - min(times) if times else 0.0
    if times and (most > MOST or (len(times) == CALLS and span < MIN_SPAN)):
        ran = _ran_on(workers, results)
        own = [[arrived[paths[i]][0] for i in calls if arrived[paths[i]]] for calls in ran.values()]
        each = [max_in_window(ts, 1.0) for ts in own]   # which hint: each worker kept RATE a second?
        head = (f"{where}：站点在 {WINDOW:g} 秒里最多收到了 {most} 个请求（每秒 {RATE} 个，{WINDOW:g} 秒最多 "
                f"{int(WINDOW * RATE)} 个），{len(times)} 个请求从第一个到最后一个用了 {span:.2f} 秒（至少要 "
                f"{(CALLS - 1) / RATE:g} 秒）")
        if all(ts for ts in own) and all(n <= RATE + 1 for n in each):
            shares = "、".join(f"{len(calls)} 个" for calls in ran.values())
            advice = _own_limit_advice(source)
            problems.append(f"{head}：两个 worker 各自没超过每秒 {RATE} 个（分别运行了 {shares}），加起来就超了："
                            f"限速是每个 worker 各自的。{advice + '。' if advice else ''}{SHARED_BUCKET}")
        else:
            advice = _own_limit_advice(source)
            problems.append(f"{head}：请求没有被限速（或者每个 worker、每个网址各用各的限速）。"
                            f"{advice + '。' if advice else ''}{SHARED_BUCKET}")

    values = [r.result for r in results if r.ready() and r.successful()]
    wrong_values = [v for v in values if type(v) is not int or v != 200]
    if wrong_values:
        problems.append(f"{where}：任务返回了 {wrong_values[0]!r:.80}：要返回 HTTP 状态码（reply.status_code，"
                        f"这些页面都是 200）")
    if problems:
        # A worker the learner started in a terminal may take some calls, with the file as it was then.
        ours = sum(len(calls) for calls in _ran_on(workers, results).values())
        others = sum(r.successful() for r in results) - ours
        if others > 0:
            problems.append(f"另外，有 {others} 个调用不是检查启动的两个 worker 运行的：终端里还有消费 {QUEUE} "
                            f"的 worker？它用的是它启动时的 {FILE}，改了文件要重启它")
    return list(dict.fromkeys(problems))


@exercises.register(3)
def polite_get(ns: dict) -> list[str]:
    from celery import Celery

    import launcher

    files = _files(ns)
    if files is None or "broker" not in ns:
        return [START_FIRST]
    site = ns.get("site")
    if site is None or not hasattr(site, "requests"):
        return [PREPARE_FIRST]
    if files.stub(FILE, "exercise-3") and "def polite_get" not in files.path(FILE).read_text(encoding="utf-8"):
        return [f"还没有答案：在 %%writeblock {FILE} exercise-3 的单元格里定义任务 polite_get(url)"]
    source = files.block(FILE, "exercise-3") or files.path(FILE).read_text(encoding="utf-8")
    broker = ns["broker"]
    app = Celery("my_tasks", broker=broker.url, backend=broker.url, set_as_current=False)
    _purge(app)
    workers: list = []
    try:
        workers, problem = _start_workers(files, broker)
        if problem:
            return [problem]
        if TASK not in workers[0].banner_section():
            return [f"{FILE} 的 exercise-3 这一段里没有任务 polite_get：用 @app.task 定义它，函数名就是 polite_get"]
        return _judge_polite(app, site, broker, workers, source)
    finally:
        launcher.stop_together(workers)
        _purge(app)
        app.close()


# --- Exercise 4: a percentage per -progress block ----------------------------------------------

#: What FFmpeg writes before each block's out_time_us, in its own order (a real block of FFmpeg 9).
_BEFORE = ("frame", "fps", "stream_0_0_q", "bitrate", "total_size")
_AFTER = ("dup_frames", "drop_frames", "speed")


def progress_block(us: int | None, progress: str = "continue", *, order: int | None = None) -> str:
    """One block as FFmpeg's ``-progress`` writes it: key=value lines, ``progress=`` last.
    ``us`` None is FFmpeg's N/A (no frame written yet). ``order`` shuffles the other keys
    (seeded): a reader must not depend on their order."""
    frame = 0 if us is None else max(0, us) * 25 // 1_000_000
    if us is None:
        times = {"out_time_us": "N/A", "out_time_ms": "N/A", "out_time": "N/A"}
    else:
        sign, whole = ("-" if us < 0 else ""), abs(us)
        clock = f"{sign}{whole // 3_600_000_000:02d}:{whole // 60_000_000 % 60:02d}:{whole // 1_000_000 % 60:02d}" \
                f".{whole % 1_000_000:06d}"
        times = {"out_time_us": str(us), "out_time_ms": str(us), "out_time": clock}
    values = {"frame": str(frame), "fps": "25.00", "stream_0_0_q": "28.0",
              "bitrate": "N/A" if us is None else " 412.3kbits/s", "total_size": "48" if us is None else "261632",
              **times, "dup_frames": "0", "drop_frames": "0", "speed": "N/A" if us is None else "2.01x"}
    keys = [*_BEFORE, "out_time_us", "out_time_ms", "out_time", *_AFTER]
    if order is not None:
        random.Random(order).shuffle(keys)
    return "".join(f"{key}={values[key]}\n" for key in keys) + f"progress={progress}\n"


#: (text, total seconds, what the case is about): the fixed cases, simplest first.
PROGRESS_CASES: list[tuple[str, float, str]] = [
    (progress_block(None) + progress_block(1_000_000), 4.0, "第一块还没有画面（out_time_us=N/A）"),
    (progress_block(2_000_000) + progress_block(3_000_000) + progress_block(4_200_000), 4.0,
     "有一块的时间超过了总长"),
    (progress_block(-21_333) + progress_block(1_500_000), 3.0, "有一块的时间小于 0"),
    (progress_block(1_000_000) + progress_block(2_000_000) + progress_block(3_920_000, "end"), 4.0,
     "最后一块是 progress=end（out_time_us 比总长少一点）"),
    ((progress_block(1_000_000) + progress_block(3_920_000, "end")).rstrip("\n"), 4.0, "文本最后没有换行"),
    (progress_block(600_000, order=1) + progress_block(1_200_000, order=2) + progress_block(1_960_000, "end", order=3),
     2.0, "每一块里的键顺序不同"),
]


def progress_blocks(text: str) -> list[dict[str, str]]:
    """The blocks of ``-progress`` output: the key=value lines up to each ``progress=`` line."""
    blocks, block = [], {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep:
            continue
        block[key] = value
        if key == "progress":
            blocks.append(block)
            block = {}
    return blocks


def expected_percents(text: str, total: float, *, unit: float = 1_000_000, clamp: bool = True,
                      end: bool = True, scale: float = 100.0) -> list[float]:
    """The answer (with the defaults), and the wrong answers' results the hints recognise:
    ``unit=1000`` (out_time taken for milliseconds), ``clamp=False``, ``end=False`` (progress=end
    not looked at), ``scale=1`` (fractions)."""
    percents = []
    for block in progress_blocks(text):
        try:
            seconds = int(block.get("out_time_us", "N/A")) / unit
        except ValueError:
            seconds = 0.0                                   # N/A: no frame written yet
        percent = scale * seconds / total if total else 0.0
        if clamp:
            percent = min(scale, max(0.0, percent))
        if end and block.get("progress") == "end":
            percent = scale
        percents.append(round(percent, 1))
    return percents


#: The clip whose real -progress output check 4 reads: long and slow enough (x264's "medium")
#: for FFmpeg to write a block every PROGRESS_PERIOD seconds for about a second.
PROGRESS_CLIP_SECONDS = 10.0
PROGRESS_PERIOD = 0.1


@functools.cache
def ffmpeg_progress() -> tuple[str, float]:
    """(what the wheel's FFmpeg writes with ``-progress pipe:1 -stats_period 0.1 -nostats`` while
    it encodes a generated clip, the clip's length in seconds). Made once per process."""
    from demo_tasks import video

    with tempfile.TemporaryDirectory(prefix="ch10-progress-") as folder:
        clip = video.sample_clip(Path(folder) / "clip.mp4", seconds=PROGRESS_CLIP_SECONDS, size=(640, 360),
                                 timeout=120)
        total = video.probe(clip).duration
        done = subprocess.run(
            [video.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", f"file:{clip}",
             "-c:v", "libx264", "-preset", "medium", "-pix_fmt", "yuv420p",
             "-progress", "pipe:1", "-stats_period", str(PROGRESS_PERIOD), "-nostats",
             "-y", "-f", "mp4", f"file:{Path(folder) / 'out.mp4'}"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or "progress=end" not in done.stdout:
        raise RuntimeError(f"FFmpeg exited {done.returncode} without its last -progress block: "
                           f"{done.stderr.strip()[-300:]}")
    return done.stdout, total


def _block_shown(block: dict[str, str]) -> str:
    return f"out_time_us={block.get('out_time_us', '（没有）')}，progress={block.get('progress')}"


def _near(a, b) -> bool:
    return abs(a - b) <= 0.05 + 1e-9


MICROSECONDS = ("FFmpeg 的 out_time_ms 名字里是毫秒，其实和 out_time_us 一样是微秒（FFmpeg 多年来的老问题，"
                "为了不打破旧程序一直没改）：用 out_time_us，除以 1_000_000 得到秒")


def percents_problem(function, text: str, total: float, what: str) -> str | None:
    """What is wrong with ``function`` on one case (None if it is right)."""
    want = expected_percents(text, total)
    blocks = progress_blocks(text)
    call = f"{what}：progress_percents(…, total={total:g})"
    try:
        got = function(text, total)
    except Exception as exc:
        na = ("：FFmpeg 写出第一帧之前，out_time_us 是 N/A，不是数：这样的块给 0.0（先看是不是 N/A，再 int(…)）"
              if "N/A" in str(exc) else "")
        return f"{call} 出错：{type(exc).__name__}: {exc}{na}"
    if not isinstance(got, (list, tuple)):
        return f"{call} 返回了 {got!r:.80}：要返回一个列表，每一块一个百分数"
    if len(got) != len(want):
        lines = len([line for line in text.splitlines() if line.strip()])
        per_line = "，不是每一行一个" if len(got) == lines else ""
        return (f"{call} 返回了 {len(got)} 个数，文本里有 {len(want)} 块：一块是几行 key=value，以 progress=continue "
                f"或 progress=end 那一行结束；每一块给一个百分数{per_line}")
    numbers = [g for g in got if isinstance(g, (int, float)) and not isinstance(g, bool)]
    for k, (g, w, block) in enumerate(zip(got, want, blocks, strict=True), 1):
        head = f"{call}：第 {k} 块（{_block_shown(block)}）"
        if isinstance(g, bool) or not isinstance(g, (int, float)):
            return f"{head}得到 {g!r:.60}：每一块要一个数（百分数，float）"
        if _near(g, w):
            if abs(g * 10 - round(g * 10)) > 1e-6:
                return f"{head}得到 {g!r}，应该是 {w!r}：保留 1 位小数（round(percent, 1)）"
            continue
        head = f"{head}得到 {g!r}，应该是 {w!r}"
        if len(numbers) == len(got) and all(0 <= n <= 1 for n in numbers) and max(want) > 1:
            return f"{head}：要百分数（0–100），不是比例（0–1）：乘以 100"
        if block.get("progress") == "end" and _near(g, expected_percents(text, total, end=False)[k - 1]):
            return (f"{head}：progress=end 的那一块说 FFmpeg 做完了：给 100.0（最后一块的 out_time_us "
                    "常常比总长少一两帧）")
        if any(_near(g, expected_percents(text, total, unit=1000, clamp=clamp)[k - 1]) for clamp in (True, False)):
            return f"{head}：{MICROSECONDS}"
        if block.get("out_time_us") == "N/A":
            return f"{head}：out_time_us=N/A（还没有写出第一帧）的块给 0.0"
        if g > 100 or g < 0:
            return f"{head}：百分数要在 0 到 100 之间：超过总长的给 100，小于 0 的给 0（min(100.0, max(0.0, …))）"
        return f"{head}：百分数 = out_time_us / 1_000_000 / total * 100"
    return None


@exercises.register(4)
def progress_percents(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "progress_percents", "每一块 -progress 输出给一个百分数")
    if problems:
        return problems
    function = ns["progress_percents"]
    for text, total, what in PROGRESS_CASES:
        problem = percents_problem(function, text, total, what)
        if problem:
            return [problem]
    try:
        text, total = ffmpeg_progress()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return [f"没能让 FFmpeg 写出真实的 -progress 输出，先看 FFmpeg 能不能运行（本章“视频”一节的单元格）：{exc}"]
    problem = percents_problem(function, text, total,
                               f"FFmpeg 真的写出的输出（{len(progress_blocks(text))} 块，总长 {total:g} 秒）")
    return [problem] if problem else []


# --- Exercise 5: a transcode task that reports its progress ------------------------------------

TASK_SHRINK = "my_tasks.shrink"
#: The clip check 5 transcodes, to SHRINK_HEIGHT: long enough that the transcode takes about 2 s
#: (measured: 2.2 s on 2 busy cores), so FFmpeg writes several -progress blocks (one every 0.5 s
#: and the last) -- a machine three times as fast still gets two.
CLIP_SECONDS = 60.0
CLIP_SIZE = (640, 360)
#: The height the check asks for: neither the clip's 360 nor the chapter's 240, so that a height
#: written into the task instead of its parameter is found.
SHRINK_HEIGHT = 288
#: How long the check waits for the task's final state after sending it.
SHRINK_WAIT = 60.0
#: The exercise's one worker: prefork, one task at a time (FFmpeg itself uses the cores).
SHRINK_WORKER = "exercises-5"


def exercise_clip(ns: dict) -> Path:
    """The clip for check 5, in the chapter's scratch folder (``samples``, beside ``exercises``,
    which Run All empties): made the first time, then reused while it is intact."""
    from demo_tasks import video

    folder = Path(ns["exercises_dir"]).parent / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    clip = folder / "exercise-5.mp4"
    try:
        if abs(video.probe(clip).duration - CLIP_SECONDS) < 0.1:
            return clip
    except video.VideoError:
        pass  # missing or damaged: made again
    return video.sample_clip(clip, seconds=CLIP_SECONDS, size=CLIP_SIZE, timeout=120)


def _watch(app, broker, worker, send) -> tuple[list[tuple[str, object]], bool]:
    """SUBSCRIBE to the result backend's channel of a new task id, then ``send(task_id)``, then
    collect every (state, result) the backend PUBLISHes for it, in order, until a ready state
    (True), SHRINK_WAIT passed or the worker exited (False)."""
    import redis
    from celery import states

    task_id = str(uuid.uuid4())
    channel = app.backend.get_key_for_task(task_id)
    seen: list[tuple[str, object]] = []
    with redis.Redis.from_url(broker.url) as client, client.pubsub() as pubsub:
        pubsub.subscribe(channel)
        deadline = time.monotonic() + 10
        while (message := pubsub.get_message(timeout=1.0)) is None or message["type"] != "subscribe":
            if time.monotonic() > deadline:
                raise RuntimeError("the broker did not confirm the SUBSCRIBE within 10 s")
        send(task_id)
        deadline = time.monotonic() + SHRINK_WAIT
        while (left := deadline - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=min(0.5, left))
            if message is None:
                if not worker.running():
                    break
                continue
            if message["type"] != "message":
                continue
            meta = app.backend.decode_result(message["data"])
            seen.append((meta["status"], meta["result"]))
            if meta["status"] in states.READY_STATES:
                return seen, True
    return seen, False


def _one_line(exc: object) -> str:
    text = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else repr(exc)
    return " ".join(text.split())[:200]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _progress_problems(seen: list[tuple[str, object]], where: str) -> list[str]:
    from celery import states

    progress = [result for state, result in seen if state == "PROGRESS"]
    others = list(dict.fromkeys(state for state, _ in seen if state != "PROGRESS" and state not in states.READY_STATES))
    if not progress:
        if others:
            return [f"{where}：看到了 {len([s for s, _ in seen if s in others])} 个 {'、'.join(others)} 状态，没有 "
                    f"PROGRESS：update_state 的 state 写 \"PROGRESS\"（{others[0]} 是 Celery 自己的状态，"
                    "意思不是“进行到了百分之几”）"]
        return [f"{where}：没有看到 PROGRESS 状态：on_progress 里要调用 self.update_state(state=\"PROGRESS\", "
                "meta={\"percent\": …})（任务要 bind=True 才有 self）"]
    percents = [r.get("percent") if isinstance(r, dict) else None for r in progress]
    if not all(_number(p) for p in percents):
        bad = next(r for r, p in zip(progress, percents, strict=True) if not _number(p))
        return [f"{where}：PROGRESS 的 meta 是 {bad!r:.80}：要写成 {{\"percent\": 0 到 100 的数}}"]
    shown = ", ".join(f"{p:g}" for p in percents[:8]) + ("…" if len(percents) > 8 else "")
    if len(progress) < 2:
        return [f"{where}：只看到 1 个 PROGRESS 状态（{shown}）：on_progress 每被调用一次就报告一次"
                "（FFmpeg 每 0.5 秒写一块，最后一块在结束时）"]
    if percents != sorted(percents):
        return [f"{where}：进度倒退了（{shown}）：用 on_progress 收到的已处理秒数（它不会变小）除以总秒数"]
    if min(percents) < 0 or max(percents) > 100:
        return [f"{where}：进度超出了 0–100（{shown}）：percent = 100 * done / total"]
    if max(percents) <= 1:
        return [f"{where}：进度是 {shown}：这是比例（0–1），meta 的 percent 要百分数（0–100）：100 * done / total"]
    return []


def _result_problems(result, dst: Path, total: float, where: str) -> list[str]:
    from demo_tasks import video

    if not isinstance(result, dict):
        return [f"{where}：任务返回了 {result!r:.80}：要返回一个字典 {{\"height\": …, \"duration\": …}}"]
    problems = []
    height, duration = result.get("height"), result.get("duration")
    if not _number(height):
        problems.append(f"{where}：返回的字典里要有 \"height\"：输出的高度（transcode 返回的 info.height）")
    elif height != SHRINK_HEIGHT:
        problems.append(f"{where}：返回的 height 是 {height!r}，检查要的是 {SHRINK_HEIGHT}：transcode 的 height "
                        "要用任务收到的参数 height，不要写死")
    if not _number(duration):
        problems.append(f"{where}：返回的字典里要有 \"duration\"：输出的时长（秒，info.duration）")
    elif abs(duration - total) > 0.1:
        problems.append(f"{where}：返回的 duration 是 {duration!r}，这段视频长 {total:g} 秒：用 transcode 返回的 "
                        "info.duration")
    if not dst.exists():
        problems.append(f"{where}：任务成功了，可是 {dst.name} 不在：transcode 的第二个参数用任务收到的 dst")
    else:
        try:
            made = video.probe(dst)
        except video.VideoError as exc:
            problems.append(f"{where}：{dst.name} 不是能读的视频：{_one_line(exc)}")
        else:
            if made.height != SHRINK_HEIGHT and not (_number(height) and height != SHRINK_HEIGHT):
                problems.append(f"{where}：{dst.name} 有 {made.height} 像素高，检查要的是 {SHRINK_HEIGHT}：把参数 "
                                "height 传给 transcode")
    left = sorted(p.name for p in dst.parent.iterdir() if ".part-" in p.name)
    if left:
        problems.append(f"{where}：{dst.parent.name}/ 里留下了临时文件 {left[0]}：直接用 video.transcode 写 dst，"
                        "它先写临时文件、成功了才改名")
    return problems


def _judge_shrink(app, broker, worker, clip: Path, dst: Path) -> list[str]:
    from demo_tasks import video

    total = video.probe(clip).duration
    where = f"{FILE} 的 shrink"
    sent: list[str] = []

    def send(task_id: str) -> None:
        sent.append(task_id)
        app.send_task(TASK_SHRINK, (str(clip), str(dst), SHRINK_HEIGHT), task_id=task_id, queue=QUEUE)

    seen, ended = _watch(app, broker, worker, send)
    received = sent[0] in worker.log()
    if not ended:
        if not received:
            return [f"{where}：检查启动的 worker 没有收到这个任务：终端里还有消费 {QUEUE} 的 worker？它用的是它启动时"
                    f"的 {FILE}：先停掉它（Ctrl-C）"]
        if not worker.running():
            last = [line for line in worker.log().splitlines() if line.strip()][-1:]
            return [f"{where}：worker 在运行任务时退出了：{last[0].strip()[:200] if last else '（日志是空的）'}"]
        return [f"{where}：等了 {SHRINK_WAIT:g} 秒，任务还没有结束（看到 {len(seen)} 个状态；转这段 {total:g} 秒的视频"
                "只要几秒）：任务里是不是在等什么，或者没有调用 video.transcode？"]
    state, result = seen[-1]
    problems: list[str] = []
    if state == "FAILURE":
        line = _one_line(result)
        if ("EncodeError" in line or "JSON serializable" in line) and dst.exists():
            # The transcode finished (dst is there): it is the return value that JSON cannot hold.
            problems.append(f"{where}：任务失败了：{line}：返回值要存进结果后端（JSON），VideoInfo 对象存不进去："
                            "返回一个字典 {\"height\": info.height, \"duration\": info.duration}")
        elif "EncodeError" in line or "JSON serializable" in line:
            problems.append(f"{where}：任务失败了：{line}：update_state 的 meta 也要存进结果后端（JSON）："
                            "meta 里只放数、字符串、列表和字典，例如 {\"percent\": 42.0}")
        else:
            problems.append(f"{where}：任务失败了：{line}")
    elif state != "SUCCESS":
        problems.append(f"{where}：任务的最后状态是 {state}（{_one_line(result)}），不是 SUCCESS")
    if state == "SUCCESS" or dst.exists():      # a task that failed midway: its failure is the news
        problems += _progress_problems(seen, where)
    if state == "SUCCESS":
        problems += _result_problems(result, dst, total, where)
    if problems and not received:
        problems.append(f"另外，这个任务不是检查启动的 worker 运行的：终端里还有消费 {QUEUE} 的 worker？它用的是"
                        f"它启动时的 {FILE}，改了文件要重启它")
    return list(dict.fromkeys(problems))


@exercises.register(5)
def shrink(ns: dict) -> list[str]:
    from celery import Celery

    import launcher

    files = _files(ns)
    if files is None or "broker" not in ns:
        return [START_FIRST]
    if files.stub(FILE, "exercise-5") and "def shrink" not in files.path(FILE).read_text(encoding="utf-8"):
        return [f"还没有答案：在 %%writeblock {FILE} exercise-5 的单元格里定义任务 shrink(src, dst, height)"]
    clip = exercise_clip(ns)
    out = files.path("exercise-5")            # emptied first: what is in it afterwards, this run wrote
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    broker = ns["broker"]
    app = Celery("my_tasks", broker=broker.url, backend=broker.url, set_as_current=False)
    _purge(app)
    worker = None
    try:
        worker, problem = selfcheck.start_exercise_worker(files, broker, QUEUE, FILE, concurrency=1,
                                                          name=SHRINK_WORKER, extra_args=["--pool=prefork"])
        if problem:
            return [problem]
        if not re.search(rf"\s{re.escape(TASK_SHRINK)}$", worker.banner_section(), re.MULTILINE):
            return [f"{FILE} 的 exercise-5 这一段里没有任务 shrink：用 @app.task(bind=True) 定义它，函数名就是 shrink"]
        return _judge_shrink(app, broker, worker, clip, out / "small.mp4")
    finally:
        if worker is not None:
            launcher.stop_together([worker])
        _purge(app)
        app.close()
