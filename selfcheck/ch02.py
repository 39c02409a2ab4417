"""Chapter 02's checkpoints (what is installed, the Django project on sys.path)
and exercise checks (a key in the chapter's database, a Redis URL taken apart,
the server's identity from INFO)."""

from __future__ import annotations

import os
import re
import sys
from importlib import machinery, metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from launcher.broker import client
from launcher.paths import REPO_ROOT

from . import Exercises, Problems, given

__all__ = ["django_project_importable", "exercises", "pinned_versions", "pins_installed"]

exercises = Exercises(2)

# --- checkpoints ------------------------------------------------------------------------

#: "name[extras]==version ; marker  # why"
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)(\[[^\]]*\])?==(?P<version>[\w.]+)\s*(;(?P<marker>[^#]*))?")
#: The only markers requirements.txt uses: python_version compared with "X.Y".
_MARKER = re.compile(r'^\s*python_version\s*(?P<op><=|>=|<|>|==|!=)\s*"(?P<version>\d+(\.\d+)*)"\s*$')
_COMPARE = {"<": tuple.__lt__, "<=": tuple.__le__, ">": tuple.__gt__, ">=": tuple.__ge__,
            "==": tuple.__eq__, "!=": tuple.__ne__}


def _applies(marker: str | None) -> bool:
    """Does a requirement's marker hold for this Python? (Only python_version markers.)"""
    if not marker or not marker.strip():
        return True
    found = _MARKER.match(marker)
    if found is None:
        raise ValueError(f"a marker this check cannot read: {marker.strip()!r}")
    wanted = tuple(int(part) for part in found["version"].split("."))
    return _COMPARE[found["op"]](sys.version_info[:len(wanted)], wanted)


def pinned_versions(requirements: Path = REPO_ROOT / "requirements.txt") -> list[tuple[str, str, str | None]]:
    """(distribution, pinned version, installed version or None) for every pin of
    ``requirements`` that applies to this Python, in the file's order."""
    rows = []
    for line in requirements.read_text(encoding="utf-8").splitlines():
        pin = _PIN.match(line.strip())
        if pin is None or not _applies(pin["marker"]):
            continue
        try:
            installed = metadata.version(pin["name"])
        except metadata.PackageNotFoundError:
            installed = None
        rows.append((pin["name"], pin["version"], installed))
    return rows


def pins_installed() -> bool:
    """Is every package of requirements.txt installed, at its pinned version?"""
    rows = pinned_versions()
    return bool(rows) and all(installed == pinned for _, pinned, installed in rows)


def django_project_importable() -> bool:
    """Do ``django_demo`` (the settings package) and ``reports`` (the app) import
    from anywhere, as `make install`'s django_demo.pth arranges? Looked up on
    sys.path without importing them (importing the project creates its Celery app)."""
    found = {name: machinery.PathFinder.find_spec(name, sys.path) for name in ("django_demo", "reports")}
    wanted = {"django_demo": ("django_demo", "django_demo"), "reports": ("django_demo", "reports")}
    for name, spec in found.items():
        # A regular package: a namespace folder of the same name (the repository's
        # django_demo/ seen from its root) has no __init__.py and does not count.
        if spec is None or not spec.origin or Path(spec.origin).name != "__init__.py":
            return False
        if Path(spec.origin).parent.parts[-2:] != wanted[name]:
            return False
    return True


# --- exercises ---------------------------------------------------------------------------

GREETING = "你好，Celery"


def _chapter_url() -> str | None:
    """The chapter's broker URL (database /2), as the preparation cell exported it."""
    url = os.environ.get("REDIS_URL", "")
    return url if urlsplit(url).path == "/2" else None


@exercises.register(1)
def greeting_in_the_chapters_database(ns: dict) -> Problems:
    problems = given(ns, "answer_1", "从 Redis 读回来的字符串")
    url = _chapter_url()
    if url is None:
        return [*problems, "先运行本章的“准备”单元格：它把 REDIS_URL 指向本章的数据库 /2"]
    # The check takes the key away as it reads it (GETDEL), here and in database 0, where a
    # client without a database number writes: only what this attempt wrote counts, never a
    # key left by an earlier one (the reference answer of Run All, a right or a wrong try).
    with client(url, timeout=3, decode_responses=True) as conn:
        stored = conn.getdel("greeting")
    with client(urlunsplit(urlsplit(url)._replace(path="/0")), timeout=3, decode_responses=True) as conn:
        elsewhere = conn.getdel("greeting")
    if stored is None:
        if elsewhere is not None:
            problems.append("键 greeting 写进了 0 号数据库，不在本章的 /2 里："
                            "用 broker.url 连接（redis.Redis() 不写 db 时连 0 号）")
        else:
            problems.append("本章的数据库 /2 里没有键 greeting：先用 set() 写进去"
                            "（检查读过 greeting 就删掉它，所以每次检查前都要运行你的答案单元格）")
    elif stored != GREETING:
        problems.append(f"greeting 的值是 {stored!r}，应该是 {GREETING!r}")
    answer = ns.get("answer_1", ...)
    if isinstance(answer, bytes):
        problems.append("answer_1 是 bytes：用 .decode()，或者连接时加 decode_responses=True")
    elif answer is not ... and answer is not None and answer != GREETING:
        problems.append(f"answer_1 是 {answer!r}，应该是读回来的 {GREETING!r}")
    return problems


#: URLs the learner's parser is compared on, against redis-py's own parser.
SAMPLE_URLS = [
    "redis://127.0.0.1",
    "redis://127.0.0.1:6379/2",
    "redis://localhost/15",
    "redis://:p%40ss%3Aw%2Frd@127.0.0.1:6380/5",
    "redis://celery@redis:6379/0",
    "rediss://celery:s3cret@redis.example.com:6380/0?ssl_cert_reqs=required",
]
FIELDS = ("scheme", "username", "password", "host", "port", "db")


def expected_parts(url: str) -> dict:
    """What redis-py makes of ``url`` (redis.connection.parse_url), with Redis's defaults filled in."""
    parsed = redis.connection.parse_url(url)
    tls = parsed.get("connection_class") is redis.connection.SSLConnection
    return {"scheme": "rediss" if tls else "redis", "username": parsed.get("username") or None,
            "password": parsed.get("password") or None, "host": parsed["host"],
            "port": parsed.get("port", 6379), "db": parsed.get("db", 0)}


def _hint(field: str, url: str, got, want) -> str:
    why = {"password": "（密码要先解码：urllib.parse.unquote）" if isinstance(got, str) and "%" in got else "",
           "port": "（没写端口时是 6379，端口是整数）",
           "db": "（没写时是 0 号数据库；编号是整数）"}.get(field, "")
    return f"{url}：{field} 得到 {got!r}，redis-py 得到 {want!r}{why}"


@exercises.register(2)
def redis_url_taken_apart(ns: dict) -> Problems:
    problems = given(ns, "parse_redis_url", "一个把 Redis URL 拆成各个部分的函数")
    if problems:
        return problems
    parse = ns["parse_redis_url"]
    for url in SAMPLE_URLS:
        got = parse(url)
        if not isinstance(got, dict):
            return [f"parse_redis_url({url!r}) 应该返回一个 dict，得到的是 {type(got).__name__}"]
        missing = [f for f in FIELDS if f not in got]
        if missing:
            return [f"返回的 dict 缺少这些键：{', '.join(missing)}"]
        want = expected_parts(url)
        for field in FIELDS:
            value = got[field] or None if field in ("username", "password") else got[field]
            if value != want[field] or type(value) is not type(want[field]):
                problems.append(_hint(field, url, got[field], want[field]))
        if len(problems) >= 3:
            break
    return problems


@exercises.register(3)
def the_servers_identity(ns: dict) -> Problems:
    problems = given(ns, "answer_3", '一个 dict：{"version": …, "port": …, "mode": …}')
    if problems:
        return problems
    answer = ns["answer_3"]
    if not isinstance(answer, dict):
        return ["answer_3 应该是一个 dict"]
    url = _chapter_url()
    if url is None:
        return ["先运行本章的“准备”单元格：它把 REDIS_URL 指向本章的 Broker"]
    with client(url, timeout=3) as conn:
        info = conn.info("server")
    version = info.get("valkey_version") or info["redis_version"]
    expected = {"version": str(version), "port": info["tcp_port"],
                "mode": info.get("server_mode") or info.get("redis_mode")}
    for key, want in expected.items():
        got = answer.get(key, ...)
        if got is ...:
            problems.append(f"answer_3 里还没有 {key!r}")
        elif key == "version" and "valkey_version" in info and str(got) == str(info["redis_version"]):
            problems.append(f"{got} 是 Valkey 为了兼容 Redis 客户端而报告的 redis_version；"
                            "真实版本在 valkey_version 里")
        elif key == "port" and not isinstance(got, int):
            problems.append(f"端口应该是整数（INFO 的 tcp_port），不是 {type(got).__name__}")
        elif str(got) != str(want):
            problems.append(f"{key} 是 {got!r}，但服务器报告的是 {want!r}")
    return problems
