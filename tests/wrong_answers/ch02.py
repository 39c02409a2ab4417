"""Chapter 02's plausible wrong answers, each with a piece of the hint it must get
(tests/exercise_matrix.py runs them in a kernel where the notebook ran)."""

from tests.exercise_matrix import Wrong

#: Exercise 2's reference answer, with one line to change.
PARSE = '''from urllib.parse import unquote, urlsplit


def parse_redis_url(url):
    parts = urlsplit(url)
    return {
        "scheme": parts.scheme,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "host": parts.hostname,
        "port": parts.port or 6379,
        "db": int(parts.path.lstrip("/") or 0),
    }
'''


def parse_with(line: str, instead: str) -> list[str]:
    assert line in PARSE
    return [PARSE.replace(line, instead)]


WRONG = {
    1: [
        Wrong(['client.set("greeting", "你好，Celery")\n'
               'answer_1 = client.get("greeting")   # a client without decode_responses\n'],
              hint="answer_1 是 bytes", why="bytes, not decoded"),
        Wrong(['r = redis.Redis(host="127.0.0.1", port=broker.port)   # no db given\n'
               'r.set("greeting", "你好，Celery")\n'
               'answer_1 = r.get("greeting").decode()\n'],
              hint="键 greeting 写进了 0 号数据库", why="writes to database 0"),
        Wrong(['answer_1 = "你好，Celery"   # typed in, nothing written\n'],
              hint="本章的数据库 /2 里没有键 greeting", why="typed in, never written"),
    ],
    2: [
        Wrong(parse_with('unquote(parts.password) if', 'parts.password if'),
              hint="密码要先解码", why="password not unquoted"),
        Wrong(parse_with('parts.port or 6379', 'parts.port'),
              hint="没写端口时是 6379", why="no default port"),
        Wrong(parse_with('int(parts.path.lstrip("/") or 0)', 'parts.path.lstrip("/")'),
              hint="编号是整数", why="db number as a string"),
    ],
    3: [
        Wrong(['info = client.info("server")\n'
               'answer_3 = {"version": info["redis_version"], "port": info["tcp_port"],\n'
               '            "mode": info.get("server_mode") or info.get("redis_mode")}\n'],
              hint="真实版本在 valkey_version 里", why="redis_version of Valkey"),
        Wrong(['info = client.info()\n'
               'answer_3 = {"version": info["valkey_version"], "port": info["tcp_port"],\n'
               '            "mode": info["role"]}   # role, not mode\n'],
              hint="mode 是 'master'", why="role taken for the mode"),
    ],
}
