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
        Wrong(['def make_redis_url(username, password, port, db):\n'
               '    return f"redis://{username or \'\'}:{password}@127.0.0.1:{port}/{db}"   # not escaped\n'],
              hint="密码没有转义", why="password not escaped"),
        Wrong(['from urllib.parse import quote\n\n\n'
               'def make_redis_url(username, password, port, db):\n'
               '    return f"redis://{username or \'\'}:{quote(password)}@127.0.0.1:{port}/{db}"  # keeps /\n'],
              hint="quote() 默认不转义 `/`", why="quote() with its default safe='/'"),
        Wrong(['from urllib.parse import quote\n\n\n'
               'def make_redis_url(username, password, port, db):\n'
               '    return f"redis://:{quote(password, safe=\'\')}@127.0.0.1:{port}/{db}"   # the user forgotten\n'],
              hint="用户名没有写进 URL", why="ACL user left out"),
        Wrong(['from urllib.parse import quote\n\n\n'
               'def make_redis_url(username, password, port, db):\n'
               '    return f"redis://{username or \'\'}:{quote(password, safe=\'\')}@127.0.0.1:{port}"   # no /db\n'],
              hint="数据库编号是 0，应该是 2", why="database number left out"),
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
