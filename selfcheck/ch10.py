"""Chapter 10's exercise checks, against the chapter's real crawl site (``site``,
services/crawl_site.py, its own request log) and, for exercise 3, two new workers.

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

Whatever ran before, the same answer gets the same verdict: check 3 uses a mark
and task ids no earlier run used, reads only the site's records of this run's
requests, starts its workers afresh (they import the file as it is now) and
purges the exercise's queue before and after; the site's log is never reset
(the chapter's own records would vanish). Checks 1 and 2 only read.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from urllib.parse import urlsplit

import selfcheck

exercises = selfcheck.Exercises(10)

#: The learner's file, in the chapter's scratch folder (``exercises_dir``).
FILE = "my_tasks.py"
#: The queue the exercise's workers listen on (not the chapter worker's).
QUEUE = "ch10-exercises"

START_FIRST = "先运行“练习”一节开头的单元格（它写好 my_tasks.py 的开头）"
PREPARE_FIRST = "先运行本章“准备”一节的单元格（它启动要爬的网站 site）"

#: The beginning of my_tasks.py: the exercise adds its task below it.
STARTER = '''"""Your task for chapter 10's exercise 3. The check runs it on TWO workers (RATE must hold
for both together), as these two commands start them:
celery -A my_tasks worker --loglevel=info --queues=ch10-exercises --pool=threads --concurrency=2 -n exercises-1@%h
celery -A my_tasks worker --loglevel=info --queues=ch10-exercises --pool=threads --concurrency=2 -n exercises-2@%h
"""

import os
from urllib.parse import urlsplit

import httpx
import redis
from celery import Celery

from demo_tasks import ratelimit

app = Celery("my_tasks", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
app.conf.task_default_queue = "ch10-exercises"    # not the queue of the chapter's worker

#: The Redis that holds chapter 08's token buckets: one bucket per key, shared by every worker.
client = redis.Redis.from_url(os.environ["REDIS_URL"])
#: At most this many requests a second to one site, over ALL workers together.
RATE = 5

# The exercise's answer is a block below, written by the notebook (%%writeblock my_tasks.py exercise-3).
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
