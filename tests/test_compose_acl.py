"""The Docker stack's Redis ACL and Flower gate, run for real without Docker (chapter 14).

- compose/redis/start.sh renders compose/redis/users.acl.in from a password
  made by the secrets generator, as it does in the redis container, and the
  embedded Valkey loads that file. Then a real worker, beat, `celery inspect`
  and Flower -- started with the flower service's own command -- do their
  work as the user "celery"; ACL LOG shows that Valkey refused none of what
  they sent, while FLUSHALL, CONFIG, KEYS, ... and the default user are refused.
- compose/flower-gate/default.conf.template, rendered as the nginx image does,
  runs in a real nginx in front of a real Flower: /metrics and /healthcheck
  answer 404, everything else is Flower's, behind Flower's basic auth.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import inspect
import json
import os
import re
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import celery.backends.redis
import kombu.transport.redis
import psutil
import pytest
import redis
import redis.lock
import yaml
from celery import Celery

import launcher
from launcher.procs import http_answers
from tests.helpers import REPO_ROOT as ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
START_SH = ROOT / "compose" / "redis" / "start.sh"
GATE_TEMPLATE = ROOT / "compose" / "flower-gate" / "default.conf.template"

#: A user of the test only, appended to the rendered ACL: it reads ACL LOG and asks ACL DRYRUN.
OBSERVER = "acl-test-observer"

#: What Celery 5.7, kombu 5.7, redis-py 8 and Flower 2.2 send as the user
#: "celery", each with example arguments (ACL DRYRUN checks the arity too).
#: The commands of their Lua scripts are added by reading the scripts.
NEEDED = {
    # redis-py connecting: HELLO with AUTH, CLIENT SETINFO, SELECT db, PING health checks
    "HELLO": ["2"], "AUTH": ["celery", "x"], "CLIENT SETINFO": ["LIB-NAME", "redis-py"],
    "SELECT": ["1"], "PING": [],
    # kombu: queues are lists; bindings are sets refreshed by a Lua script
    "LPUSH": ["q", "m"], "BRPOP": ["q", "1"], "RPOP": ["q"], "LLEN": ["q"], "DEL": ["k"],
    "EXISTS": ["k"], "SADD": ["s", "m"], "SREM": ["s", "m"], "SMEMBERS": ["s"],
    "EVALSHA": ["0" * 40, "0"], "SCRIPT LOAD": ["return 1"], "SCRIPT EXISTS": ["0" * 40],
    # kombu: fanout (celery inspect/control, events for Flower)
    "PUBLISH": ["c", "m"], "SUBSCRIBE": ["c"], "UNSUBSCRIBE": ["c"], "PSUBSCRIBE": ["c*"],
    "PUNSUBSCRIBE": ["c*"],
    # kombu: unacknowledged messages (hash + sorted set, transactions, a redis-py Lock)
    "MULTI": [], "EXEC": [], "DISCARD": [], "WATCH": ["k"], "UNWATCH": [],
    "HSET": ["h", "f", "v"], "HGET": ["h", "f"], "HDEL": ["h", "f"], "ZADD": ["z", "1", "m"],
    "ZRANGE": ["z", "+inf", "0", "BYSCORE", "REV", "LIMIT", "0", "10", "WITHSCORES"],
    "ZREM": ["z", "m"], "SET": ["k", "v", "NX", "PX", "1000"], "GET": ["k"],
    "PEXPIRE": ["k", "1000"], "PTTL": ["k"],
    # the redis:// result backend
    "MGET": ["a", "b"], "SETEX": ["k", "60", "v"], "EXPIRE": ["k", "60"], "INCR": ["k"],
    "RPUSH": ["l", "v"], "LRANGE": ["l", "0", "-1"],
}
#: Example arguments for the commands found in the libraries' Lua scripts.
LUA_ARGS = {
    "GET": ["k"], "SET": ["k", "v", "NX", "EX", "60"], "DEL": ["k"], "EXISTS": ["k"],
    "EXPIRE": ["k", "60"], "PEXPIRE": ["k", "1000"], "PTTL": ["k"], "TIME": [],
    "SADD": ["s", "m"], "SISMEMBER": ["s", "m"], "RPUSH": ["l", "v"], "LLEN": ["l"],
    "ZADD": ["z", "GT", "1", "m"], "ZCOUNT": ["z", "-inf", "+inf"], "ZREM": ["z", "m"],
    "ZRANGEBYSCORE": ["z", "-inf", "1", "LIMIT", "0", "10"],
}
#: Admin and dangerous commands the user "celery" must not have (a sample; the ACL is an allow-list).
REFUSED = [
    ["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "*"], ["CONFIG", "SET", "maxmemory", "1"],
    ["KEYS", "*"], ["SCAN", "0"], ["SHUTDOWN"], ["DEBUG", "SLEEP", "0"], ["MONITOR"],
    ["ACL", "WHOAMI"], ["ACL", "LIST"], ["ACL", "SETUSER", "x"], ["ACL", "LOG"],
    ["CLIENT", "LIST"], ["CLIENT", "KILL", "ID", "1"], ["SCRIPT", "FLUSH"], ["EVAL", "return 1", "0"],
    ["FUNCTION", "FLUSH"], ["SAVE"], ["BGSAVE"], ["REPLICAOF", "NO", "ONE"], ["MODULE", "LIST"],
    ["SWAPDB", "0", "1"], ["RESTORE", "k", "0", "x"], ["DUMP", "k"], ["RENAME", "a", "b"],
    ["INFO"], ["SORT", "l"], ["RANDOMKEY"],
]


@dataclass
class AclBroker:
    """The embedded Valkey, running the stack's ACL."""

    broker: launcher.Broker
    password: str            # the user celery's, from the generated secret
    observer_password: str

    @property
    def port(self) -> int:
        return self.broker.port

    def url(self, db: int = 0) -> str:
        return f"redis://celery:{self.password}@127.0.0.1:{self.port}/{db}"

    def observer(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, db=db, username=OBSERVER, password=self.observer_password,
                           decode_responses=True, socket_timeout=5)

    def dryrun(self, *command: str) -> str:
        """ACL DRYRUN celery COMMAND...: "OK", or why the user may not run it."""
        with self.observer() as conn:
            try:
                return conn.execute_command("ACL", "DRYRUN", "celery", *command)
            except redis.ResponseError as exc:   # an unknown command, a wrong arity
                pytest.fail(f"ACL DRYRUN celery {' '.join(command)}: {exc}")


def run_start_sh(password_file: Path, acl_file: Path) -> subprocess.CompletedProcess:
    """The redis service's entrypoint, with `true` for redis-server: it only renders."""
    env = dict(os.environ, REDIS_PASSWORD_FILE=str(password_file), REDIS_ACL_FILE=str(acl_file))
    return subprocess.run(["sh", str(START_SH), "true"], env=env, capture_output=True, text=True, timeout=30)


@pytest.fixture
def stack_secrets(tmp_path) -> Path:
    """The folder of secrets the generator makes (.secrets/compose/ of a learner)."""
    done = subprocess.run([sys.executable, "-m", "compose.secrets", "--dir", str(tmp_path / ".secrets")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp_path / ".secrets" / "compose"


@pytest.fixture
def acl_broker(stack_secrets, tmp_path):
    # start_embedded() knows the server is up when an anonymous PING answers,
    # which the stack's ACL refuses (default off): so Valkey starts with an
    # empty ACL file (its defaults), then ACL LOAD reads the rendered one.
    acl_file = tmp_path / "users.acl"
    acl_file.write_text("")
    broker = launcher.start_embedded(extra_args=("--aclfile", str(acl_file)))
    try:
        done = run_start_sh(stack_secrets / "redis_password", tmp_path / "rendered.acl")
        assert done.returncode == 0, done.stderr
        observer_password = secrets.token_urlsafe(16)
        acl_file.write_text((tmp_path / "rendered.acl").read_text(encoding="utf-8")
                            + f"user {OBSERVER} on >{observer_password} ~* &* +@all\n")
        with broker.client() as conn:
            conn.execute_command("ACL", "LOAD")
        password = (stack_secrets / "redis_password").read_text(encoding="utf-8")
        yield AclBroker(broker, password, observer_password)
    finally:
        broker.stop()


def flower_service_script(secrets_dir: Path, port: int, broker_port: int) -> str:
    """The flower service's `sh -c` script, as its container's shell gets it, with
    this machine's secret files and ports in place of the container's."""
    service = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]["flower"]
    sh, dash_c, script = service["command"]
    assert (sh, dash_c) == ("sh", "-c")
    script = script.replace("$$", "$")   # compose's escape, undone as compose does
    for old, new in (("/run/secrets/", f"{secrets_dir}/"), ("@redis:6379/", f"@127.0.0.1:{broker_port}/"),
                     ("--address=0.0.0.0", "--address=127.0.0.1"), ("--port=5555", f"--port={port}")):
        assert old in script, f"the flower service's command changed shape: no {old!r} in it"
        script = script.replace(old, new)
    return script


def start_flower_as_the_service(secrets_dir: Path, broker_port: int) -> launcher.Proc:
    port = launcher.free_port()
    # Nothing of ours gets through: Flower gets its broker and login from the script alone.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLOWER_", "CELERY_", "DJANGO_")) and k != "REDIS_URL"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"   # `celery`
    proc = launcher.Proc("flower-service", ["sh", "-c", flower_service_script(secrets_dir, port, broker_port)],
                         env=env)
    proc.url = f"http://127.0.0.1:{port}"
    proc.wait_until_listening(port, 30, answers=lambda: http_answers(proc.url + "/healthcheck", 0.5))
    return proc


def get(url: str, auth: str | None = None, timeout: float = 10) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def arguments_of(proc: launcher.Proc) -> str:
    """The command lines of a process and its children, as `ps` shows them."""
    family = [psutil.Process(proc.pid)]
    family += family[0].children(recursive=True)
    return "\n".join(" ".join(p.cmdline()) for p in family)


# --- the ACL file -------------------------------------------------------------------

def test_start_sh_renders_the_template_with_the_password_hash_only(stack_secrets, tmp_path):
    password = (stack_secrets / "redis_password").read_text(encoding="utf-8")
    acl_file = tmp_path / "users.acl"
    done = run_start_sh(stack_secrets / "redis_password", acl_file)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""   # `true --aclfile FILE`: the command, then the file
    lines = acl_file.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "user default off resetkeys resetchannels -@all"
    digest = hashlib.sha256(password.encode()).hexdigest()
    assert lines[1].startswith(f"user celery on #{digest} resetkeys ~* resetchannels &* -@all +")
    assert len(lines) == 2, lines
    text = "\n".join(lines)
    assert password not in text and "@PASSWORD_SHA256@" not in text and "\\" not in text
    assert "  " not in text, "the ACL file wants single spaces"
    assert stat.S_IMODE(acl_file.stat().st_mode) == 0o600


def test_start_sh_refuses_to_start_without_the_secret(tmp_path):
    done = run_start_sh(tmp_path / "missing", tmp_path / "users.acl")
    assert done.returncode == 1
    assert "python -m compose.secrets" in done.stderr
    assert not (tmp_path / "users.acl").exists()


# --- Celery under the ACL ------------------------------------------------------------

def test_celery_beat_inspect_and_flower_work_as_the_acl_user(acl_broker, stack_secrets):
    url = acl_broker.url()
    procs: list[launcher.Proc] = []
    try:
        worker = launcher.start_worker("demo_tasks.tasks", broker=url, fast=True, concurrency=1)
        procs.append(worker)

        # A task and its result (the redis:// result backend), sent from here.
        client = Celery("acl-client", broker=url, backend=url, set_as_current=False)
        try:
            assert client.send_task("demo_tasks.tasks.add", (2, 3)).get(timeout=10) == 5
        finally:
            client.close()

        # -d: wait for this worker's answer only, not for the whole timeout.
        node = f"w1@{socket.gethostname()}"
        out = launcher.celery_command("demo_tasks.tasks", "inspect", "ping", "-d", node, "-t", "5", broker=url)
        assert f"{node}: OK" in out and "pong" in out, out

        # beat, on database 1: its tick must not reach the worker of demo_tasks.tasks.
        procs.append(launcher.start_beat("demo_tasks.periodic", broker=acl_broker.url(db=1)))

        # Flower, started with the flower service's command: no app, the broker
        # URL in CELERY_BROKER_URL and the login in FLOWER_BASIC_AUTH.
        flower = start_flower_as_the_service(stack_secrets, acl_broker.port)
        procs.append(flower)

        with acl_broker.observer(db=1) as db1:   # (beat's first tick is due 1 s after its start)
            assert launcher.wait_for(lambda: db1.llen("celery") > 0, 15), "beat sent nothing"
            message = json.loads(db1.lindex("celery", 0))
        assert message["headers"]["task"] == "demo_tasks.periodic.tick"
        login = (stack_secrets / "flower_basic_auth").read_text(encoding="utf-8")
        assert get(flower.url + "/api/workers")[0] == 401
        status, body = get(flower.url + "/api/workers?refresh=1", auth=login)
        assert status == 200 and any(name.startswith("w1@") for name in json.loads(body)), body
        status, body = get(flower.url + "/api/queues/length", auth=login)
        assert status == 200 and {"name": "celery", "messages": 0} in json.loads(body)["active_queues"], body

        # The passwords went through files and the environment, never the arguments.
        for proc in procs:
            shown = arguments_of(proc)
            assert acl_broker.password not in shown, f"{proc.name}: the Redis password is in `ps`"
            assert login.partition(":")[2] not in shown, f"{proc.name}: Flower's password is in `ps`"
    finally:
        launcher.stop_together(procs)   # warm, side by side; log folders removed
    # Start, work and a warm stop: Valkey refused nothing they sent.
    with acl_broker.observer() as observer:
        refused = sorted({f"{e['object']} ({e['reason']} in {e['context']}, user {e['username']})"
                          for e in observer.acl_log()})
    assert not refused, f"Valkey refused {refused}: missing from compose/redis/users.acl.in?"


def test_every_command_the_libraries_send_is_allowed(acl_broker):
    lua = set()
    for module in (kombu.transport.redis, celery.backends.redis, redis.lock):
        lua |= {name.upper() for name in re.findall(r"redis\.call\(\s*['\"](\w+)['\"]", inspect.getsource(module))}
    assert {"SADD", "ZADD", "TIME", "GET", "DEL"} <= lua, "the scripts were not found"
    unknown = lua - set(LUA_ARGS)
    assert not unknown, f"the libraries' Lua scripts now call {sorted(unknown)}: allow them in users.acl.in (or not)"
    for name in sorted(lua):
        assert acl_broker.dryrun(name, *LUA_ARGS[name]) == "OK", f"{name} (called from a Lua script)"
    for name, args in NEEDED.items():
        assert acl_broker.dryrun(*name.split(), *args) == "OK", name


def test_the_acl_refuses_admin_commands_and_the_default_user(acl_broker):
    with redis.Redis.from_url(acl_broker.url(), socket_timeout=5) as celery_user:
        celery_user.set("survivor", "1")
        for command in (["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "maxmemory"], ["KEYS", "*"]):
            with pytest.raises(redis.exceptions.NoPermissionError):
                celery_user.execute_command(*command)
        assert celery_user.get("survivor") == b"1"
    for command in REFUSED:
        answer = acl_broker.dryrun(*command)
        assert answer != "OK" and "no permissions" in answer, f"{' '.join(command)}: {answer}"
    # No anonymous access, no login as default, no wrong password (clients that do not retry).
    for login in ("", "default:x@", f"celery:{acl_broker.password}x@"):
        with launcher.broker.client(f"redis://{login}127.0.0.1:{acl_broker.port}/0", timeout=5) as conn, \
                pytest.raises(redis.exceptions.AuthenticationError):
            conn.ping()


# --- the gate in front of Flower ------------------------------------------------------

def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None)


@pytest.fixture
def nginx() -> str:
    path = nginx_binary()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed: .ci/run installs it (apt-get install nginx)")
        pytest.skip("nginx is not installed (`apt-get install nginx`): the gate is checked only "
                    "structurally, in test_compose.py")
    return path


def render_gate(folder: Path, **values: str) -> Path:
    """The template rendered as the nginx image renders it (its ${NAME}s filled
    in), included in a main configuration for a non-root nginx in ``folder``."""
    server = GATE_TEMPLATE.read_text(encoding="utf-8")
    for name, value in values.items():
        server = server.replace("${" + name + "}", value)
    assert "${" not in server, "the template needs a value the test does not give"
    (folder / "default.conf").write_text(server, encoding="utf-8")
    temp = "\n".join(f"    {kind}_temp_path {folder / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;\n" if os.geteuid() == 0 else ""   # as root, workers would be "nobody"
    main = folder / "nginx.conf"
    main.write_text(f"""{user}daemon off;
worker_processes 1;
pid {folder / 'nginx.pid'};
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
    access_log {folder / 'access.log'};
{temp}
    include {folder / 'default.conf'};
}}
""", encoding="utf-8")
    return main


def raw_get(port: int, path: str, auth: str | None = None) -> http.client.HTTPResponse:
    """GET ``path`` exactly as written (no client-side normalisation); the body is in ``.body``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    response.body = response.read().decode("utf-8", errors="replace")
    conn.close()
    return response


def test_the_gate_hides_metrics_and_healthcheck(nginx, broker, tmp_path):
    login = f"course:{secrets.token_urlsafe(18)}"
    user, _, password = login.partition(":")
    flower = launcher.start_flower("demo_tasks.tasks", broker=broker, user=user, password=password)
    try:
        # What the gate hides: Flower itself serves these to anyone.
        assert raw_get(flower.port, "/metrics").status == 200
        assert raw_get(flower.port, "/healthcheck").status == 200

        port = launcher.free_port()
        conf = render_gate(tmp_path, GATE_LISTEN=f"127.0.0.1:{port}", GATE_UPSTREAM=f"127.0.0.1:{flower.port}")
        gate = launcher.Proc("flower-gate", [nginx, "-p", str(tmp_path), "-c", str(conf),
                                             "-e", str(tmp_path / "error.log")])
        try:
            gate.wait_until_listening(port, 15)
            hidden = ["/metrics", "/metrics/", "/metrics?name=x", "/metrics/x", "/healthcheck",
                      "/healthcheck/", "//metrics", "/%6Detrics", "/./healthcheck", "/api/../metrics"]
            for path in hidden:
                for auth in (None, login):
                    answer = raw_get(port, path, auth)
                    # nginx's own 404 page: the request never reached Flower.
                    assert answer.status == 404 and "<center>nginx</center>" in answer.body, \
                        f"{path} passes the gate"
            refused = raw_get(port, "/")
            assert refused.status == 401 and refused.getheader("WWW-Authenticate", "").startswith("Basic")
            assert raw_get(port, "/api/workers", f"{user}:wrong").status == 401
            assert raw_get(port, "/api/workers", login).status == 200
            dashboard = raw_get(port, "/", login)
            assert dashboard.status == 200
            assert dashboard.getheader("Server") == "nginx", "server_tokens off: no version"
        finally:
            gate.cleanup()
    finally:
        flower.cleanup()
