"""The site chapter 10 crawls: a generated static site, served by the course itself.

Nothing is fetched from the internet: ``generate(pages, seed)`` builds every page
from a seed (the same seed, the same site, on every machine and Python version:
only ``random.Random(seed).random()`` is drawn), and a threaded HTTP server serves
it -- one thread per request, so a slow answer never holds up the others::

    python -m services.crawl_site --port 8010 --log .scratch/site.log
    python -m services.crawl_site --port 8010 --pages 30 --seed 3 --delay 0.05 --slow-delay 0.5 --hang 2 \\
        --log .scratch/site.log

``--pages`` articles (120), ``--seed`` (10), ``--delay``: every request waits this
long before its answer (0.02 s; the other requests go on meanwhile), ``--slow-delay``:
what the slow pages add to it (1.0 s), ``--hang``: how long /hang.html sends nothing
(30 s), ``--log``: the request log (made empty at start; its folder is made if missing).

The pages (``Page.kind`` in brackets):

- ``/`` [home]: links to the articles 0-4.
- ``/a/<n>.html`` [article], n = 0 .. pages-1: a title and paragraphs of Chinese and
  English text (words from a fixed list, the first ones the most frequent), linking
  to 3-8 other articles -- articles 5, 6, 7 from article 0, 8-10 from 1, ... (3n+5 ..
  3n+7 from n), the rest drawn from the seed -- so that the later articles are only
  reachable at depth 3 or 4. Hrefs come in the forms a crawler must normalise: ``/a/3.html``,
  ``4.html``, ``../a/5.html``, with a ``#section-1`` fragment, ``http://HOST:PORT/a/6.html``
  (the Host the request was sent to), ``HTTP://HOST:PORT/a/7.html`` (scheme and host in
  upper case); the home link in these forms too (``http://HOST:PORT``: no path at all).
  Some articles also link to a page that does not exist (``/a/<pages+j>.html``: 404),
  to ``/internal/<n>.html``, to ``http://example.invalid/...`` (another host),
  ``mailto:`` and ``javascript:``.
- ``/robots.txt`` [robots]: ``User-agent: *`` / ``Disallow: /internal/``.
- ``/internal/<n>.html`` [private], n = 0-4: served 200 all the same -- a polite crawler
  never asks (the log proves it).
- ``/slow/<k>.html`` [slow], k = 0-2: an article that answers ``--slow-delay`` later (after ``--delay``).
- ``/flaky/<k>.html`` [flaky], k = 0-1: an article whose FIRST request since start (or
  POST /_reset) answers 500, every later one 200: a retry succeeds.
- ``/error/500.html`` [error]: always 500.
- ``/old.html`` [redirect]: 301 to an article; ``/loop/a.html`` [loop]: 302 to
  ``/loop/b.html``, which answers 302 to ``http://HOST:PORT/loop/a.html``.
- ``/files/report.pdf`` [binary]: application/pdf.
- ``/huge.html`` [huge]: text/html, exactly 5 MiB (HUGE_BYTES), streamed.
- ``/hang.html`` [hang]: sends nothing for ``--hang`` seconds (after ``--delay``), then a
  small page: a crawler's timeout comes first.
- Any other path: 404 (an HTML page).

Every special page is linked from one of the articles 0-4 (depth 1), so it is at depth 2.

The log (``--log``) is JSON lines, each written and flushed at once, two per request:
``{"t": time.time() at arrival, "path": the request target, "method": "GET", "ua":
User-Agent or null, "id": n}`` when the request ARRIVES (before any delay), and
``{"t_done": ..., "path": ..., "status": 200, "bytes": body bytes written, "id": n}``
once it is answered (a request still waiting, or cut off by a stop, has none; a client
that went away shows fewer bytes than the page has). ``id`` pairs them; ids keep
counting across resets. ``GET /_health`` answers ``{"ok": true}`` and ``POST /_reset``
forgets the flaky pages' state and empties the log; neither is logged nor delayed.
launcher.start_crawl_site() starts this server; its ``requests()`` reads the log.

For tests only (a crawler never imports this module): ``Site.reachable(max_depth)``,
the pages a crawler from ``/`` requests, with their depths.
"""

from __future__ import annotations

import argparse
import bisect
import html
import itertools
import json
import posixpath
import random
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from .json_http import JsonHandler, QuietServer, serve_until_stopped

ADDRESS = "127.0.0.1"  # never reachable from another machine
#: Written in place of the Host a request was sent to (``Page.links``, ``Page.body``):
#: ``Page.render(host)`` and ``Page.hrefs(host)`` put the real one in (upper-cased after "HTTP://").
HOST_MARK = "HOST:PORT"
HTML_TYPE = "text/html; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
PDF_TYPE = "application/pdf"
#: The size of /huge.html.
HUGE_BYTES = 5 * 1024 * 1024
MIN_PAGES, MAX_PAGES = 10, 10_000
#: How many pages of each kind there are besides the articles.
SLOW_PAGES, FLAKY_PAGES, PRIVATE_PAGES = 3, 2, 5
#: The articles the home page links to (depth 1); the special pages hang off them.
FIRST_ARTICLES = 5
ROBOTS_TXT = "# The course's crawl site: crawlers keep out of /internal/.\nUser-agent: *\nDisallow: /internal/\n"
KINDS = ("home", "article", "private", "slow", "error", "flaky", "redirect", "loop", "binary", "huge", "hang",
         "robots")

# The words of the text, the first ones drawn the most often (_Draw.word): top words that mean something.
_ZH_TEXT = """
    任务 队列 爬虫 网页 链接 数据 分析 消息 并发 线程 进程 请求 响应 超时 重试 失败 成功 结果 缓存 数据库
    服务器 客户端 日志 监控 调度 定时 报表 邮件 通知 图片 视频 上传 下载 文件 目录 配置 部署 容器 集群 节点
    性能 速度 延迟 吞吐 内存 磁盘 网络 协议 接口 参数 函数 模块 框架 项目 团队 用户 权限 安全 密码 签名 加密
    压缩 索引 搜索 排序 统计 词频 分词 中文 英文 文本 标题 段落 页面 站点 域名 地址 路径 规则 限制 速率 令牌
    窗口 计数器 集合 列表 字典 编码 错误 异常 警告 测试 文档 教程 课程 练习 答案 示例 代码 脚本 命令 终端
"""
_EN_TEXT = """
    celery crawler worker queue broker redis django task page link robots retry timeout result backend
    spider sitemap html parser request response header status redirect cache database server client thread
    process pool concurrency latency throughput memory network socket protocol python module package project
    team user admin report email notification image video thumbnail upload download file folder config deploy
    container cluster node schedule beat periodic monitor flower metric chart table index search sort word
    token segment chinese english text title paragraph site domain path rule limit rate bucket window counter
    hash string encode decode error exception warning test docs tutorial lesson exercise answer example code
    script command terminal
"""
ZH_WORDS, EN_WORDS = tuple(_ZH_TEXT.split()), tuple(_EN_TEXT.split())
# Function words between content words: count_words() leaves them out (they are its stop words).
ZH_JOINERS = ("的", "和", "在", "与")
EN_JOINERS = ("the", "of", "and", "to", "with")

#: Link texts of the special pages.
SPECIAL_TEXTS = {"private": "内部资料", "slow": "慢慢打开的页面", "flaky": "时好时坏的页面", "error": "出错的页面",
                 "redirect": "旧地址", "loop": "绕圈的跳转", "binary": "年度报告 PDF", "huge": "巨大的页面",
                 "hang": "不回答的页面", "missing": "已删除的文章", "external": "外部链接", "mailto": "写信给编辑",
                 "javascript": "打印本页", "home": "首页"}
#: The special pages each of the articles 0-4 links to ("missing": a 404, "external": another host).
SPECIAL_LINKS = {0: ("/slow/0.html", "/flaky/0.html", "/old.html"),
                 1: ("/internal/0.html", "/error/500.html", "/loop/a.html"),
                 2: ("/files/report.pdf", "/huge.html", "missing"),
                 3: ("/hang.html", "/slow/1.html", "/flaky/1.html"),
                 4: ("/internal/1.html", "/slow/2.html", "external")}
#: Link forms of an href to a page of the site (see the module's docstring).
FORMS = ("absolute", "relative", "dotdot", "absolute#", "relative#", "full", "FULL")


@dataclass(frozen=True)
class Page:
    """One page of the site, as the server answers a GET for ``path`` (the final answer:
    a flaky page's first request gets 500 instead; a slow or hang page answers late).
    ``links``: the hrefs as written in the HTML, in order (duplicates included), with
    HOST_MARK for the Host of the request: ``hrefs(host)`` fills it in. ``text``: the
    visible text of the page's <body> (<head> has a <style> and a <script>: not text),
    one piece per line in document order (the home link, the <h1> title, the paragraphs,
    the links' texts). ``location``: a redirect's Location header (HOST_MARK too)."""

    path: str
    kind: str
    status: int = 200
    content_type: str = HTML_TYPE
    title: str = ""
    text: str = ""
    links: tuple[str, ...] = ()
    location: str | None = None
    template: bytes = field(default=b"", repr=False)

    @property
    def body(self) -> bytes | Iterator[bytes]:
        """The body with HOST_MARK in it: bytes, or for /huge.html a new generator of its chunks."""
        return _huge_chunks() if self.kind == "huge" else self.template

    def hrefs(self, host: str) -> list[str]:
        """``links`` as the server writes them for a request sent to ``host`` ("127.0.0.1:8010")."""
        return [fill(link, host) for link in self.links]

    def render(self, host: str) -> bytes:
        """The whole body as the server sends it for a request sent to ``host``."""
        return b"".join(self.chunks(host))

    def chunks(self, host: str) -> Iterator[bytes]:
        if self.kind == "huge":
            return _huge_chunks()
        if self.kind == "binary":
            return iter([self.template])
        return iter([fill(self.template.decode("utf-8"), host).encode("utf-8")])


def fill(text: str, host: str) -> str:
    """``text`` with HOST_MARK replaced by ``host`` -- upper-cased after "HTTP://"."""
    return text.replace(f"HTTP://{HOST_MARK}", f"HTTP://{host.upper()}").replace(HOST_MARK, host)


@dataclass
class Site:
    """A generated site: ``pages`` maps each path the server answers (but 404s) to its Page."""

    pages: dict[str, Page]
    articles: int
    seed: int

    def reachable(self, max_depth: int, max_pages: int | None = None, robots: bool = True) -> dict[str, int]:
        """What a crawler starting at ``/`` requests, with the depth of each path (``/``: 0):
        a breadth-first search over the links of the pages whose answer is HTML it reads
        (home, articles, slow and flaky pages, and private ones when ``robots`` is False).
        Links are resolved as a browser does (urljoin, scheme and host in any case, fragment
        dropped); other hosts, mailto: and javascript: are left out, and so is /robots.txt
        (nobody links it). Paths that do not exist are included (they answer 404). A
        redirect's Location is requested at the redirect's own depth (a crawler follows it
        in the same fetch). ``robots``: leave out what robots.txt disallows (/internal/).
        ``max_pages``: only the first ones in breadth-first order (links in page order).
        For tests only: a crawler finds the pages from ``/`` and the links alone."""
        host = "site.test:8010"
        depths = {"/": 0}
        queue: deque[tuple[str, int]] = deque([("/", 0)])  # a 0-1 breadth-first search: a hop costs 0
        while queue:
            path, depth = queue.popleft()
            page = self.pages.get(path)
            if page is None or depth > depths[path]:
                continue
            base = f"http://{host}{path}"
            if page.location is not None:
                targets, child_depth = [fill(page.location, host)], depth
            elif page.kind in ("home", "article", "slow", "flaky", "private") and depth < max_depth:
                targets, child_depth = page.hrefs(host), depth + 1
            else:
                continue
            for href in targets:
                target = _same_site_path(urljoin(base, href), host)
                if target is None or (robots and target.startswith("/internal/")):
                    continue
                if target in depths:
                    if depths[target] <= child_depth:
                        continue
                elif max_pages is not None and len(depths) >= max_pages:
                    break
                depths[target] = child_depth
                if child_depth == depth:  # a redirect's hop: the same depth, requested in the same fetch
                    queue.appendleft((target, child_depth))
                else:
                    queue.append((target, child_depth))
        return depths


def _same_site_path(url: str, host: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or parts.netloc.lower() != host:
        return None
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


# --- generating -----------------------------------------------------------------------------

class _Draw:
    """Deterministic choices from ``random.Random(seed).random()`` only: the one draw whose
    sequence Python promises to keep across versions (randrange, choice and sample may change)."""

    def __init__(self, seed: int):
        self._random = random.Random(seed).random

    def below(self, n: int) -> int:
        return min(int(self._random() * n), n - 1)

    def chance(self, p: float) -> bool:
        return self._random() < p

    def between(self, low: int, high: int) -> int:
        return low + self.below(high - low + 1)

    def pick(self, items):
        return items[self.below(len(items))]

    def shuffled(self, items: list) -> list:
        items = list(items)
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]
        return items

    def sample(self, items: list, k: int) -> list:
        return self.shuffled(items)[:k]

    def word(self, words: tuple[str, ...]) -> str:
        """A word; the word of rank r (0, 1, ...) drawn with weight 1/(r+3): the first ones most often."""
        cumulative = _CUMULATIVE[words]
        return words[min(bisect.bisect_right(cumulative, self._random() * cumulative[-1]), len(words) - 1)]


def _cumulative(count: int) -> list[float]:
    return list(itertools.accumulate(1 / (rank + 3) for rank in range(count)))


_CUMULATIVE = {ZH_WORDS: _cumulative(len(ZH_WORDS)), EN_WORDS: _cumulative(len(EN_WORDS))}


def _zh_sentence(draw: _Draw) -> str:
    words = [draw.word(ZH_WORDS)]
    for _ in range(draw.between(2, 5)):
        if draw.chance(0.3):
            words.append(draw.pick(ZH_JOINERS))
        words.append(draw.word(ZH_WORDS))
    return "".join(words) + draw.pick(("。", "。", "！", "？"))


def _en_sentence(draw: _Draw) -> str:
    words = [draw.word(EN_WORDS)]
    for _ in range(draw.between(4, 9)):
        if draw.chance(0.3):
            words.append(draw.pick(EN_JOINERS))
        words.append(draw.word(EN_WORDS))
    sentence = " ".join(words)
    return sentence[0].upper() + sentence[1:] + "."


def _paragraph(draw: _Draw) -> str:
    return " ".join(_zh_sentence(draw) if draw.chance(0.5) else _en_sentence(draw)
                    for _ in range(draw.between(2, 4)))


def _title(draw: _Draw, tag: str) -> str:
    first, second = draw.word(ZH_WORDS), draw.word(ZH_WORDS)
    while second == first:
        second = draw.word(ZH_WORDS)
    english = draw.word(EN_WORDS)
    return f"{first}{second}：{english[0].upper()}{english[1:]} {draw.word(EN_WORDS)} #{tag}"


def _href(draw: _Draw, source: str, target: str) -> str:
    """An href from the page ``source`` to the site's ``target``, in a form drawn from FORMS."""
    form = draw.pick(FORMS)
    folder = posixpath.dirname(source)
    relative = posixpath.relpath(target, folder) if target != "/" else posixpath.relpath("/", folder) + "/"
    fragment = f"#section-{draw.between(1, 3)}"
    if form == "absolute":
        return target
    if form == "relative":
        return relative
    if form == "dotdot":
        return "../" * max(1, folder.count("/")) + target.lstrip("/") if folder != "/" else relative
    if form == "absolute#":
        return target + fragment
    if form == "relative#":
        return relative + fragment
    if form == "full":
        return f"http://{HOST_MARK}{target}" if target != "/" else f"http://{HOST_MARK}"
    return f"HTTP://{HOST_MARK}{target}"


_HEAD = ('<!DOCTYPE html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
         "<style>body {{ font-family: sans-serif; max-width: 40em; margin: auto; }}</style>\n"
         '<script>window.analytics = {{ page: "{path}" }};</script>\n</head>\n<body>\n')


def _html(path: str, title: str, paragraphs: list[str], links: list[tuple[str, str]],
          home: str | None) -> tuple[bytes, str]:
    """The HTML of a page, and its visible text (one piece per line)."""
    out = [_HEAD.format(title=html.escape(title), path=path)]
    text = []
    if home is not None:
        out.append(f'<header><a href="{html.escape(home)}">{SPECIAL_TEXTS["home"]}</a></header>\n')
        text.append(SPECIAL_TEXTS["home"])
    out.append(f"<h1>{html.escape(title)}</h1>\n<article>\n")
    text.append(title)
    for i, paragraph in enumerate(paragraphs, 1):
        out.append(f'<p id="section-{i}">{html.escape(paragraph)}</p>\n')
        text.append(paragraph)
    out.append("</article>\n<nav>\n<ul>\n")
    for href, label in links:
        out.append(f'<li><a href="{html.escape(href)}">{html.escape(label)}</a></li>\n')
        text.append(label)
    out.append("</ul>\n</nav>\n</body>\n</html>\n")
    return "".join(out).encode("utf-8"), "\n".join(text)


def _small_page(title: str, message: str) -> bytes:
    return (_HEAD.format(title=html.escape(title), path="") + f"<h1>{html.escape(title)}</h1>\n"
            f"<p>{html.escape(message)}</p>\n</body>\n</html>\n").encode("utf-8")


_HUGE_HEAD = _small_page("巨大的页面", "").rsplit(b"</body>", 1)[0]
_HUGE_LINE = b"<p>" + b" ".join([b"celery crawler worker queue broker"] * 8) + b"</p>\n"
_HUGE_TAIL = b"</body>\n</html>\n"
_CHUNK_LINES = 256


def _huge_chunks() -> Iterator[bytes]:
    """HUGE_BYTES of HTML: whole paragraphs, padded with spaces to the exact size."""
    yield _HUGE_HEAD
    left = HUGE_BYTES - len(_HUGE_HEAD) - len(_HUGE_TAIL)
    chunk = _HUGE_LINE * _CHUNK_LINES
    while left >= len(chunk):
        yield chunk
        left -= len(chunk)
    lines = left // len(_HUGE_LINE)
    yield _HUGE_LINE * lines + b" " * (left - lines * len(_HUGE_LINE))
    yield _HUGE_TAIL


def _pdf() -> bytes:
    """A small one-page PDF (its offsets right), as a report a site offers for download."""
    stream = b"BT /F1 18 Tf 72 720 Td (Annual report 2024) Tj ET"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def generate(pages: int = 120, seed: int = 10) -> Site:
    """The site with ``pages`` articles, drawn from ``seed``: pure, no network, the same
    pages for the same arguments on every machine. ValueError for a size out of range."""
    if not MIN_PAGES <= pages <= MAX_PAGES:
        raise ValueError(f"a site has {MIN_PAGES} to {MAX_PAGES} articles, not {pages}")
    draw = _Draw(seed)
    article = [f"/a/{n}.html" for n in range(pages)]
    slow = [f"/slow/{k}.html" for k in range(SLOW_PAGES)]
    flaky = [f"/flaky/{k}.html" for k in range(FLAKY_PAGES)]
    private = [f"/internal/{n}.html" for n in range(PRIVATE_PAGES)]
    titles = {path: _title(draw, str(n)) for n, path in enumerate(article)}
    titles.update({path: _title(draw, f"slow-{k}") for k, path in enumerate(slow)})
    titles.update({path: _title(draw, f"flaky-{k}") for k, path in enumerate(flaky)})
    titles.update({path: f"内部资料 {n}" for n, path in enumerate(private)})
    kinds = {"/slow/": "slow", "/flaky/": "flaky", "/error/": "error", "/old.h": "redirect", "/loop/": "loop",
             "/files/": "binary", "/huge.h": "huge", "/hang.h": "hang", "/internal/": "private"}

    def special(source: str, target: str) -> tuple[str, str]:
        """(href, link text) of a link from ``source`` to a special page, a 404 or another host."""
        if target == "missing":
            return _href(draw, source, f"/a/{pages + draw.below(50)}.html"), SPECIAL_TEXTS["missing"]
        if target == "external":
            return (f"{draw.pick(('http', 'https'))}://example.invalid/{draw.word(EN_WORDS)}.html",
                    SPECIAL_TEXTS["external"])
        if target in ("mailto", "javascript"):
            href = "mailto:editor@example.invalid" if target == "mailto" else "javascript:window.print()"
            return href, SPECIAL_TEXTS[target]
        kind = next(k for prefix, k in kinds.items() if target.startswith(prefix))
        return _href(draw, source, target), titles.get(target, SPECIAL_TEXTS[kind])

    def to_articles(source: str, targets: list[int]) -> list[tuple[str, str]]:
        links = [(_href(draw, source, article[m]), titles[article[m]]) for m in targets]
        if links and draw.chance(0.3):  # the same article again, in another form: a crawler fetches it once
            m = draw.pick(targets)
            links.append((_href(draw, source, article[m]), titles[article[m]]))
        return links

    site: dict[str, Page] = {}

    def page(path: str, kind: str, title: str, links: list[tuple[str, str]], home: bool = True) -> None:
        home_href = _href(draw, path, "/") if home else None
        paragraphs = [_paragraph(draw) for _ in range(draw.between(2, 4))]
        body, text = _html(path, title, paragraphs, links, home_href)
        hrefs = ([home_href] if home_href is not None else []) + [href for href, _ in links]
        site[path] = Page(path, kind, title=title, text=text, links=tuple(hrefs), template=body)

    home_links = to_articles("/", list(range(FIRST_ARTICLES)))
    home_links += [special("/", "external"), special("/", "mailto"), special("/", "javascript")]
    page("/", "home", "课程示例站", home_links, home=False)
    for n, path in enumerate(article):
        children = [m for m in range(3 * n + 5, 3 * n + 8) if m < pages]
        wanted = draw.between(3, 8)
        others = [m for m in range(min(pages, 3 * n + 10)) if m != n and m not in children]
        targets = draw.shuffled(children + draw.sample(others, max(0, wanted - len(children))))
        links = to_articles(path, targets)
        extras = list(SPECIAL_LINKS.get(n, ()))
        if n >= FIRST_ARTICLES:
            for target, p in (("/internal/", 0.1), ("missing", 0.08), ("external", 0.15), ("mailto", 0.05),
                              ("javascript", 0.05), ("/slow/", 0.03), ("/flaky/", 0.03)):
                if draw.chance(p):
                    if target == "/internal/":
                        target = draw.pick(private)
                    elif target in ("/slow/", "/flaky/"):
                        target = draw.pick(slow if target == "/slow/" else flaky)
                    extras.append(target)
        links += [special(path, target) for target in extras]
        page(path, "article", titles[path], draw.shuffled(links))
    for path in slow + flaky + private:
        kind = next(k for prefix, k in kinds.items() if path.startswith(prefix))
        page(path, kind, titles[path], to_articles(path, draw.sample(list(range(pages)), draw.between(3, 5))))
    site["/robots.txt"] = Page("/robots.txt", "robots", content_type=TEXT_TYPE, template=ROBOTS_TXT.encode())
    site["/error/500.html"] = Page("/error/500.html", "error", status=500, title="服务器出错了",
                                   template=_small_page("服务器出错了", "这个页面总是回答 500。"))
    old_target = draw.pick(article)
    site["/old.html"] = Page("/old.html", "redirect", status=301, title="页面已搬家", location=old_target,
                             template=_small_page("页面已搬家", f"新地址：{old_target}"))
    site["/loop/a.html"] = Page("/loop/a.html", "loop", status=302, title="跳转", location="/loop/b.html",
                                template=_small_page("跳转", "请去 /loop/b.html"))
    site["/loop/b.html"] = Page("/loop/b.html", "loop", status=302, title="跳转",
                                location=f"http://{HOST_MARK}/loop/a.html",
                                template=_small_page("跳转", "请去 /loop/a.html"))
    site["/files/report.pdf"] = Page("/files/report.pdf", "binary", content_type=PDF_TYPE, template=_pdf())
    site["/huge.html"] = Page("/huge.html", "huge", title="巨大的页面")
    site["/hang.html"] = Page("/hang.html", "hang", title="终于回答了",
                              template=_small_page("终于回答了", "这个页面很久才回答。"))
    return Site(pages=site, articles=pages, seed=seed)


# --- serving ----------------------------------------------------------------------------------

_NOT_FOUND = _small_page("页面不存在", "404：这个地址没有页面。")
_FLAKY_ERROR = _small_page("暂时出错", "500：请稍后重试。")
_NOT_ALLOWED = _small_page("不支持的方法", "405：这里只回答 GET 和 HEAD。")
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]+)?|\[[0-9A-Fa-f:.]+\](:[0-9]+)?")


class SiteServer(QuietServer):
    """The server and its state: the site, the options, the flaky pages already asked for, the log."""

    #: Connections waiting to be accepted: a crawler's burst of 32 must not overflow it
    #: (an overflowing backlog delays a connection by a whole second: the client's SYN retry).
    request_queue_size = 128

    def __init__(self, port: int, site: Site, *, delay: float, slow_delay: float, hang: float):
        self.site, self.delay, self.slow_delay, self.hang = site, delay, slow_delay, hang
        self.flaky_seen: set[str] = set()
        self.lock = threading.Lock()  # the log file, the ids, the flaky state, stdout
        self.log_file = None
        self.last_id = 0
        super().__init__((ADDRESS, port), Handler)

    def open_log(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - written until server_close()

    def _write(self, entry: dict) -> None:
        if self.log_file is not None and not self.log_file.closed:
            self.log_file.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self.log_file.flush()  # read while we run

    def arrived(self, method: str, target: str, ua: str | None) -> tuple[int, bool]:
        """Log a request's arrival; returns its id, and whether it is the first for a flaky page."""
        path = urlsplit(target).path
        with self.lock:
            self.last_id += 1
            self._write({"t": time.time(), "path": target, "method": method, "ua": ua, "id": self.last_id})
            page = self.site.pages.get(path)
            first = page is not None and page.kind == "flaky" and path not in self.flaky_seen
            if first:
                self.flaky_seen.add(path)
            return self.last_id, first

    def answered(self, request_id: int, method: str, target: str, status: int | None, sent: int,
                 started: float) -> None:
        with self.lock:
            self._write({"t_done": time.time(), "path": target, "status": status, "bytes": sent, "id": request_id})
            print(f"{method} {target} -> {status} ({sent} bytes, {time.monotonic() - started:.2f} s)", flush=True)

    def reset(self) -> None:
        with self.lock:
            self.flaky_seen.clear()
            if self.log_file is not None:
                self.log_file.seek(0)
                self.log_file.truncate()

    def server_close(self) -> None:
        super().server_close()
        with self.lock:
            if self.log_file is not None:
                self.log_file.close()


class Handler(JsonHandler):
    server: SiteServer
    server_version = "CourseCrawlSite/1.0"

    def version_string(self) -> str:
        return self.server_version  # the Server header, without Python's version

    def request_host(self) -> str:
        """The Host the request was sent to (a bad or missing one: our own address)."""
        host = (self.headers.get("Host") or "").strip()
        return host if _HOST.fullmatch(host) else f"{ADDRESS}:{self.server.server_address[1]}"

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/_health":
            self.send_json(200, {"ok": True})
        else:
            self.serve_page(head=False)

    def do_HEAD(self) -> None:
        self.serve_page(head=True)

    def do_POST(self) -> None:
        if urlsplit(self.path).path == "/_reset":
            self.server.reset()
            self.send_json(200, {"ok": True})
        else:
            self.serve_page(head=False, allowed=False)

    def serve_page(self, *, head: bool, allowed: bool = True) -> None:
        started = time.monotonic()
        target = self.path
        request_id, flaky_first = self.server.arrived(self.command, target, self.headers.get("User-Agent"))
        status, sent = None, 0
        try:
            status, sent = self.answer(urlsplit(target).path, head=head, allowed=allowed, flaky_first=flaky_first)
        finally:
            self.server.answered(request_id, self.command, target, status, sent, started)

    def answer(self, path: str, *, head: bool, allowed: bool, flaky_first: bool) -> tuple[int, int]:
        """Wait as the page says, then send it; returns (status, body bytes written)."""
        server = self.server
        if server.delay:
            time.sleep(server.delay)
        if not allowed:
            return self.send_page(405, HTML_TYPE, [_NOT_ALLOWED], len(_NOT_ALLOWED), head, {"Allow": "GET, HEAD"})
        page = server.site.pages.get(path)
        if page is None:
            return self.send_page(404, HTML_TYPE, [_NOT_FOUND], len(_NOT_FOUND), head)
        if page.kind == "slow":
            time.sleep(server.slow_delay)
        elif page.kind == "hang":
            time.sleep(server.hang)
        if flaky_first:
            return self.send_page(500, HTML_TYPE, [_FLAKY_ERROR], len(_FLAKY_ERROR), head)
        host = self.request_host()
        headers = {} if page.location is None else {"Location": fill(page.location, host)}
        if page.kind == "huge":
            return self.send_page(page.status, page.content_type, page.chunks(host), HUGE_BYTES, head, headers)
        body = page.render(host)
        return self.send_page(page.status, page.content_type, [body], len(body), head, headers)

    def send_page(self, status: int, content_type: str, chunks, length: int, head: bool,
             headers: dict[str, str] | None = None) -> tuple[int, int]:
        sent = 0
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(length))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if not head:
                for chunk in chunks:
                    self.wfile.write(chunk)
                    sent += len(chunk)
        except ConnectionError:  # the client has given up (its timeout, its size limit): nobody to answer
            self.close_connection = True
        return status, sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.crawl_site",
                                     description="Serve the course's generated site to crawl (chapter 10).")
    parser.add_argument("--port", type=int, required=True, help="the port on 127.0.0.1 to listen on")
    parser.add_argument("--pages", type=int, default=120, help="how many articles (120)")
    parser.add_argument("--seed", type=int, default=10, help="another seed, another site (10)")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds every request waits (0.02)")
    parser.add_argument("--slow-delay", type=float, default=1.0, help="seconds the slow pages add (1.0)")
    parser.add_argument("--hang", type=float, default=30.0, help="seconds /hang.html sends nothing (30)")
    parser.add_argument("--log", type=Path, required=True, help="the request log (JSON lines), emptied at start")
    args = parser.parse_args(argv)
    if not MIN_PAGES <= args.pages <= MAX_PAGES:
        parser.error(f"--pages must be {MIN_PAGES} to {MAX_PAGES}, not {args.pages}")
    for option in ("delay", "slow_delay", "hang"):
        if getattr(args, option) < 0:
            parser.error(f"--{option.replace('_', '-')} must be 0 or more seconds")

    site = generate(args.pages, args.seed)
    try:
        server = SiteServer(args.port, site, delay=args.delay, slow_delay=args.slow_delay, hang=args.hang)
    except OSError as exc:
        print(f"crawl site: cannot listen on {ADDRESS}:{args.port}: {exc.strerror or exc}", file=sys.stderr,
              flush=True)
        return 1
    try:
        server.open_log(args.log)
    except OSError as exc:
        server.server_close()
        print(f"crawl site: cannot write the log {args.log}: {exc.strerror or exc}. Choose another --log.",
              file=sys.stderr, flush=True)
        return 1
    return serve_until_stopped(
        server, f"crawl site ready on http://{ADDRESS}:{args.port} ({args.pages} pages, seed {args.seed}); "
                f"log: {args.log}", "crawl site stopped")


if __name__ == "__main__":
    sys.exit(main())
