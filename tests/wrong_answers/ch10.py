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


def _percents(*, seconds: str = 'int(block["out_time_us"]) / 1_000_000', na: bool = True, end: bool = True,
              percent: str = "min(100.0, max(0.0, 100 * seconds / total))") -> str:
    """Exercise 4's answer with one thing changed (the reference's shape: one dict per block)."""
    branches = [("value == \"end\"", "100.0")] if end else []
    branches += [("block.get(\"out_time_us\", \"N/A\") == \"N/A\"", "0.0")] if na else []
    chosen = "".join(f"        {'elif' if i else 'if'} {test}:\n            percent = {value}\n"
                     for i, (test, value) in enumerate(branches))
    indent = " " * (12 if branches else 8)
    return ("def progress_percents(text, total):\n"
            "    percents, block = [], {}\n"
            "    for line in text.splitlines():\n"
            '        key, _, value = line.strip().partition("=")\n'
            "        block[key] = value\n"
            '        if key != "progress":\n'
            "            continue\n"
            f"{chosen}{'        else:' + chr(10) if branches else ''}"
            f"{indent}seconds = {seconds}\n"
            f"{indent}percent = {percent}\n"
            "        percents.append(round(percent, 1))\n"
            "        block = {}\n"
            "    return percents\n")


_SHRINK = "%%writeblock my_tasks.py exercise-5\n"


def _shrink(*, state: str = "PROGRESS", percent: str = "round(100 * done / total, 1)", height: str = "height",
            result: str = '{"height": info.height, "duration": info.duration}') -> str:
    """Exercise 5's answer with one thing changed."""
    return (f"{_SHRINK}@app.task(bind=True)\n"
            f"def shrink(self, src, dst, height):\n"
            f"    def report(done, total):\n"
            f"        self.update_state(state=\"{state}\", meta={{\"percent\": {percent}}})\n"
            f"\n"
            f"    info = video.transcode(src, dst, height={height}, on_progress=report)\n"
            f"    return {result}\n")


WRONG[4] = [
    Wrong([_percents(seconds='int(block["out_time_ms"]) / 1000     # milliseconds, says the name')],
          hint="out_time_ms 名字里是毫秒，其实和 out_time_us 一样是微秒",
          why="out_time_ms / 1000: taken for milliseconds"),
    Wrong([_percents(percent="100 * seconds / total")], hint="百分数要在 0 到 100 之间", why="no clamp to 0-100"),
    Wrong([_percents(na=False)], hint="out_time_us 是 N/A，不是数", why="crashes on out_time_us=N/A"),
    Wrong([_percents(percent="min(1.0, max(0.0, seconds / total))")], hint="要百分数（0–100），不是比例",
          why="fractions 0-1"),
    Wrong([_percents(end=False)], hint="progress=end 的那一块说 FFmpeg 做完了", why="progress=end ignored"),
    Wrong(['''def progress_percents(text, total):
    percents, done = [], 0.0
    for line in text.splitlines():            # one percentage per line?
        key, _, value = line.partition("=")
        if key == "out_time_us" and value != "N/A":
            done = min(100.0, max(0.0, 100 * int(value) / 1_000_000 / total))
        if key == "progress" and value == "end":
            done = 100.0
        percents.append(round(done, 1))
    return percents
'''], hint="每一块给一个百分数，不是每一行一个", why="one value per line, not per block"),
]

WRONG[5] = [
    Wrong([f'''{_SHRINK}@app.task(bind=True)
def shrink(self, src, dst, height):
    info = video.transcode(src, dst, height=height)
    return {{"height": info.height, "duration": info.duration}}
'''], hint="没有看到 PROGRESS 状态：on_progress 里要调用 self.update_state(", why="no update_state"),
    Wrong([_shrink(state="STARTED")],
          hint='update_state 的 state 写 "PROGRESS"', why='state="STARTED" instead of PROGRESS'),
    Wrong([_shrink(percent="done / total")],
          hint="这是比例（0–1）", why="percent as a fraction 0-1"),
    Wrong([_shrink(result="info            # the VideoInfo itself")], hint="返回一个字典",
          why="returns the VideoInfo (EncodeError)"),
    Wrong([_shrink(height="360")], hint="不要写死", why="height hard-coded (360)"),
]
