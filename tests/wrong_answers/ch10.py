"""Plausible wrong answers to chapter 10's exercises, each with a piece of the
hint its check must print (run by tests/exercise_matrix.py, and without a
notebook by tests/test_verdicts_10.py)."""

from tests.exercise_matrix import Wrong

#: The imports a wrong answer to exercise 1 needs (each answer runs on its own).
_URL = "from urllib.parse import urljoin, urlsplit, urlunsplit\n\nDEFAULT_PORTS = {\"http\": 80, \"https\": 443}\n\n\n"


def _canonical(*, empty: str = "    if not href:\n        return None\n",
               url: str = "urljoin(base, href)",
               schemes: str = "    if parts.scheme not in DEFAULT_PORTS:\n        return None\n",
               netloc: str = "host if parts.port in (None, DEFAULT_PORTS[parts.scheme]) else f\"{host}:{parts.port}\"",
               fragment: str = '""') -> str:
    """Exercise 1's answer with one thing changed."""
    return (f"{_URL}"
            f"def canonical(href, base):\n"
            f"{empty}"
            f"    parts = urlsplit({url})\n"
            f"{schemes}"
            f"    host = parts.hostname\n"
            f"    netloc = {netloc}\n"
            f"    return urlunsplit((parts.scheme, netloc, parts.path or \"/\", parts.query, {fragment}))\n")


def _busiest(*, order: str = "sorted(times)", edge: str = "<=") -> str:
    """Exercise 2's answer with one thing changed."""
    return (f"def busiest(times, width=1.0):\n"
            f"    ordered = {order}\n"
            f"    most, first = 0, 0\n"
            f"    for last, t in enumerate(ordered):\n"
            f"        while ordered[first] + width {edge} t:\n"
            f"            first += 1\n"
            f"        most = max(most, last - first + 1)\n"
            f"    return most\n")


_POLITE = "%%writeblock my_tasks.py exercise-3\n"


WRONG = {
    1: [
        Wrong([_canonical(fragment="parts.fragment")], hint="去掉 # 后面的片段", why="the fragment kept"),
        Wrong(['''def canonical(href, base):
    if not href or href.startswith(("mailto:", "javascript:", "tel:")):
        return None
    return href.split("#")[0]          # the href as the page wrote it
'''], hint="先用 urljoin(base, href) 变成绝对网址", why="no urljoin: the href returned"),
        Wrong([_canonical(url="urljoin(base, href).lower()")],
              hint="路径和查询串区分大小写", why="the whole URL lower-cased, the path too"),
        Wrong([_canonical(netloc="parts.netloc.lower()")], hint="默认端口不写", why=":80 and :443 kept"),
        Wrong([_URL + '''def canonical(href, base):
    if not href or href.startswith("javascript:"):
        return None                    # the only link that is not a page?
    parts = urlsplit(urljoin(base, href))
    host = parts.hostname or ""
    netloc = host if parts.port in (None, DEFAULT_PORTS.get(parts.scheme)) else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
'''], hint="mailto: 链接不是网页", why="mailto: (and tel:, ftp:) followed"),
        Wrong([_canonical(empty="")], hint="空的 href 不指向别的页面", why="an empty href followed (the page itself)"),
    ],
    2: [
        Wrong(['''from collections import Counter


def busiest(times, width=1.0):
    counts = Counter(int(t // width) for t in times)   # one bucket per whole second
    return max(counts.values(), default=0)
'''], hint="窗口可以从任何时刻开始，不只是整秒", why="whole seconds counted (int(t) buckets)"),
        Wrong([_busiest(edge="<")], hint="窗口是半开的 [t, t+width)", why="a closed window [t, t+width]"),
        Wrong([_busiest(order="list(times)  # already in order?")], hint="先 sorted(times)",
              why="the times assumed sorted"),
        Wrong(['''def busiest(times, width=1.0):
    return max(sum(1 for u in times if t <= u < t + width) for t in times)
'''], hint="没有请求时返回 0", why="crashes without requests (max of nothing)"),
    ],
    3: [
        Wrong([_POLITE + '''@app.task(rate_limit="5/m")
def polite_get(url):
    return httpx.get(url, timeout=2).status_code
'''], hint='"5/m" 是每分钟 5 个', why='rate_limit="5/m": 5 a minute, per worker'),
        Wrong([_POLITE + '''@app.task(rate_limit="5/s")
def polite_get(url):
    return httpx.get(url, timeout=2).status_code
'''], hint="是 Celery 在每个 worker 里各自数的", why='rate_limit="5/s": per worker, two make 10/s'),
        Wrong([_POLITE + '''@app.task
def polite_get(url):
    return httpx.get(url, timeout=2).status_code
'''], hint="请求没有被限速", why="no limit at all"),
        Wrong([_POLITE + '''import time


@app.task
def polite_get(url):
    time.sleep(1 / RATE)            # 5 a second?
    return httpx.get(url, timeout=2).status_code
'''], hint="time.sleep 只让正在运行它的那一个任务慢下来", why="a sleep of 0.2 s per call: per worker"),
        Wrong([_POLITE + '''@app.task(bind=True)
def polite_get(self, url):
    ratelimit.take_or_retry(self, client, urlsplit(url).netloc, RATE)
    return httpx.get(url, timeout=2).status_code
'''], hint="max_retries=None", why="take_or_retry without max_retries=None: gives up after 3 waits"),
    ],
}
