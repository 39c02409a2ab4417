"""Chapter 10's app: crawling a website with one task per page, then analysing what was fetched.

A crawl starts from ONE seed URL and discovers the rest from links (it is never
given a list of pages). Start a worker for this module with::

    celery -A demo_tasks.crawler worker --pool=threads -c 32 --loglevel=info

``--pool=threads``: fetching a page is waiting (for the server, for a token of
the rate limit); a waiting thread costs a few hundred kilobytes, a prefork
process tens of megabytes, and the GIL does not matter while threads wait.
Then, in Python (a notebook)::

    crawl_id = start_crawl("http://127.0.0.1:8010/", max_depth=3, max_pages=200, rate=20)
    report = wait_for_report(crawl_id, timeout=120)
    report["statuses"], report["top_words"], report["most_linked"]

What a crawl keeps in Redis (``crawl:<id>:...``; ``keys(crawl_id)`` lists them):

- ``config`` the crawl's settings (JSON); ``seen`` a SET of every URL queued or
  claimed: SADD is how a URL is fetched once across all workers (and SCARD is
  the page-count cap, ``max_pages``); ``depth`` a HASH of each URL's shortest
  known depth; ``pending`` a counter of pages queued and not finished yet.
- ``pages`` a HASH, URL -> ONE JSON record per outcome (see ``fetch_page``);
  ``done`` the SET of finished URLs; ``skipped`` a HASH of links not followed,
  URL -> why (``outside_host``, ``robots``, ``too_deep``, ``page_limit``);
  ``robots`` robots.txt per site, fetched once per crawl; ``requests`` the
  crawler's own log of every HTTP request it made (time, token, answer).
- ``report`` the analysis (JSON), written by ``analyse``.

How the end is detected: a pending counter. ``start_crawl`` counts the seed
(1); a task counts every child it queues (INCR, in the same Lua script as the
SADD that de-duplicates it) BEFORE it finishes itself; finishing is ONE Lua
script (``FINISH``) that writes the task's records and DECRs the counter -- only
the first time for that URL (SADD to ``done``), so a task that runs twice does
not count twice. Children are counted before their parent is uncounted, so the
counter reaches 0 exactly once, when nothing is left: the task that brings it
there sends ``analyse``. Redis runs a script to the end before any other
command, so no worker ever sees a record half-written or a count without its
record.

Depth is the shortest distance from the seed, as a breadth-first search would
find it, whatever order the workers happen to finish in: a page first reached at
depth 3 through a fast path and later at depth 2 through a slow one gets its
links followed again at the smaller depth (``CLAIM`` and ``FINISH`` below
decide, atomically, who does that), so every page within ``max_depth`` is
fetched, and fetched once.

The per-host limit (``rate``) is chapter 08's token bucket in Redis
(demo_tasks/ratelimit.py), one bucket per host shared by every worker:
``acquire`` right before each request, and a short sleep when the bucket is
empty -- not ``take_or_retry``, because one task makes several requests
(robots.txt, the page, each redirect) and a retry would repeat those already
made (``_take_token`` says more). Celery's own ``rate_limit`` would not do: it
is per worker (chapter 08), and it counts tasks, not requests.

A worker that dies in the middle (killed, out of memory) takes the tasks it
was running with it: Celery acknowledges a task when it starts (its default),
so nobody runs them again, the pending count never reaches 0 and
``wait_for_report`` says how many pages are pending. ``resume_crawl(id)`` sends
the unfinished pages again; a page that turns out to be finished already is
not recorded or counted twice (the ``done`` set). (The messages the dead worker
had prefetched but not started come back by themselves -- after the broker's
visibility timeout, an hour on Redis -- and then find their page done.)

Every task takes and returns plain JSON values; the records are JSON: nothing
depends on pickle.
"""

from __future__ import annotations

import json
import os
import posixpath
import random
import re
import threading
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import redis
from celery import Celery
from celery.utils.log import get_task_logger

from demo_tasks import ratelimit

# As in tasks.py: the article's server unless REDIS_URL names another.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1")

# set_as_current=False: importing this module beside another app (a notebook
# that also uses Django, a test) must not change which app @shared_task uses.
app = Celery("demo_tasks.crawler", broker=REDIS_URL, backend=REDIS_URL, set_as_current=False)

# Keep retrying the broker connection while the worker starts (Celery 5 warns otherwise).
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-connection-retry-on-startup
app.conf.broker_connection_retry_on_startup = True
# Results expire after an hour (Redis deletes them itself): enough for a chapter.
# fetch_page keeps no result at all (ignore_result): its records are the result.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-expires
app.conf.result_expires = 3600

#: Who we say we are (the User-Agent header), and the name robots.txt rules match ("coursecrawler").
USER_AGENT = "CourseCrawler/1.0 (chapter 10 of the Django Celery course)"
#: The most bytes of one page the crawler reads; a bigger page is recorded as too large.
MAX_BYTES = 1_000_000
#: How many redirects one page may make the crawler follow.
MAX_REDIRECTS = 5
#: Retries after a timeout, a connection error or a 5xx answer (so at most 1 + 3 attempts).
MAX_RETRIES = 3
#: The first retry waits between half and all of this many seconds; every next one twice as long.
RETRY_BACKOFF = 0.5
#: Reading one answer's body may take at most this many times the timeout (a server that trickles).
BODY_TIME_FACTOR = 10
#: How many words and pages the report lists.
TOP_WORDS = 20
MOST_LINKED = 10
#: The content types read as HTML.
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
#: Why a link was not followed (the values of the ``skipped`` hash).
SKIP_REASONS = ("outside_host", "robots", "too_deep", "page_limit")

logger = get_task_logger(__name__)

_CRAWL_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


# --- Pure functions: URLs and HTML ---------------------------------------------------------

def normalise(url: str, base: str | None = None) -> str | None:
    """The absolute, normal form of a link, or None if it is not a web page's address.

    ``url`` is resolved against ``base`` (the page it was found on) as a browser
    does (``urljoin``: ``4.html``, ``../a/5.html``, ``/a/3.html``); then the
    scheme and host are lower-cased, the fragment (``#section``: a part of the
    same page) and a default port (``:80`` for http, ``:443`` for https) are
    dropped, ``.`` and ``..`` segments are resolved, an empty path becomes ``/``,
    and characters a URL may not hold are percent-encoded. User names and
    passwords in a link are dropped (a crawler never sends credentials it found
    on a page). Links that are no web pages -- ``mailto:``, ``javascript:``,
    ``tel:``, ``data:``, ``ftp:``, a URL without a host or with a bad port --
    give None."""
    url = (url or "").strip()
    if base:
        url = urljoin(base, url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is no number, an unclosed [IPv6 bracket
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in ("http", "https") or not host:
        return None
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    netloc = host if port is None or port == {"http": 80, "https": 443}[scheme] else f"{host}:{port}"
    # Characters a URL may not hold (spaces, non-ASCII) percent-encoded; existing %XX escapes kept.
    path = quote(_remove_dot_segments(parts.path or "/"), safe="/:@!$&'()*+,;=~%")
    query = quote(parts.query, safe="=&;:@!$'()*+,/?~%")
    return urlunsplit((scheme, netloc, path, query, ""))


def _remove_dot_segments(path: str) -> str:
    """``/a/./b/../c`` -> ``/a/c`` (RFC 3986, 5.2.4), keeping a trailing slash."""
    if "." not in path:
        return path
    resolved = posixpath.normpath(path)
    if resolved.startswith("//"):  # normpath keeps a leading double slash
        resolved = "/" + resolved.lstrip("/")
    if path.endswith(("/", "/.", "/..")) and resolved != "/":
        resolved += "/"
    return resolved


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a normalised URL: the site it belongs to (robots.txt, the rate limit)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# Elements that start a new line when a browser shows them; their text is kept on lines of its own.
_BLOCKS = ("address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption", "figure",
           "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol",
           "p", "pre", "section", "table", "td", "th", "tr", "ul")
# Elements whose text a reader never sees.
_INVISIBLE = ("script", "style", "noscript", "template", "head", "title", "svg", "iframe", "object")


def extract(html: str | bytes, base_url: str, encoding: str | None = None) -> tuple[str, str, list[str]]:
    """``(title, text, links)`` of an HTML page (BeautifulSoup with Python's own "html.parser").

    ``title``: the ``<title>`` ("" without one). ``text``: what a reader sees of
    the page -- the text of ``<body>``, one line per block (heading, paragraph,
    list item, ...), spaces collapsed, without scripts, styles or hidden
    elements. ``links``: the ``href`` of every ``<a>``, resolved against
    ``base_url`` (or the page's ``<base href>``) and normalised (``normalise``),
    each once, in the order they first appear; links that are no web pages
    (``mailto:``, ``javascript:``) are left out. ``html`` may be bytes: then
    ``encoding`` (the HTTP header's charset) or the page's ``<meta charset>``
    decides how to decode it."""
    from bs4 import BeautifulSoup

    with warnings.catch_warnings():  # "looks like a filename/URL" for a tiny document: not a problem here
        warnings.simplefilter("ignore")
        if isinstance(html, bytes):
            soup = BeautifulSoup(html, "html.parser", from_encoding=encoding)
        else:
            soup = BeautifulSoup(html, "html.parser")
    title = " ".join(soup.title.get_text().split()) if soup.title else ""
    base_tag = soup.find("base", href=True)
    base = urljoin(base_url, base_tag["href"]) if base_tag else base_url
    links: dict[str, None] = {}
    for anchor in soup.find_all("a", href=True):
        link = normalise(anchor["href"], base)
        if link is not None:
            links.setdefault(link)
    for hidden in [*soup.find_all(_INVISIBLE), *soup.find_all(hidden=True)]:
        if not hidden.decomposed:  # not inside one removed already
            hidden.decompose()
    root = soup.body or soup
    for block in root.find_all(_BLOCKS):
        block.insert_before("\n")
        block.insert_after("\n")
    for br in root.find_all("br"):
        br.replace_with("\n")
    lines = (" ".join(line.split()) for line in root.get_text().splitlines())
    return title, "\n".join(line for line in lines if line), list(links)


def robots_parser(text: str | None, status: int | None = 200) -> RobotFileParser:
    """A ``urllib.robotparser`` parser for a robots.txt answer, with the rules of RFC 9309:
    ``status`` 2xx: the rules in ``text``; 401 or 403: nothing allowed (as Python's
    ``RobotFileParser.read()`` does); another 4xx (no robots.txt): everything allowed;
    None (no answer) or 5xx: nothing allowed -- the site may be in trouble, so a
    polite crawler stays away until it can read the rules."""
    parser = RobotFileParser()
    if status is not None and 200 <= status < 300:
        parser.parse((text or "").splitlines())
    elif status in (401, 403) or status is None or status >= 500:
        parser.disallow_all = True
    else:
        parser.allow_all = True
    parser.modified()  # "read now": can_fetch() says False for a parser that was never read
    return parser


def allowed(parser: RobotFileParser, url: str) -> bool:
    """May the crawler (``USER_AGENT``) fetch ``url``?"""
    return parser.can_fetch(USER_AGENT, url)


# --- Redis: the crawl's keys and its atomic steps ----------------------------------------------

def key(crawl_id: str, name: str) -> str:
    """The Redis key of one part of a crawl: ``crawl:<id>:<name>``."""
    return f"crawl:{crawl_id}:{name}"


#: Every part a crawl keeps (see the module's docstring).
PARTS = ("config", "seen", "depth", "owner", "pending", "done", "expanded", "pages", "skipped", "robots",
         "requests", "report")

# Queue a URL, or claim it for a redirect this task follows. ONE script, so that two
# workers that find the same link at the same moment cannot both queue it, and the
# cap (max_pages) holds exactly.
# KEYS: seen, depth, pending, expanded, owner.  ARGV: url, depth, max_pages, count (1: a
# task will be sent for it, count it pending; 0: a redirect hop, fetched by the caller),
# owner (the caller's URL for a hop, '' for a link).
# Returns 1: queued/claimed (the caller sends the task / fetches it); 0: seen before;
# -1: the crawl has max_pages URLs already; 2: seen before at a greater depth and its links
# were followed at that depth: the caller follows them again at the new depth (the record
# has them); 3: seen before at a greater depth, not finished yet: its own task will notice.
CLAIM = """
local url, depth = ARGV[1], tonumber(ARGV[2])
if redis.call('SISMEMBER', KEYS[1], url) == 1 then
    if ARGV[5] ~= '' and redis.call('HGET', KEYS[5], url) == ARGV[5] then
        return 1
    end
    local known = tonumber(redis.call('HGET', KEYS[2], url))
    if known ~= nil and depth < known then
        redis.call('HSET', KEYS[2], url, depth)
        local expanded = tonumber(redis.call('HGET', KEYS[4], url))
        if expanded ~= nil and expanded > depth then
            redis.call('HSET', KEYS[4], url, depth)
            return 2
        end
        return 3
    end
    return 0
end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return -1
end
redis.call('SADD', KEYS[1], url)
redis.call('HSET', KEYS[2], url, depth)
if ARGV[5] ~= '' then
    redis.call('HSET', KEYS[5], url, ARGV[5])
end
if ARGV[4] == '1' then
    redis.call('INCR', KEYS[3])
end
return 1
"""

# Finish a task: write its records and uncount it, all or nothing.
# KEYS: pages, done, pending, skipped, depth, expanded.
# ARGV: the task's URL, n, then n (url, record JSON) pairs, m, then m (url, depth its links
# were followed at) pairs, then (url, reason) pairs of skipped links.
# Returns {-1}: this URL was finished before (a task run twice): nothing written;
# {1, url, depth, ...}: a page's depth got smaller while its links were followed: nothing
# written, the caller follows them again at the new depth and calls again;
# {0, pending}: written; pending is what is left (0: the crawl is over).
FINISH = """
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
    return {-1}
end
local n = tonumber(ARGV[2])
local m = tonumber(ARGV[3 + 2 * n])
local first_expanded = 4 + 2 * n
local again = {}
for i = first_expanded, first_expanded + 2 * m - 1, 2 do
    local now = tonumber(redis.call('HGET', KEYS[5], ARGV[i]))
    if now ~= nil and now < tonumber(ARGV[i + 1]) then
        table.insert(again, ARGV[i])
        table.insert(again, now)
    end
end
if #again > 0 then
    table.insert(again, 1, 1)
    return again
end
redis.call('SADD', KEYS[2], ARGV[1])
for i = 3, 2 + 2 * n, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('SADD', KEYS[2], ARGV[i])
end
for i = first_expanded, first_expanded + 2 * m - 1, 2 do
    redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1])
end
for i = first_expanded + 2 * m, #ARGV, 2 do
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
end
return {0, redis.call('DECR', KEYS[3])}
"""

_client: redis.Redis | None = None
_client_lock = threading.Lock()
_scripts: dict[str, object] = {}


def _redis() -> redis.Redis:
    """One client per process (redis-py's pool is thread-safe, and re-made after a fork)."""
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                _client = redis.Redis.from_url(app.conf.broker_url, decode_responses=True)
    return _client


def _script(name: str, source: str):
    if name not in _scripts:
        _scripts[name] = _redis().register_script(source)
    return _scripts[name]


def _claim(crawl_id: str, url: str, depth: int, max_pages: int, *, count: bool, owner: str = "") -> int:
    keys = [key(crawl_id, part) for part in ("seen", "depth", "pending", "expanded", "owner")]
    return int(_script("claim", CLAIM)(keys=keys, args=[url, depth, max_pages, int(count), owner]))


# --- Starting a crawl, and reading it -----------------------------------------------------------

def start_crawl(seed_url: str, *, max_depth: int = 3, max_pages: int = 200, rate: float | None = None,
                timeout: float = 2.0, crawl_id: str | None = None,
                retry_backoff: float = RETRY_BACKOFF, queue: str | None = None) -> str:
    """Start a crawl at ``seed_url``; return its id (``wait_for_report(id)`` waits for its report).

    ``max_depth``: how many links away from the seed a page may be (0: the seed
    only). ``max_pages``: how many URLs the crawl fetches at most (the seed
    included). ``rate``: at most this many requests per second to the site, over
    ALL workers together (chapter 08's token bucket in Redis); None: no limit.
    ``timeout``: seconds to wait for a connection and for each piece of an
    answer. ``retry_backoff``: the first retry's wait in seconds (doubled each
    time). ``queue``: the queue every task of this crawl goes to (default: the
    app's default queue, ``celery``), so that only workers started with ``-Q
    QUEUE`` work on it. Only pages on the seed's site (scheme, host and port) are fetched.

    Stores the config, marks the seed seen and pending, and sends the first
    ``fetch_page``: a worker (``celery -A demo_tasks.crawler worker``) does the rest.
    A seed that is no http(s) URL with a host, or a bad limit, is a ValueError at once."""
    seed = normalise(seed_url) if isinstance(seed_url, str) else None
    if seed is None or urlsplit(seed_url.strip()).scheme.lower() not in ("http", "https"):
        raise ValueError(f"The seed URL {seed_url!r} is not an http:// or https:// address with a host; "
                         "give the full address of the first page, e.g. 'http://127.0.0.1:8010/'.")
    for name, value, least in (("max_depth", max_depth, 0), ("max_pages", max_pages, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be a whole number >= {least}, not {value!r}.")
    for name, value in (("timeout", timeout), ("retry_backoff", retry_backoff)):
        if not _positive(value):
            raise ValueError(f"{name} must be a number of seconds > 0, not {value!r}.")
    if rate is not None and not _positive(rate):
        raise ValueError(f"rate must be a number of requests per second > 0, or None for no limit, not {rate!r}.")
    if queue is not None and not (isinstance(queue, str) and queue.strip()):
        raise ValueError(f"queue must be the name of a queue, or None for the default one, not {queue!r}.")
    crawl_id = crawl_id or uuid.uuid4().hex[:12]
    if not _CRAWL_ID.match(crawl_id):
        raise ValueError(f"crawl_id must be 1-64 letters, digits, '.', '_' or '-', not {crawl_id!r}")
    config = {"crawl_id": crawl_id, "seed": seed, "origin": origin(seed), "max_depth": max_depth,
              "max_pages": max_pages, "rate": rate, "timeout": float(timeout),
              "retry_backoff": float(retry_backoff), "queue": queue or app.conf.task_default_queue,
              "started_at": time.time()}
    client = _redis()
    if not client.set(key(crawl_id, "config"), json.dumps(config), nx=True):
        raise ValueError(f"A crawl with the id {crawl_id!r} exists already in this Redis: choose another id, "
                         f"or delete_crawl({crawl_id!r}) first.")
    _claim(crawl_id, seed, 0, max_pages, count=True)
    _send(config, seed, 0)
    return crawl_id


def _send(config: dict, url: str, depth: int) -> None:
    """Queue ``fetch_page`` for ``url`` on the crawl's queue (a retry stays on it: Celery
    sends a retry where the message came from)."""
    fetch_page.apply_async((config["crawl_id"], url, depth), queue=config.get("queue"))


def _positive(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0


class UnknownCrawl(LookupError):
    """No crawl with that id in this Redis."""


def config_of(crawl_id: str) -> dict:
    """The crawl's settings as start_crawl stored them (UnknownCrawl, with advice, for an unknown id)."""
    stored = _redis().get(key(crawl_id, "config"))
    if stored is None:
        raise UnknownCrawl(f"No crawl {crawl_id!r} in the Redis at {_safe_broker()}: was it started with "
                           "start_crawl() on this broker (REDIS_URL)?")
    return json.loads(stored)


def progress(crawl_id: str) -> dict:
    """How far the crawl is: URLs ``queued`` (the seen set), ``done`` (records), ``pending``."""
    client = _redis()
    config_of(crawl_id)
    with client.pipeline() as pipe:
        pipe.scard(key(crawl_id, "seen")).hlen(key(crawl_id, "pages")).get(key(crawl_id, "pending"))
        queued, done, pending = pipe.execute()
    return {"queued": queued, "done": done, "pending": int(pending or 0)}


def pages(crawl_id: str) -> dict[str, dict]:
    """Every record of the crawl, URL -> record (see ``fetch_page``), with each page's
    shortest depth (the records keep the depth they were fetched at)."""
    client = _redis()
    records = {url: json.loads(value) for url, value in client.hgetall(key(crawl_id, "pages")).items()}
    depths = client.hgetall(key(crawl_id, "depth"))
    for url, record in records.items():
        if url in depths:
            record["depth"] = int(depths[url])
    return dict(sorted(records.items()))


def skipped(crawl_id: str) -> dict[str, str]:
    """Links the crawl did not follow, URL -> why (``SKIP_REASONS``); links that were
    fetched after all (reached again at a smaller depth) are left out."""
    client = _redis()
    found = client.hgetall(key(crawl_id, "skipped"))
    fetched = client.smembers(key(crawl_id, "seen"))
    return dict(sorted((url, why) for url, why in found.items() if url not in fetched))


def requests_made(crawl_id: str) -> list[dict]:
    """The crawler's own log of its HTTP requests, in the order they finished:
    {"url", "granted_at" (the Redis time of the rate limit's token, None without a limit),
    "started_at", "ms", "status" (None without an answer), "error", "worker"} each."""
    return [json.loads(item) for item in _redis().lrange(key(crawl_id, "requests"), 0, -1)]


def report(crawl_id: str) -> dict | None:
    """The stored report (None until ``analyse`` has run)."""
    stored = _redis().get(key(crawl_id, "report"))
    return json.loads(stored) if stored else None


def wait_for_report(crawl_id: str, timeout: float = 60.0, interval: float = 0.05) -> dict:
    """Wait until the crawl's report is stored and return it. After ``timeout`` seconds:
    a TimeoutError that says how many pages are still pending and what to check."""
    deadline = time.monotonic() + timeout
    queue = config_of(crawl_id).get("queue") or app.conf.task_default_queue  # an unknown id fails at once
    listen = "" if queue == app.conf.task_default_queue else f" -Q {queue}"
    while True:
        found = report(crawl_id)
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            state = progress(crawl_id)
            raise TimeoutError(
                f"Crawl {crawl_id}: no report after {timeout:g} s; {state['pending']} of {state['queued']} "
                f"queued pages are still pending ({state['done']} recorded). Is a worker running for this app "
                f"on the same broker ({_safe_broker()}): `celery -A demo_tasks.crawler worker{listen} "
                "--pool=threads -c 32`? Its log says what it is doing. If a worker was killed in the middle, "
                f"the pages it held are lost: resume_crawl({crawl_id!r}) sends them again.")
        time.sleep(interval)


def resume_crawl(crawl_id: str) -> int:
    """Send ``fetch_page`` again for every URL queued but not finished (e.g. after a worker
    was killed: with Celery's default early acknowledgement, the tasks it was running are
    lost). Returns how many were sent. Safe even if some of them are still alive: a page is
    recorded and uncounted once (the ``done`` set); the price is a second request for it."""
    client = _redis()
    config = config_of(crawl_id)
    waiting = client.sdiff(key(crawl_id, "seen"), key(crawl_id, "done"))
    hops = set(client.hkeys(key(crawl_id, "owner")))  # fetched by the task that followed a redirect to them
    depths = client.hgetall(key(crawl_id, "depth"))
    resent = sorted(url for url in waiting if url not in hops)
    for url in resent:
        _send(config, url, int(depths.get(url, 0)))
    return len(resent)


def keys(crawl_id: str) -> list[str]:
    """The crawl's keys that exist in Redis."""
    client = _redis()
    return [k for k in (key(crawl_id, part) for part in PARTS) if client.exists(k)]


def delete_crawl(crawl_id: str) -> int:
    """Delete everything the crawl keeps in Redis; returns how many keys went."""
    return _redis().delete(*[key(crawl_id, part) for part in PARTS])


def _safe_broker() -> str:
    """The broker's URL without its password."""
    return re.sub(r"//[^@/]*@", "//", app.conf.broker_url)


# --- Fetching ---------------------------------------------------------------------------------

_local = threading.local()


def _http():
    """This thread's httpx.Client (one per thread: nothing shared between the threads of
    a threads pool; in a prefork child it is made after the fork). ``trust_env=False``:
    no proxy from the environment between the crawler and the site."""
    import httpx

    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(headers={"User-Agent": USER_AGENT}, follow_redirects=False,
                                              trust_env=False)
    return client


class _Retryable(Exception):
    """A failure worth another attempt: a timeout, a connection error, a 5xx answer
    (``url``: the request's URL, which may be a redirect's target)."""

    def __init__(self, reason: str, error: str, status: int | None = None, nbytes: int = 0):
        super().__init__(error)
        self.reason, self.error, self.status, self.nbytes = reason, error, status, nbytes
        self.url, self.ms = "", 0.0


@dataclass
class _Answer:
    """One HTTP answer, as far as the crawler read it."""

    status: int
    location: str | None = None
    body: bytes | None = None
    charset: str | None = None
    content_type: str = ""
    error: str | None = None
    reason: str | None = None
    nbytes: int = 0
    ms: float = 0.0


def _take_token(config: dict, url: str) -> float | None:
    """Wait for a token of the site's bucket (chapter 08's demo_tasks.ratelimit); return
    the Redis time it was granted (None without a limit).

    ``acquire`` and a short sleep, not ``take_or_retry``: one task makes several
    requests (robots.txt, the page, each redirect), and a retry would start it
    again from the top, repeating requests already made; here each request takes
    its token right before it is sent, and nothing is sent twice. The wait holds a
    pool slot, which is cheap in the threads pool the chapter uses (and the
    message is acknowledged already: nothing can be delivered twice meanwhile).
    The sleep is the bucket's ``retry_after`` plus a random share of one token's
    time, so threads that found it empty together do not all come back at once.

    The bucket is the host's (``crawl:<host>:<port>``), not the crawl's: two crawls of
    one site at the same time share it."""
    rate = config["rate"]
    if not rate:
        return None
    bucket = "crawl:" + urlsplit(url).netloc
    client = _redis()
    while True:
        decision = ratelimit.acquire(client, bucket, rate)
        if decision:
            return decision.at
        time.sleep(decision.retry_after + random.uniform(0, 0.5 / rate))


def _get(crawl_id: str, config: dict, url: str, worker: str, *, html_only: bool = True) -> _Answer:
    """One GET of ``url`` (no redirect followed): a token first (if the crawl has a
    rate), then the answer's head; the body is read only for a 2xx answer whose
    content type is HTML (``html_only``) and only up to MAX_BYTES. Raises _Retryable
    for a timeout, a connection error or a 5xx answer. Every request is logged in
    the crawl's ``requests`` list."""
    import httpx

    granted_at = _take_token(config, url)
    timeout = config["timeout"]
    started_at, start = time.time(), time.perf_counter()
    status, error = None, None
    try:
        try:
            with _http().stream("GET", url, timeout=timeout) as response:
                status = response.status_code
                answer = _read(response, timeout, start, html_only)
        except httpx.TimeoutException as exc:
            doing = {"ConnectTimeout": "connecting", "ReadTimeout": "waiting for the answer",
                     "WriteTimeout": "sending the request", "PoolTimeout": "waiting for a free connection",
                     }.get(type(exc).__name__, "waiting")
            raise _Retryable("timeout", f"No answer within the timeout of {timeout:g} s ({doing}).",
                             status) from None
        except httpx.TransportError as exc:
            raise _Retryable("connection_error", f"Could not talk to the server ({type(exc).__name__}: "
                             f"{exc or 'the connection was lost'}).", status) from None
        if answer.status >= 500:
            raise _Retryable("server_error", f"The server answered {answer.status} {_phrase(answer.status)}.",
                             answer.status, answer.nbytes)
        error = answer.error
        return answer
    except _Retryable as exc:
        exc.url, exc.ms, error = url, _ms(start), exc.error
        raise
    finally:
        entry = {"url": url, "granted_at": granted_at, "started_at": started_at, "ms": _ms(start),
                 "status": status, "error": error, "worker": worker}
        _redis().rpush(key(crawl_id, "requests"), json.dumps(entry))


def _read(response, timeout: float, start: float, html_only: bool) -> _Answer:
    """What the crawler takes from one answer (see _get)."""
    status = response.status_code
    content_type = response.headers.get("content-type", "")
    answer = _Answer(status, content_type=content_type, charset=response.charset_encoding)
    if status in _REDIRECTS:
        answer.location = response.headers.get("location")
        if not answer.location:
            answer.error, answer.reason = f"The server answered {status} without a Location to go to.", "bad_redirect"
    elif 400 <= status < 500:
        answer.error, answer.reason = f"The server answered {status} {_phrase(status)}.", "client_error"
    elif 200 <= status < 300:
        mime = content_type.split(";")[0].strip().lower()
        length = response.headers.get("content-length", "")
        if html_only and mime not in HTML_TYPES:
            shown = f"Content-Type: {content_type}" if content_type else "no Content-Type"
            answer.error, answer.reason = f"Not an HTML page ({shown}): not read.", "not_html"
        elif length.isdigit() and int(length) > MAX_BYTES:
            answer.error, answer.reason = (f"Too large: the server says {int(length):,} bytes, more than the "
                                           f"limit of {MAX_BYTES:,}; not read."), "too_large"
        else:
            deadline = start + BODY_TIME_FACTOR * timeout
            chunks, total = [], 0
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > MAX_BYTES:
                    answer.error, answer.reason = (f"Too large: more than the limit of {MAX_BYTES:,} bytes; "
                                                   f"stopped reading after {total:,}."), "too_large"
                    break
                chunks.append(chunk)
                if time.perf_counter() > deadline:
                    raise _Retryable("timeout", f"Reading the answer took longer than {BODY_TIME_FACTOR * timeout:g}"
                                     f" s ({total:,} bytes read).", status, total)
            answer.nbytes = total
            if answer.error is None:
                answer.body = b"".join(chunks)
    elif status < 500:  # 1xx, 3xx other than redirects: nothing to read
        answer.error, answer.reason = f"The server answered {status} {_phrase(status)}.", "unexpected_status"
    answer.ms = _ms(start)
    return answer


def _phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


# --- robots.txt, once per crawl and site ---------------------------------------------------------

_parsers: dict[tuple[str, str], RobotFileParser] = {}
_parsers_lock = threading.Lock()
#: The value a worker puts in the robots hash while it fetches robots.txt (the others wait for it).
_FETCHING = "fetching"


def _robots(crawl_id: str, config: dict, site: str, worker: str) -> tuple[RobotFileParser, dict]:
    """The parser of ``site``'s robots.txt for this crawl, and what was stored ({"status", "text",
    "error"}). Fetched ONCE per crawl and site: the first worker to set the placeholder in the
    ``robots`` hash (HSETNX) fetches it; any other waits for the stored answer. Parsed once per
    process."""
    cached = _parsers.get((crawl_id, site))
    if cached is not None:
        return cached
    client = _redis()
    robots_key = key(crawl_id, "robots")
    if client.hsetnx(robots_key, site, _FETCHING):
        stored = {"status": None, "text": None, "error": f"robots.txt of {site}: the fetch failed."}
        try:
            stored = _fetch_robots(crawl_id, config, site, worker)
        finally:  # whatever happened, the others stop waiting
            client.hset(robots_key, site, json.dumps(stored))
    else:
        deadline = time.monotonic() + (MAX_REDIRECTS + 1) * config["timeout"] * BODY_TIME_FACTOR + 10
        while (value := client.hget(robots_key, site)) == _FETCHING and time.monotonic() < deadline:
            time.sleep(0.02)
        stored = json.loads(value) if value and value != _FETCHING else \
            {"status": None, "text": None, "error": "Another worker was fetching robots.txt and never stored it."}
    parser = robots_parser(stored["text"], stored["status"])
    with _parsers_lock:
        if len(_parsers) > 256:
            _parsers.clear()
        _parsers[crawl_id, site] = parser, stored
    return parser, stored


def _fetch_robots(crawl_id: str, config: dict, site: str, worker: str) -> dict:
    """GET ``site``/robots.txt (following redirects on the same site, at most MAX_REDIRECTS)."""
    url = site + "/robots.txt"
    for _ in range(MAX_REDIRECTS + 1):
        try:
            answer = _get(crawl_id, config, url, worker, html_only=False)
        except _Retryable as exc:
            return {"status": exc.status, "text": None, "error": f"robots.txt of {site}: {exc.error}"}
        if answer.status in _REDIRECTS and answer.location:
            target = normalise(answer.location, url)
            if target is None or origin(target) != site:
                return {"status": 404, "text": None, "error": None}  # no robots.txt of this site: all allowed
            url = target
            continue
        text = (answer.body or b"").decode(answer.charset or "utf-8", errors="replace")
        return {"status": answer.status, "text": text, "error": None}
    return {"status": None, "text": None, "error": f"robots.txt of {site}: too many redirects."}


# --- The tasks ------------------------------------------------------------------------------------

_configs: dict[str, dict] = {}


def _config(crawl_id: str) -> dict:
    """The crawl's config, read from Redis once per process (it never changes)."""
    if crawl_id not in _configs:
        if len(_configs) > 256:
            _configs.clear()
        _configs[crawl_id] = config_of(crawl_id)
    return _configs[crawl_id]


@dataclass
class _Work:
    """What one run of fetch_page found: records to write, links to follow, links skipped."""

    records: dict[str, dict] = field(default_factory=dict)
    expand: dict[str, list[str]] = field(default_factory=dict)  # page URL -> its links
    skipped: dict[str, str] = field(default_factory=dict)


def _record(url: str, depth: int, attempts: int, worker: str, **fields) -> dict:
    record = {"url": url, "status": None, "depth": depth, "title": "", "links": [], "text": "", "error": None,
              "reason": None, "bytes": 0, "ms": 0.0, "attempts": attempts, "content_type": "",
              "redirect_to": None, "worker": worker, "done_at": time.time()}
    record.update(fields)
    return record


@app.task(bind=True, max_retries=None, ignore_result=True)
def fetch_page(self, crawl_id: str, url: str, depth: int, failures: int = 0) -> None:
    """Fetch one page of a crawl, record it, queue its links, and finish it (see the module's
    docstring for the counting).

    robots.txt first (once per crawl and site), then the page: a token of the
    site's rate limit before each request, redirects followed by hand (at most
    MAX_REDIRECTS; each hop must stay on the site, be allowed by robots.txt and be
    new to the crawl; a hop back into the chain is a redirect loop), at most
    MAX_BYTES read, HTML only. A timeout, a connection error or a 5xx answer is
    retried after RETRY_BACKOFF, 2x, 4x that (with jitter), at most MAX_RETRIES
    times; a 4xx answer never. The links of an HTML page are followed when they are
    on the same site, allowed by robots.txt, within max_depth, new (CLAIM: SADD to
    ``seen``) and under max_pages; every other link is recorded in ``skipped``.

    Every outcome is ONE record in ``crawl:<id>:pages`` (URL -> JSON): ``status``
    (the HTTP status, None without an answer), ``depth``, ``title``, ``links``,
    ``text``, ``error`` (an English sentence, or None), ``reason`` (``timeout``,
    ``connection_error``, ``server_error``, ``client_error``, ``not_html``,
    ``too_large``, ``redirect_loop``, ``too_many_redirects``,
    ``redirect_outside_host``, ``redirect_disallowed``, ``bad_redirect``,
    ``robots_disallowed``, ``robots_unavailable``, ``unexpected_status``,
    ``crawler_error``, or None), ``bytes``, ``ms``,
    ``attempts``, ``content_type``, ``redirect_to``, ``worker``, ``done_at``.
    A page reached through a redirect gets a record of its own too."""
    config = _config(crawl_id)
    if _redis().sismember(key(crawl_id, "done"), url):
        return  # finished already: a message delivered again, or resumed while it was alive
    worker = self.request.hostname or "here"
    work = _Work()
    try:
        _fetch(crawl_id, config, url, depth, failures + 1, worker, work)
    except _Retryable as exc:
        if failures < MAX_RETRIES:
            backoff = config["retry_backoff"] * 2 ** failures * random.uniform(0.5, 1.0)
            raise self.retry(args=(crawl_id, url, depth, failures + 1), countdown=backoff) from None
        work.records[exc.url] = _record(exc.url, depth, failures + 1, worker, status=exc.status, reason=exc.reason,
                                        error=f"{exc.error} Gave up after {failures + 1} attempts.",
                                        bytes=exc.nbytes, ms=exc.ms)
    except Exception as exc:  # a bug, a page no parser survives: recorded, so that the crawl still ends
        logger.exception("fetch_page failed on %s", url)
        work = _Work(records={url: _record(url, depth, failures + 1, worker, reason="crawler_error",
                                           error=f"The crawler failed on this page: {type(exc).__name__}: {exc}")})
    _finish(crawl_id, config, url, worker, work)


def _fetch(crawl_id: str, config: dict, url: str, depth: int, attempts: int, worker: str, work: _Work) -> None:
    """Fill ``work`` for the page ``url``: follow its redirects, read it, parse it."""
    site = origin(url)
    parser, robots = _robots(crawl_id, config, site, worker)
    if not allowed(parser, url):
        if robots["error"] or robots["status"] is None or robots["status"] >= 500:
            error = (f"robots.txt could not be read ({robots['error'] or robots['status']}): "
                     "nothing on this site is fetched until it can be.")
            reason = "robots_unavailable"
        else:
            error, reason = "robots.txt does not allow this page: not fetched.", "robots_disallowed"
        work.records[url] = _record(url, depth, 0, worker, error=error, reason=reason)
        return
    chain = [url]
    current = url
    while True:
        answer = _get(crawl_id, config, current, worker)  # _Retryable: fetch_page retries the task
        fields = {"status": answer.status, "content_type": answer.content_type, "bytes": answer.nbytes,
                  "ms": answer.ms, "error": answer.error, "reason": answer.reason}
        if answer.location is None:  # an answer that is no redirect: the end of the chain
            if answer.body is not None:
                title, text, links = extract(answer.body, current, answer.charset)
                fields.update(title=title, text=text, links=links)
                work.expand[current] = links
            work.records[current] = _record(current, depth, attempts, worker, **fields)
            return
        target = normalise(answer.location, current)
        record = work.records[current] = _record(current, depth, attempts, worker, redirect_to=target, **fields)
        why = _unfollowable(crawl_id, config, parser, chain, target, work)
        if why is None:
            claimed = _claim(crawl_id, target, depth, config["max_pages"], count=False, owner=url)
            if claimed == 1:
                chain.append(target)
                current = target
                continue
            if claimed == -1:
                work.skipped[target] = "page_limit"
            elif claimed == 2:  # reached here at a smaller depth: follow its links again
                work.expand[target] = _links_of(crawl_id, target)
            return  # the target is (or was) fetched by its own task
        error, reason = why
        for hop in chain if reason == "redirect_loop" else [current]:
            work.records[hop].update(error=error, reason=reason)
        record.update(error=error, reason=reason)
        return


def _unfollowable(crawl_id: str, config: dict, parser: RobotFileParser, chain: list[str], target: str | None,
                  work: _Work) -> tuple[str, str] | None:
    """Why the redirect to ``target`` is not followed, as (error, reason); None: follow it."""
    if target is None:
        return "The redirect's Location is not a web address.", "bad_redirect"
    if target in chain:
        loop = " -> ".join(urlsplit(u).path or "/" for u in [*chain, target])
        return f"Redirect loop: {loop}.", "redirect_loop"
    if len(chain) > MAX_REDIRECTS:
        return f"More than {MAX_REDIRECTS} redirects in a row: not followed further.", "too_many_redirects"
    if origin(target) != config["origin"]:
        work.skipped[target] = "outside_host"
        return f"Redirected to another site ({target}): not followed.", "redirect_outside_host"
    if not allowed(parser, target):
        work.skipped[target] = "robots"
        return f"Redirected to {target}, which robots.txt does not allow: not followed.", "redirect_disallowed"
    return None


def _links_of(crawl_id: str, url: str) -> list[str]:
    stored = _redis().hget(key(crawl_id, "pages"), url)
    return json.loads(stored)["links"] if stored else []


def _follow(crawl_id: str, config: dict, worker: str, expand: dict[str, list[str]],
            work: _Work) -> tuple[dict, list]:
    """Queue the links of the pages in ``expand`` (CLAIM each). Returns the depth each page's
    links were followed at, and the (url, depth) of the tasks to send."""
    client = _redis()
    parser, _ = _robots(crawl_id, config, config["origin"], worker)
    followed, to_send = {}, []
    todo = list(expand.items())
    while todo:
        page, links = todo.pop()
        depth = int(client.hget(key(crawl_id, "depth"), page))
        followed[page] = depth
        for link in links:
            if origin(link) != config["origin"]:
                work.skipped[link] = "outside_host"
            elif not allowed(parser, link):
                work.skipped[link] = "robots"
            elif depth + 1 > config["max_depth"]:
                work.skipped.setdefault(link, "too_deep")
            else:
                claimed = _claim(crawl_id, link, depth + 1, config["max_pages"], count=True)
                if claimed == 1:
                    to_send.append((link, depth + 1))
                    work.skipped.pop(link, None)
                elif claimed == -1:
                    work.skipped[link] = "page_limit"
                elif claimed == 2:
                    todo.append((link, _links_of(crawl_id, link)))
    return followed, to_send


def _finish(crawl_id: str, config: dict, url: str, worker: str, work: _Work) -> None:
    """Queue the children, then write the records and uncount the task in ONE step (FINISH);
    the task that brings the pending count to 0 sends ``analyse``."""
    keys = [key(crawl_id, part) for part in ("pages", "done", "pending", "skipped", "depth", "expanded")]
    expand = dict(work.expand)
    followed: dict[str, int] = {}
    while True:
        more, to_send = _follow(crawl_id, config, worker, expand, work)
        followed.update(more)
        for link, depth in to_send:
            _send(config, link, depth)
        args = [url, len(work.records)]
        for page, record in work.records.items():
            if page in followed:
                record["depth"] = followed[page]
            args += [page, json.dumps(record, ensure_ascii=False)]
        args.append(len(followed))
        for page, depth in followed.items():
            args += [page, depth]
        for link, why in work.skipped.items():
            args += [link, why]
        answer = _script("finish", FINISH)(keys=keys, args=args)
        if answer[0] == 1:  # a page got a smaller depth meanwhile: follow its links again
            expand = {page: work.expand.get(page) or _links_of(crawl_id, page) for page in answer[1::2]}
            continue
        if answer[0] == 0 and int(answer[1]) == 0:
            analyse.apply_async((crawl_id,), queue=config.get("queue"))
        return


@app.task
def analyse(crawl_id: str) -> dict:
    """The crawl's report, stored as JSON at ``crawl:<id>:report`` and returned:

    - ``pages``: records; ``statuses``: how many of each HTTP status ("none": no
      answer); ``failures``: records with an error, by reason; ``skipped``: links
      not followed, by reason;
    - ``most_linked``: the pages most linked to from other fetched pages
      (in-degree within the crawl: each linking page counts once), [url, count];
    - ``top_words``: the most frequent words of the fetched pages' text (jieba for
      Chinese, stop words out: demo_tasks.wordcount), [word, count];
    - ``per_depth``: pages at each depth; ``crawl_seconds``: from start_crawl to the
      last record; ``seed``, ``crawl_id``."""
    from demo_tasks import wordcount

    config = config_of(crawl_id)
    records = pages(crawl_id)
    indegree: Counter[str] = Counter()
    for url, record in records.items():
        for link in set(record["links"]):
            if link != url and link in records:
                indegree[link] += 1
    counts = wordcount.merge(wordcount.count_words(r["text"]) for r in records.values() if r["text"])
    failures = Counter(r["reason"] for r in records.values() if r["error"])
    failures.update(_cross_task_loops(records))
    result = {
        "crawl_id": crawl_id,
        "seed": config["seed"],
        "pages": len(records),
        "statuses": dict(sorted(Counter(str(r["status"] or "none") for r in records.values()).items())),
        "failures": dict(sorted(failures.items())),
        "skipped": dict(sorted(Counter(skipped(crawl_id).values()).items())),
        "most_linked": [[url, n] for url, n in sorted(indegree.items(), key=lambda i: (-i[1], i[0]))[:MOST_LINKED]],
        "top_words": [[word, n] for word, n in wordcount.top(counts, TOP_WORDS)],
        "per_depth": {str(d): n for d, n in sorted(Counter(r["depth"] for r in records.values()).items())},
        "crawl_seconds": round(max((r["done_at"] for r in records.values()), default=config["started_at"])
                               - config["started_at"], 3),
    }
    _redis().set(key(crawl_id, "report"), json.dumps(result, ensure_ascii=False))
    return result


def _cross_task_loops(records: dict[str, dict]) -> Counter:
    """Redirect loops whose pages were fetched by different tasks (each saw only its own
    hop, and recorded a plain redirect): chains of redirect records that come back."""
    loops: Counter[str] = Counter()
    for url, record in records.items():
        if record["error"] or not record["redirect_to"]:
            continue
        seen, current = {url}, record["redirect_to"]
        while current in records and records[current]["redirect_to"] and not records[current]["error"]:
            if current in seen:
                loops["redirect_loop"] += 1
                break
            seen.add(current)
            current = records[current]["redirect_to"]
    return loops


__all__ = ["HTML_TYPES", "MAX_BYTES", "MAX_REDIRECTS", "MAX_RETRIES", "RETRY_BACKOFF", "SKIP_REASONS",
           "USER_AGENT", "UnknownCrawl", "allowed", "analyse", "app", "config_of", "delete_crawl", "extract",
           "fetch_page", "key", "keys", "normalise", "origin", "pages", "progress", "report", "requests_made",
           "resume_crawl", "robots_parser", "skipped", "start_crawl", "wait_for_report"]
