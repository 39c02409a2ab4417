"""Chapter 10's figures: the same crawl of the course's site on workers of different pools and sizes.

``measure(broker)`` starts the site (``launcher.start_crawl_site``: 120 articles,
20 ms per request, the slow pages 1 s more) and then, for each setup, a fresh
``celery -A demo_tasks.crawler worker`` -- the threads pool with ``-c 1`` (one
page at a time: the serial crawl), 2, 8 and 32, the prefork pool with ``-c 2`` and
``-c 4`` -- crawls the whole site from ``/`` (no rate limit) and is stopped. Each
setup gets the same site (its log emptied and its flaky pages reset first), so
the same pages. ``table(rows)`` is the result as a table (HTML in a notebook),
``checks(rows)`` what it must show, as labelled verdicts.

What is measured, per setup:

- ``seconds``: from ``start_crawl`` to the last page's record (the crawl itself;
  ``report_seconds`` adds the analysis, whose first run in a worker process loads
  jieba's dictionary, about a second);
- ``pages``: the records (every page fetched, failures included) and ``requests``:
  what the site's own log received (retries included);
- ``rss_mb``: the resident memory of the worker's whole process tree after the
  crawl (main process + pool processes, psutil). For prefork that sum counts the
  pages the processes still share after the fork once per process: ``uss_mb``
  (memory only that process holds, summed) is the honest figure for "what would
  go away if it stopped".

The site's /hang.html answers after ``hang`` seconds (0.05 here, not the site's
30): with the crawler's timeout its four attempts would put the same 8+ seconds
under every setup and hide the difference being measured. Retries wait
``retry_backoff`` = 0.1 s (doubled each time) for the same reason; /error/500.html
still costs its four attempts, and the slow pages their second.

Every worker imports httpx and bs4 before its pool starts (``--include``), so no
pool process pays for those imports inside the measured time. The figures for
the chapter's closing note come from::

    python -m instruments.crawl_bench

which starts a broker of its own and prints them as Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

import launcher
from instruments.tables import Measured, Table, verdicts
from launcher.broker import broker_url_of

#: (pool, --concurrency) of each setup, in the order measured; the first is the serial baseline.
SETUPS = (("threads", 1), ("threads", 2), ("threads", 8), ("threads", 32), ("prefork", 2), ("prefork", 4))
#: The queue the bench's crawls and workers use: a worker the chapter left running on the
#: default queue never takes the bench's tasks.
QUEUE = "crawl-bench"
#: A generous deadline for one crawl (it ends a stuck run; it is not a measurement).
DEADLINE = 300.0


@dataclass
class Row:
    """One setup's crawl."""

    pool: str
    concurrency: int
    pages: int              # records
    requests: int           # in the site's log, robots.txt and retries included
    seconds: float          # start_crawl -> the last record
    report_seconds: float   # start_crawl -> the report stored
    rss_mb: float           # the worker's process tree, after the crawl
    uss_mb: float
    processes: int          # in that tree
    speedup: float = 1.0    # the serial setup's seconds / these seconds

    @property
    def label(self) -> str:
        return f"--pool={self.pool} -c {self.concurrency}"


def _tree(worker: launcher.Proc) -> list[psutil.Process]:
    main = psutil.Process(worker.pid)
    return [main, *main.children(recursive=True)]


def _memory(worker: launcher.Proc) -> tuple[float, float, int]:
    """(RSS, USS) in MB of the worker's process tree, and how many processes it has."""
    rss = uss = 0
    tree = _tree(worker)
    for process in tree:
        info = process.memory_full_info()
        rss, uss = rss + info.rss, uss + info.uss
    return rss / 2**20, uss / 2**20, len(tree)


def measure(broker=None, *, pages: int = 120, delay: float = 0.02, slow_delay: float = 1.0, hang: float = 0.05,
            seed: int = 10, setups=SETUPS, repeat: int = 1, timeout: float = 2.0, retry_backoff: float = 0.1,
            log_dir: str | os.PathLike | None = None) -> list[Row]:
    """Crawl the same site with each setup (see the module's docstring); return one Row per setup,
    in the order of ``setups``, each with its speed-up over the first (the serial crawl).
    ``repeat``: crawls per setup, on the same worker; the times are their medians, the memory
    is measured after the last.
    ``broker``: where the crawler's tasks and records go (REDIS_URL must name the same broker
    when demo_tasks.crawler is first imported: the worker and this process share it)."""
    url = broker_url_of(broker)
    os.environ.setdefault("REDIS_URL", url)
    from demo_tasks import crawler

    if crawler.app.conf.broker_url != url:
        raise RuntimeError(f"demo_tasks.crawler was imported for {crawler.app.conf.broker_url}, not {url}: "
                           "set REDIS_URL before importing it (or pass the broker it uses).")
    folder = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="crawl-bench-"))
    site = launcher.start_crawl_site(folder / "site.log", pages=pages, seed=seed, delay=delay,
                                     slow_delay=slow_delay, hang=hang)
    rows: list[Row] = []
    try:
        for pool, concurrency in setups:
            worker = launcher.start_worker("demo_tasks.crawler", broker=url, fast=True,
                                           name=f"bench-{pool}-{concurrency}", concurrency=concurrency,
                                           queues=[QUEUE], extra_args=[f"--pool={pool}", "--include=httpx,bs4"])
            try:
                runs = []
                for _ in range(repeat):
                    site.reset()
                    started = time.perf_counter()
                    crawl_id = crawler.start_crawl(site.url, max_depth=100, max_pages=100_000, timeout=timeout,
                                                   retry_backoff=retry_backoff, queue=QUEUE)
                    report = crawler.wait_for_report(crawl_id, timeout=DEADLINE)
                    runs.append((report["crawl_seconds"], time.perf_counter() - started, report["pages"],
                                 len(site.requests())))
                    crawler.delete_crawl(crawl_id)
                rss, uss, processes = _memory(worker)
                rows.append(Row(pool, concurrency, runs[-1][2], runs[-1][3],
                                statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
                                rss, uss, processes))
            finally:
                worker.cleanup()
    finally:
        site.cleanup()
    serial = rows[0].seconds if rows else 0.0
    for row in rows:
        row.speedup = serial / row.seconds if row.seconds else 0.0
    return rows


def grants_and_arrivals(made: list[dict], log: list[dict]) -> tuple[dict, dict]:
    """Pair the crawler's own log of its requests (``crawler.requests_made``: when the rate
    limit granted each token) with the site's log (``site.requests()``: when each request
    arrived): the k-th request the crawler made for a path is the k-th arrival of that path.
    Returns ({(path, k): grant time}, {(path, k): arrival time}), for
    instruments.rate_windows.slack() and max_in_window()."""
    from urllib.parse import urlsplit

    def path_of(url: str) -> str:
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    grants: dict = {}
    arrivals: dict = {}
    for source, times, stamp in ((made, grants, "granted_at"), (log, arrivals, "t")):
        seen: dict[str, int] = {}
        for entry in sorted(source, key=lambda e: e[stamp]):
            path = path_of(entry["url"]) if "url" in entry else entry["path"]
            times[path, seen.get(path, 0)] = entry[stamp]
            seen[path] = seen.get(path, 0) + 1
    return grants, arrivals


def table(rows: list[Row]) -> Table:
    """measure()'s rows as a table; the measured figures are Measured cells."""
    return Table(["worker", "页面数", "请求数（站点日志）", "爬取用时", "加速比（与 -c 1 相比）", "到报告生成",
                  "worker 内存（RSS，进程树合计）", "其中各进程独占（USS 合计）"],
                 [[row.label, Measured(f"{row.pages} 个"), Measured(f"{row.requests} 次"),
                   Measured(f"{row.seconds:.2f} 秒"), Measured(f"{row.speedup:.1f} 倍"),
                   Measured(f"{row.report_seconds:.2f} 秒"), Measured(f"{row.rss_mb:.0f} MB（{row.processes} 个进程）"),
                   Measured(f"{row.uss_mb:.0f} MB")] for row in rows])


def checks(rows: list[Row]) -> str:
    """What the figures must show, as labelled verdicts (compared, unlike the figures)."""
    by = {(row.pool, row.concurrency): row for row in rows}
    serial, t32 = by.get(("threads", 1)), by.get(("threads", 32))
    p4 = by.get(("prefork", 4))
    found = []
    if serial:
        found.append(("每种做法爬到的页面数都相同", len({row.pages for row in rows}) == 1))
    best = max((row for row in rows if row.pool == "threads" and row.concurrency >= 8),
               key=lambda row: row.speedup, default=None)
    if serial and best:
        # 1.5, not the 3-6 measured on an idle machine: on 2 busy cores the parsing (CPU) takes over.
        found.append(("8 或 32 个线程比 1 个线程（串行）至少快 1.5 倍", best.speedup >= 1.5))
    if t32 and p4:
        found.append(("32 个线程的 worker 比 4 个进程的占内存少", t32.rss_mb < p4.rss_mb))
    return verdicts(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instruments.crawl_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=120)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--slow-delay", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    broker = launcher.start_embedded()
    os.environ["REDIS_URL"] = broker.url
    try:
        rows = measure(broker, pages=args.pages, delay=args.delay, slow_delay=args.slow_delay, repeat=args.repeat)
    finally:
        launcher.stop_all()
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(table(rows))
    print(checks(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
