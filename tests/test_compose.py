"""The Docker stack (chapter 12): docker-compose.yml, Dockerfile, .dockerignore, .env.example.

No Docker engine is needed, and none is used: `docker compose config`
(or Debian's `docker-compose config`) validates and resolves the file
offline; everything else reads the files. `up` and `build` are never run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO_ROOT as ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
SETTINGS = ROOT / "django_demo" / "django_demo" / "settings.py"

INFRA = {"redis", "db"}                     # upstream images, not ours
CELERY_SERVICES = ("worker", "beat", "flower")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|_KEY$")
# ${VAR}, ${VAR:-x}, ${VAR:?x} or $VAR, but not $$VAR (expanded later, by the container's shell).
COMPOSE_VAR = re.compile(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)")
SHELL_VAR = re.compile(r"\$\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def compose_command() -> list[str] | None:
    """`docker compose` (the plugin) or `docker-compose` (Debian's package, which
    .ci/run installs): both validate the file without a Docker engine."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


COMPOSE = compose_command()
needs_compose = pytest.mark.skipif(
    COMPOSE is None and os.environ.get("CI") != "true",
    reason="neither `docker compose` nor `docker-compose` is installed (CI always has one)")


def run_config(project: Path, *args: str) -> subprocess.CompletedProcess:
    assert COMPOSE, "CI must have a compose command (.ci/run installs docker-compose)"
    # The learner's shell must not change the result: compose lets the
    # environment override .env, and COMPOSE_* variables change the project.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMPOSE_", "POSTGRES_", "DOCKER_"))}
    return subprocess.run([*COMPOSE, "config", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=60)


def copy_project(dest: Path, with_env: bool) -> Path:
    """The compose project in a temporary directory, with .env.example as its
    .env (what `cp .env.example .env` gives a learner): no .env is ever
    written into the repository."""
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, dest / name)
    if with_env:
        shutil.copy(ENV_EXAMPLE, dest / ".env")
    return dest


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_example() -> dict[str, str]:
    """NAME=value lines of .env.example (comments and blank lines skipped)."""
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            values[name.strip()] = value.strip()
    return values


def command_words(service: dict) -> list[str]:
    """The command as words; `sh -c "... && exec CMD"` is unwrapped into CMD's words."""
    command = service.get("command", [])
    words = shlex.split(command) if isinstance(command, str) else list(command)
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(words[2])
        if "exec" in words:   # `setup && exec the-real-command ...`
            words = words[words.index("exec") + 1:]
    return words


def healthcheck_text(service: dict) -> str:
    test = service.get("healthcheck", {}).get("test", "")
    return test if isinstance(test, str) else " ".join(test)


# --- (1) compose itself validates and resolves the file -------------------------

@needs_compose
def test_compose_config_is_valid_once_env_exists(tmp_path):
    done = run_config(copy_project(tmp_path, with_env=True), "-q")
    assert done.returncode == 0, done.stderr


@needs_compose
def test_compose_config_resolves_env_and_loopback_ports(tmp_path):
    done = run_config(copy_project(tmp_path, with_env=True))
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    example = env_example()
    for name in ("web", *CELERY_SERVICES):
        env = resolved[name]["environment"]
        # env_file: .env is read ...
        assert env["SECRET_KEY"] == example["SECRET_KEY"], name
        # ... and the in-network addresses from docker-compose.yml win over it.
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert env["DATABASE_URL"].endswith("@db:5432/" + example["POSTGRES_DB"]), name
    for name, service in resolved.items():
        for port in service.get("ports", []):
            # docker-compose 1.x keeps "HOST:PORT:PORT"; Compose v2 prints the long form.
            host = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host == "127.0.0.1", f"{name} publishes {port} beyond loopback"


@needs_compose
def test_compose_without_env_file_fails_loudly(tmp_path):
    """No .env -> an error naming .env, never a stack with empty passwords."""
    done = run_config(copy_project(tmp_path, with_env=False), "-q")
    assert done.returncode != 0
    assert ".env" in done.stderr + done.stdout


# --- (2) the file's shape ----------------------------------------------------------

def test_ports_are_published_on_loopback_only(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} on all interfaces"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"
    assert "ports" not in services["db"], "the database needs no port on the host"


def test_every_django_service_builds_the_one_image(services):
    ours = {name: s for name, s in services.items() if name not in INFRA}
    assert {"web", *CELERY_SERVICES} <= set(ours)
    builds = {(yaml.safe_dump(s.get("build")), s.get("image")) for s in ours.values()}
    assert len(builds) == 1, f"services build different images: {builds}"
    build = next(iter(ours.values()))["build"]
    assert build["context"] == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile"
    assert DOCKERFILE.is_file()
    for name in INFRA:
        assert "build" not in services[name] and ":" in services[name]["image"], \
            f"{name}: a pinned upstream image"


def test_celery_services_share_the_django_anchor(services):
    """One `x-django: &django` block, merged (`<<: *django`) into each Celery service."""
    root = yaml.compose(COMPOSE_FILE.read_text(encoding="utf-8"))
    top = {key.value: value for key, value in root.value}
    anchor = top["x-django"]
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert re.search(r"^x-django: &django\s*(#.*)?$", text, re.M), "one `x-django: &django` block"
    service_nodes = {key.value: value for key, value in top["services"].value}
    for name in CELERY_SERVICES:
        merged = [value for key, value in service_nodes[name].value if key.value == "<<"]
        assert merged and merged[0] is anchor, f"{name} does not merge <<: *django"
    shared = ("build", "image", "env_file", "environment", "volumes")
    for key in shared:
        values = [services[name].get(key) for name in CELERY_SERVICES]
        assert all(v == values[0] for v in values), f"{key} differs between {CELERY_SERVICES}"


def test_every_service_has_a_healthcheck(services):
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    assert "redis-cli" in healthcheck_text(services["redis"])
    assert "pg_isready" in healthcheck_text(services["db"])
    assert "http://127.0.0.1:8000/" in healthcheck_text(services["web"])
    assert "/healthcheck" in healthcheck_text(services["flower"])
    worker = healthcheck_text(services["worker"])
    # This worker, not any worker: its node name is celery@<container hostname>.
    assert "inspect ping" in worker and "celery@$$HOSTNAME" in worker


def test_depends_on_waits_for_health(services):
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on as a list only waits for 'started'"
        for other, how in depends.items():
            assert how == {"condition": "service_healthy"}, f"{name} -> {other}: {how}"
            assert "healthcheck" in services[other], f"{name} waits for {other}, which has no healthcheck"
    assert "worker" in services["flower"]["depends_on"], "Flower waits for a worker that answers ping"
    for name in ("worker", "beat"):
        # web migrates before it serves: healthy web = the tables exist.
        assert "web" in services[name]["depends_on"], name
    assert "manage.py migrate" in " ".join(services["web"]["command"])


def test_celery_commands(services):
    worker = command_words(services["worker"])
    assert worker[:4] == ["celery", "-A", "django_demo", "worker"] and "-E" in worker
    beat = command_words(services["beat"])
    assert beat[:4] == ["celery", "-A", "django_demo", "beat"]
    assert "django_celery_beat.schedulers:DatabaseScheduler" in beat
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1, "exactly one beat"


def test_flower_has_basic_auth_and_the_celery5_option_order(services):
    words = command_words(services["flower"])
    assert words[:3] == ["celery", "-A", "django_demo"]
    at = words.index("flower")
    assert any(w.startswith("--broker") for w in words[:at]), "--broker must come before `flower`"
    assert not any(w.startswith("--broker") for w in words[at:]), "after `flower`, --broker is ignored"
    auth = [w for w in words[at:] if w.startswith("--basic-auth")]
    assert auth, "Flower without --basic-auth is an open door (chapter 04)"
    assert "$" in auth[0], "the credentials come from .env, not from this file"


def test_no_secret_values_in_the_compose_file(services):
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for name, service in services.items():
        env = service.get("environment", {})
        items = env.items() if isinstance(env, dict) else (e.partition("=")[::2] for e in env)
        for key, value in items:
            value = str(value)
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}", value), \
                    f"{name}: {key} must come from .env, not be written here"
            # user:password@ in a URL: the password must be interpolated too.
            masked = re.sub(r"\$\{[^}]*\}", "${}", value)
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", masked):
                assert password == "${}", f"{name}: {key} has a literal password"
    example = env_example()
    for key, value in example.items():
        if SECRET_NAME.search(key) and value:
            assert value not in text, f"the value of {key} from .env.example is in docker-compose.yml"
    assert not re.search(r"(?<![\w-])celery-course(?![\w-])", text), \
        "the course's demo password belongs to `make lab`, not here"


# --- (3) the image -------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        current += raw.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        lines.append(current)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in lines]


def test_dockerfile_installs_the_pins_and_runs_as_non_root():
    instructions = dockerfile_instructions()
    base = [args for op, args in instructions if op == "FROM"]
    assert len(base) == 1 and re.match(r"python:3\.11\.\d+-slim", base[0]), f"pin a python:3.11.x-slim tag: {base}"
    runs = [args for op, args in instructions if op == "RUN"]
    # The course's own pins, as they are (the test-only ones live in another file).
    assert any(re.search(r"pip install (.* )?-r requirements\.txt\b", r) for r in runs), \
        "install the pins from requirements.txt"
    assert not any("requirements-test.txt" in r or "grep" in r for r in runs), \
        "the image installs what the course needs to run, unfiltered, and not what the tests need"
    assert any("django_demo.pth" in r and "/app/django_demo" in r for r in runs), \
        "put django_demo/ on sys.path as `make install` does"
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must not run as root"
    env = " ".join(args for op, args in instructions if op == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    copied = " ".join(args for op, args in instructions if op in ("COPY", "ADD"))
    assert ".env" not in copied.split(), "secrets are never copied into the image"


def test_dockerignore_keeps_secrets_and_local_state_out():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert "*" in patterns or {".env", ".venv", ".git"} <= set(patterns)
    assert not any(p.startswith("!") and ".env" in p for p in patterns), ".env must stay out of the image"
    for needed in ("requirements.txt", "pyproject.toml", "django_demo/"):
        assert "*" not in patterns or f"!{needed}" in patterns, f"the build needs {needed}"


# --- (4) .env.example ------------------------------------------------------------------

def test_env_example_sets_every_variable_compose_interpolates():
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    referenced = set(COMPOSE_VAR.findall(text))
    assert referenced, "docker-compose.yml reads its secrets from .env"
    missing = referenced - set(env_example())
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_env_example_covers_what_the_containers_read(services):
    """Variables the commands expand ($$NAME) and the settings read are all in
    .env.example, set or explained in a comment."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    example = env_example()
    for name, service in services.items():
        provided = set(service.get("environment", {}) or {})
        for var in SHELL_VAR.findall(yaml.safe_dump(service)):
            if var == "HOSTNAME":   # set by Docker in every container
                continue
            assert var in provided or var in example, f"{name} expands ${var}, which nothing sets"
    settings = SETTINGS.read_text(encoding="utf-8")
    read = set(re.findall(r"""(?:environ\.get|env_bool|env_list)\(\s*["']([A-Z_]+)["']""", settings))
    read |= set(re.findall(r"""env=["']([A-Z_]+)["']""", settings))
    assert {"SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL"} <= read
    missing = [var for var in sorted(read) if var not in text]
    assert not missing, f".env.example does not mention {missing}"


def test_env_example_is_marked_local_and_holds_only_placeholders():
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert "local use" in text.lower()
    assert "cp .env.example .env" in text
    for key, value in env_example().items():
        if SECRET_NAME.search(key):
            assert "change-me" in value, f"{key} must be an obvious placeholder, not a real secret"
    assert env_example().get("DEBUG", "").lower() in ("true", "1"), \
        "the stack runs Django's development server: DEBUG=true"
