"""Chapter 02's checkpoints (what is installed, the Django project on sys.path)
and exercise checks (a Redis URL for a server with a password, proven by a
PING; a Redis URL taken apart; the server's identity from INFO)."""

from __future__ import annotations

import os
import re
import secrets
import sys
from importlib import machinery, metadata
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import redis

from launcher.broker import client, start_embedded
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

def _chapter_url() -> str | None:
    """The chapter's broker URL (database /2), as the preparation cell exported it."""
    url = os.environ.get("REDIS_URL", "")
    return url if urlsplit(url).path == "/2" else None


#: The characters a URL reserves, in every password exercise 1's check makes.
RESERVED = "@:/%#?"


def _url_problem(make, username: str | None, secret: str, port: int, db: int) -> str | None:
    """What is wrong with the URL the learner's function makes for this user, password,
    port and database (None: nothing): taken apart by redis-py, then a real PING."""
    call = f"make_redis_url({username!r}, 密码, {port}, {db})"
    try:
        url = make(username, secret, port, db)
    except Exception as exc:  # the learner's code: report it
        return f"{call} 出错：{type(exc).__name__}: {exc}"
    if not isinstance(url, str) or not url.startswith("redis://"):
        return f"{call} 应该返回以 redis:// 开头的字符串，得到的是 {url!r}"
    escape = "用 urllib.parse.quote(password, safe=\"\") 转义"
    try:
        parts = redis.connection.parse_url(url)
    except ValueError as exc:
        if secret in url:
            return f"{call} 返回 {url!r}：密码没有转义，redis-py 读不懂（{exc}）；{escape}"
        if quote(secret) in url:
            return (f"{call} 返回 {url!r}：quote() 默认不转义 `/`，URL 在密码里的 `/` 处断开了"
                          f"（{exc}）；写 quote(password, safe=\"\")")
        return f"redis-py 读不懂 {call} 返回的 {url!r}：{exc}"
    got_user, got_password = parts.get("username") or None, parts.get("password")
    if got_password != secret:
        if got_password and "%" in got_password and unquote(got_password) == secret:
            why = "密码被转义了两次"
        else:
            why = f"redis-py 从里面读出的密码是 {got_password!r}，不是检查给的那一个"
        return f"{call} 返回 {url!r}：{why}；{escape}，只转义一次"
    if parts.get("host") != "127.0.0.1":
        return f"{call} 返回 {url!r}：主机是 {parts.get('host')!r}，应该是 '127.0.0.1'"
    if parts.get("port", 6379) != port:
        return f"{call} 返回 {url!r}：端口是 {parts.get('port', 6379)}，应该是 {port}"
    if username is None and got_user not in (None, "default"):
        return (f"{call} 返回 {url!r}：URL 里的用户名是 {got_user!r}；"
                      "username 是 None 时不写用户名（redis://:密码@主机:端口/编号）")
    if username is not None and got_user != username:
        return (f"{call} 返回 {url!r}：用户名没有写进 URL（redis-py 读出的是 {got_user!r}）；"
                      "ACL 用户的 URL 是 redis://用户名:密码@主机:端口/编号")
    if parts.get("db", 0) != db:
        return f"{call} 返回 {url!r}：数据库编号是 {parts.get('db', 0)}，应该是 {db}：URL 末尾写 /{db}"
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3) as conn:
            conn.ping()
            where = int(conn.client_info()["db"])
    except redis.RedisError as exc:
        return f"{call} 返回 {url!r}：PING 失败：{type(exc).__name__}: {exc}"
    if where != db:
        return f"{call} 返回 {url!r}：连到的是 {where} 号数据库，应该是 {db}"
    return None


@exercises.register(1)
def a_url_for_a_server_with_a_password(ns: dict) -> Problems:
    problems = given(ns, "make_redis_url", "一个按用户名、密码、端口和数据库编号拼出 Redis URL 的函数")
    if problems:
        return problems
    # A server of this check's own, with new random passwords each time: only a function
    # that escapes whatever it is given passes, never a URL typed in from an earlier run.
    password = "p@ss:w/rd" + secrets.token_hex(3) + RESERVED
    user_password = "u/s@e:r" + secrets.token_hex(3) + RESERVED
    server = start_embedded(password=password)
    try:
        with server.client(timeout=3) as admin:
            admin.execute_command("ACL", "SETUSER", "celery", "on", f">{user_password}", "~*", "&*", "+@all")
        for username, secret, db in ((None, password, 2), ("celery", user_password, 5)):
            problem = _url_problem(ns["make_redis_url"], username, secret, server.port, db)
            if problem:
                return [problem]
    finally:
        server.stop()
    return []


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
