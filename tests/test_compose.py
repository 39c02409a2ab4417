"""The Docker stack (chapter 14): docker-compose.yml, compose/, Dockerfile, .dockerignore.

No Docker engine is needed, and none is used: `docker compose config`
(or Debian's `docker-compose config`) validates and resolves the file
offline; the rest reads the files, runs the secrets generator and runs
`manage.py check --deploy` with the production profile. `up` and `build`
are never run. The pieces that need servers (Redis's ACL with a real worker,
the gate in front of a real Flower) are in test_compose_acl.py.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import launcher
from tests.helpers import REPO_ROOT as ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_DIR = ROOT / "compose"
DOCKERFILE = ROOT / "Dockerfile"
SETTINGS = ROOT / "django_demo" / "django_demo" / "settings.py"
PROFILES = {"development": COMPOSE_DIR / "development.env", "production": COMPOSE_DIR / "production.env"}
ACL_TEMPLATE = COMPOSE_DIR / "redis" / "users.acl.in"
GATE_TEMPLATE = COMPOSE_DIR / "flower-gate" / "default.conf.template"

INFRA = {"redis", "db", "flower-gate", "mailpit"}      # upstream images, not ours
DJANGO_SERVICES = ("web", "worker", "beat")
OUR_SERVICES = (*DJANGO_SERVICES, "flower")
#: Who gets which secret: each service only the ones it uses.
SECRETS = {
    "redis": {"redis_password"},
    "db": {"postgres_password"},
    "web": {"django_secret_key", "postgres_password", "redis_password"},
    "worker": {"django_secret_key", "postgres_password", "redis_password"},
    "beat": {"django_secret_key", "postgres_password", "redis_password"},
    "flower": {"redis_password", "flower_basic_auth"},
    "flower-gate": set(),
    "mailpit": set(),
}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|_KEY$|AUTH")
# ${VAR}, ${VAR:-x}, ${VAR:?x} or $VAR, but not $$VAR (expanded later, by the container's shell).
COMPOSE_VAR = re.compile(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)")
# scheme://user:password@ -- a password in a URL that is not a shell variable ($$name).
URL_PASSWORD = re.compile(r"://[^\s:/@$]+:(?!\$)[^\s@/]+@")


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


def run_config(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    assert COMPOSE, "CI must have a compose command (.ci/run installs docker-compose)"
    # The learner's shell must not change the result: COURSE_ENV picks the
    # profile, COMPOSE_* variables change the project, and PYTHONPATH could
    # make docker-compose 1.x (a Python program whose package is also named
    # `compose`) import ours.
    child = {k: v for k, v in os.environ.items()
             if not k.startswith(("COMPOSE_", "DOCKER_", "COURSE_")) and k != "PYTHONPATH"}
    child.update(env or {})
    return subprocess.run([*COMPOSE, "config", *args], cwd=project, env=child,
                          capture_output=True, text=True, timeout=60)


def make_secrets(folder: Path) -> dict[str, str]:
    """Run the generator as a learner does (`python -m compose.secrets`), into
    ``folder``; return {name: value}."""
    done = subprocess.run([sys.executable, "-m", "compose.secrets", "--dir", str(folder)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return {path.name: path.read_text(encoding="utf-8") for path in (folder / "compose").iterdir()}


def copy_project(dest: Path, *, with_secrets: bool = False) -> Path:
    """The compose project in a temporary directory (with the secrets made by
    the generator, if asked): nothing is ever written into the repository."""
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(COMPOSE_DIR, dest / "compose", ignore=shutil.ignore_patterns("__pycache__"))
    if with_secrets:
        make_secrets(dest / ".secrets")
    return dest


def env_file(path: Path) -> dict[str, str]:
    """NAME=value lines of a compose env file (comment and blank lines skipped)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep and name.strip() == name and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), \
                f"{path.name}: not NAME=value: {line!r}"
            assert "#" not in value, f"{path.name}: compose takes a # after the value as part of it: {line!r}"
            values[name] = value
    return values


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A project copy with real secrets, and those secrets' values."""
    project = copy_project(tmp_path_factory.mktemp("compose-project"), with_secrets=True)
    values = {p.name: p.read_text(encoding="utf-8") for p in (project / ".secrets" / "compose").iterdir()}
    return project, values


@pytest.fixture(scope="module")
def resolved(generated) -> dict[str, dict]:
    """`config` output, per profile, of the project with real secrets."""
    project, _ = generated
    out = {}
    for profile in PROFILES:
        done = run_config(project, env={} if profile == "development" else {"COURSE_ENV": profile})
        assert done.returncode == 0, done.stderr
        out[profile] = {"text": done.stdout, "config": yaml.safe_load(done.stdout)}
    return out


def command_words(service: dict) -> list[str]:
    """The command as words; `sh -c "... && exec CMD"` / `"...; exec CMD"` is unwrapped into CMD's words."""
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


def secret_names(service: dict) -> set[str]:
    """The secrets a service lists (short form "name" or long form {source: name})."""
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {}) or {}
    if isinstance(env, list):
        env = dict(e.partition("=")[::2] for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def top_level() -> dict:
    """The YAML nodes of the top-level keys, with anchors intact (for `<<: *x` checks)."""
    root = yaml.compose(COMPOSE_FILE.read_text(encoding="utf-8"))
    return {k.value: v for k, v in root.value}


def merged(node) -> list:
    """The nodes a mapping node merges in with `<<:`."""
    return [value for key, value in node.value if key.value == "<<"]


# --- (1) compose itself validates and resolves the file -------------------------

@needs_compose
def test_both_profiles_resolve(resolved):
    for profile, expected_debug in (("development", "true"), ("production", "false")):
        config = resolved[profile]["config"]["services"]
        for name in DJANGO_SERVICES:
            env = config[name]["environment"]
            assert env["DEBUG"] == expected_debug, f"{profile}: {name} does not get compose/{profile}.env"
            # ... and the in-network addresses from docker-compose.yml, without passwords.
            assert env["REDIS_URL"] == "redis://celery@redis:6379/0", name
            assert env["DATABASE_URL"] == "postgres://course@db:5432/django_demo", name
        for name in ("redis", "db", "flower", "flower-gate"):
            assert "DEBUG" not in environment(config[name]), f"{name} gets the Django profile"


@needs_compose
def test_an_unknown_profile_fails_loudly(tmp_path):
    """A typo in COURSE_ENV is an error naming the missing file, never a stack with other settings."""
    done = run_config(copy_project(tmp_path), "-q", env={"COURSE_ENV": "staging"})
    assert done.returncode != 0
    assert "staging.env" in done.stderr + done.stdout


@needs_compose
def test_each_service_gets_only_its_secrets(resolved, generated):
    project, _ = generated
    for profile in PROFILES:
        config = resolved[profile]["config"]
        assert set(config["secrets"]) == set().union(*SECRETS.values())
        for name, secret in config["secrets"].items():
            assert Path(secret["file"]) == project / ".secrets" / "compose" / name, \
                f"secret {name} comes from {secret['file']}"
        assert set(config["services"]) == set(SECRETS)
        for name, service in config["services"].items():
            assert secret_names(service) == SECRETS[name], f"{name} gets {sorted(secret_names(service))}"
            for key, value in environment(service).items():
                if key.endswith("_FILE"):
                    where = Path(value)
                    assert where.parent == Path("/run/secrets") and where.name in SECRETS[name], \
                        f"{name}: {key}={value} is not one of its secrets"
                elif SECRET_NAME.search(key):
                    pytest.fail(f"{name}: {key} is in the environment; secrets are files (/run/secrets)")


@needs_compose
def test_no_secret_value_reaches_the_config_or_the_files(resolved, generated):
    """The generated values appear nowhere compose shows or the repository holds."""
    _, values = generated
    texts = {f"config ({profile})": resolved[profile]["text"] for profile in PROFILES}
    for path in [COMPOSE_FILE, *COMPOSE_DIR.rglob("*")]:
        if path.is_file() and path.suffix != ".pyc":
            texts[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    for name, value in values.items():
        password = value.partition(":")[2] if name == "flower_basic_auth" else value
        assert len(password) >= 24
        for where, text in texts.items():
            assert password not in text, f"the value of {name} is in {where}"
    for where, text in texts.items():
        if not where.endswith(".py"):   # the generator's docstring shows the form: celery:PASSWORD@
            assert not URL_PASSWORD.search(text), f"{where}: a URL with a literal password"


# --- (2) the file's shape ----------------------------------------------------------

def test_ports_are_published_on_loopback_only(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} on all interfaces"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"
    assert "ports" not in services["db"], "the database needs no port on the host"
    assert "ports" not in services["flower"], "Flower is published through the gate only"
    assert services["flower-gate"]["ports"] == ["127.0.0.1:5555:8080"]
    # Mailpit's web UI on loopback; its SMTP port (1025) only inside the compose network.
    assert services["mailpit"]["ports"] == ["127.0.0.1:8025:8025"]


def test_every_image_built_here_is_the_one_image(services):
    ours = {name: s for name, s in services.items() if name not in INFRA}
    assert set(ours) == set(OUR_SERVICES)
    builds = {(yaml.safe_dump(s.get("build")), s.get("image")) for s in ours.values()}
    assert len(builds) == 1, f"services build different images: {builds}"
    build = next(iter(ours.values()))["build"]
    assert build["context"] == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile"
    assert DOCKERFILE.is_file()
    for name in INFRA - {"mailpit"}:
        image = services[name]["image"]
        assert "build" not in services[name] and re.search(r":\d+(\.\d+)*-alpine$", image), \
            f"{name}: a pinned upstream image, not {image}"
    # Mailpit's images are tagged by release (v1.28.0), not by Alpine: an exact one, never "latest".
    assert "build" not in services["mailpit"]
    assert re.fullmatch(r"axllent/mailpit:v\d+\.\d+\.\d+", services["mailpit"]["image"]), services["mailpit"]["image"]


def test_services_share_the_image_and_django_anchors(services):
    """`x-image: &image` is merged into every service of our image; `x-django:
    &django` (which merges &image) into the Django services; Flower takes the
    image only, not the Django settings and secrets."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert re.search(r"^x-image: &image\s*(#.*)?$", text, re.M)
    assert re.search(r"^x-django: &django\s*(#.*)?$", text, re.M)
    top = top_level()
    image, django = top["x-image"], top["x-django"]
    assert [m is image for m in merged(django)] == [True], "x-django merges <<: *image"
    nodes = {key.value: value for key, value in top["services"].value}
    for name in DJANGO_SERVICES:
        assert [m is django for m in merged(nodes[name])] == [True], f"{name} does not merge <<: *django"
    assert [m is image for m in merged(nodes["flower"])] == [True], \
        "flower merges <<: *image (and not the Django settings)"
    for key in ("build", "image", "init", "restart", "env_file", "environment", "secrets", "volumes"):
        values = [services[name].get(key) for name in DJANGO_SERVICES]
        assert all(v == values[0] for v in values), f"{key} differs between {DJANGO_SERVICES}"
    assert services["web"]["env_file"] == "compose/${COURSE_ENV:-development}.env"
    for key in ("env_file", "environment", "volumes"):
        assert key not in services["flower"], f"flower needs no {key}"


def test_every_service_has_a_healthcheck(services):
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    redis = healthcheck_text(services["redis"])
    # The password from the secret, in redis-cli's environment variable, not an argument.
    assert "redis-cli --user celery" in redis and 'REDISCLI_AUTH="$$(cat /run/secrets/redis_password)"' in redis
    assert " -a " not in redis and "--pass" not in redis
    assert "pg_isready" in healthcheck_text(services["db"])
    web = healthcheck_text(services["web"])
    assert "http://127.0.0.1:8000/" in web and "X-Forwarded-Proto" in web
    assert "http://127.0.0.1:5555/healthcheck" in healthcheck_text(services["flower"])
    assert "http://127.0.0.1:8080/" in healthcheck_text(services["flower-gate"])
    worker = healthcheck_text(services["worker"])
    # This worker, not any worker: its node name is celery@<container hostname>.
    assert "inspect ping" in worker and "celery@$$HOSTNAME" in worker
    # Mailpit's own readiness check (its image's HEALTHCHECK), written out so compose's gate sees it.
    assert services["mailpit"]["healthcheck"]["test"] == ["CMD", "/mailpit", "readyz"]


def test_depends_on_waits_for_health(services):
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on as a list only waits for 'started'"
        for other, how in depends.items():
            assert how == {"condition": "service_healthy"}, f"{name} -> {other}: {how}"
            assert "healthcheck" in services[other], f"{name} waits for {other}, which has no healthcheck"
    assert "worker" in services["flower"]["depends_on"], "Flower waits for a worker that answers ping"
    assert "flower" in services["flower-gate"]["depends_on"]
    for name in ("worker", "beat"):
        # web migrates before it serves: healthy web = the tables exist.
        assert "web" in services[name]["depends_on"], name
    for name in ("web", "worker"):
        # Mail is sent by the worker (notifications, the daily report) and by web (Django's own).
        assert "mailpit" in services[name]["depends_on"], name
    assert "manage.py migrate" in " ".join(services["web"]["command"])


def test_celery_commands(services):
    worker = command_words(services["worker"])
    assert worker[:4] == ["celery", "-A", "django_demo", "worker"] and "-E" in worker
    beat = command_words(services["beat"])
    assert beat[:4] == ["celery", "-A", "django_demo", "beat"]
    assert "django_celery_beat.schedulers:DatabaseScheduler" in beat
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1, "exactly one beat"


def test_the_django_services_send_mail_to_mailpit(services):
    """Chapter 09: the &django anchor points Django's SMTP backend at Mailpit's SMTP port
    inside the network, in plain SMTP (Mailpit has no TLS here), and names who gets the
    daily report; Flower (no Django) gets none of it."""
    for name in DJANGO_SERVICES:
        env = environment(services[name])
        assert {k: env.get(k) for k in ("EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_USE_TLS")} == {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "mailpit",
            "EMAIL_PORT": "1025", "EMAIL_USE_TLS": "false"}, name
        assert re.fullmatch(r"[^@,\s]+@[^@,\s]+(,[^@,\s]+@[^@,\s]+)*", env.get("REPORT_MAIL_TO", "")), name
    assert "environment" not in services["flower"]
    # Nothing else in the stack listens for mail, and Mailpit runs as its image says (no command of ours).
    assert "command" not in services["mailpit"] and "environment" not in services["mailpit"]


@needs_compose
def test_both_profiles_send_mail_to_mailpit(resolved):
    for profile in PROFILES:
        config = resolved[profile]["config"]["services"]
        for name in DJANGO_SERVICES:
            env = config[name]["environment"]
            assert (env["EMAIL_HOST"], str(env["EMAIL_PORT"])) == ("mailpit", "1025"), (profile, name)
        assert config["mailpit"]["image"].startswith("axllent/mailpit:v")
        published = config["mailpit"]["ports"]
        # v1 of docker-compose prints "127.0.0.1:8025:8025/tcp"; the plugin a mapping.
        assert [p if isinstance(p, str) else f"{p['host_ip']}:{p['published']}:{p['target']}/{p['protocol']}"
                for p in published] == ["127.0.0.1:8025:8025/tcp"], published


def test_flower_runs_without_django_and_keeps_credentials_out_of_its_arguments(services):
    words = command_words(services["flower"])
    assert words[:2] == ["celery", "flower"], f"Flower without -A (no Django app): {words}"
    assert not any(w.startswith(("--broker", "--basic-auth", "--basic_auth", "-b")) for w in words), \
        "credentials in the arguments: `ps` shows them"
    script = services["flower"]["command"][2]
    # Built by the container's shell ($$) from the secret files, handed over in the environment.
    assert "$$(cat /run/secrets/redis_password)" in script
    assert "$$(cat /run/secrets/flower_basic_auth)" in script
    assert re.search(r'export CELERY_BROKER_URL="redis://celery:\$\$\w+@redis:6379/0"', script)
    assert re.search(r'FLOWER_BASIC_AUTH="\$\$\w+"', script)


def test_redis_takes_its_acl_from_the_committed_template(services):
    redis = services["redis"]
    assert redis["user"] not in ("root", "0"), "start.sh needs no root"
    assert redis["entrypoint"] == ["sh", "/usr/local/etc/redis/start.sh"]
    assert "./compose/redis:/usr/local/etc/redis:ro" in redis["volumes"]
    assert redis["command"][0] == "redis-server"
    assert "--requirepass" not in redis["command"], "the ACL file says who logs in, requirepass would not"
    start = (COMPOSE_DIR / "redis" / "start.sh").read_text(encoding="utf-8")
    assert "users.acl.in" in start and "/run/secrets/redis_password" in start
    assert 'exec "$@" --aclfile' in start
    acl = ACL_TEMPLATE.read_text(encoding="utf-8")
    assert re.search(r"^user default off\b", acl, re.M)
    assert re.search(r"^user celery on #@PASSWORD_SHA256@ .*~\* .*&\* -@all", acl, re.M)


def test_the_gate_publishes_flower_without_metrics_and_healthcheck(services):
    gate = services["flower-gate"]
    assert re.fullmatch(r"nginx:\d+\.\d+-alpine", gate["image"])
    assert "./compose/flower-gate:/etc/nginx/templates:ro" in gate["volumes"]
    env = environment(gate)
    assert env == {"GATE_LISTEN": "8080", "GATE_UPSTREAM": "flower:5555"}
    template = GATE_TEMPLATE.read_text(encoding="utf-8")
    # The image renders every ${NAME} it has a value for: the template uses these two only.
    assert set(re.findall(r"\$\{(\w+)\}", template)) == set(env)
    assert "set $flower http://${GATE_UPSTREAM};" in template and "proxy_pass $flower;" in template
    for path in ("/metrics", "/healthcheck"):
        assert re.search(r"location \^~ " + path + r" \{\s*return 404;\s*\}", template), path
    assert "proxy_set_header Upgrade $http_upgrade;" in template


def test_no_secrets_and_no_env_file_mechanism_in_the_compose_file(services):
    """Secrets are files; nothing comes from a .env file or the shell except COURSE_ENV."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert set(COMPOSE_VAR.findall(text)) == {"COURSE_ENV"}, "compose interpolates only COURSE_ENV"
    assert not (ROOT / ".env.example").exists(), "the .env mechanism is gone: compose/*.env and secrets"
    for name, service in services.items():
        assert service.get("env_file") in (None, "compose/${COURSE_ENV:-development}.env"), name
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert key.endswith("_FILE") and value.startswith("/run/secrets/"), \
                    f"{name}: {key} must be a file under /run/secrets, not a value"
    assert not URL_PASSWORD.search(text), "a URL with a password in docker-compose.yml"


# --- (3) the profiles ----------------------------------------------------------------

def test_profiles_hold_settings_but_no_secrets():
    profiles = {name: env_file(path) for name, path in PROFILES.items()}
    assert set(COMPOSE_DIR.glob("*.env")) == set(PROFILES.values())
    for name, values in profiles.items():
        for key in values:
            assert not SECRET_NAME.search(key), f"compose/{name}.env sets {key}: secrets are files"
        # The web healthcheck's Host.
        assert "127.0.0.1" in values["ALLOWED_HOSTS"].split(","), name
    assert profiles["development"]["DEBUG"] == "true"
    assert profiles["production"]["DEBUG"] == "false"
    assert set(profiles["development"]) <= set(profiles["production"])


def test_every_security_and_address_setting_is_decided(services):
    """Each variable settings.py reads that is about security or addresses is
    set by a profile or by docker-compose.yml, or left to its default on
    purpose. (Tuning knobs such as REPORT_* may keep their defaults.)"""
    decides = re.compile(r"DEBUG|SECRET|PASSWORD|HOSTS|ORIGINS|SECURE|TLS|_URL$|_ROOT$")
    defaults_on_purpose = {
        "STATIC_ROOT": "no collectstatic in this stack",
        "SECRET_KEY": "SECRET_KEY_FILE", "REDIS_PASSWORD": "REDIS_PASSWORD_FILE",
        "DATABASE_PASSWORD": "DATABASE_PASSWORD_FILE",
        # Mailpit takes mail without a login; a real relay's password comes as a secret file.
        "EMAIL_HOST_PASSWORD": "no login to Mailpit", "EMAIL_HOST_PASSWORD_FILE": "no login to Mailpit",
        # The learner's own robot and hook: unset, their tasks fail at once saying so (chapter 09).
        "DINGTALK_WEBHOOK_URL": "the learner's own robot", "DINGTALK_SECRET": "the learner's own robot",
        "DINGTALK_SECRET_FILE": "the learner's own robot", "NOTIFY_WEBHOOK_URL": "the learner's own hook",
    }
    settings = SETTINGS.read_text(encoding="utf-8")
    read = set(re.findall(r"""(?:environ\.get|env_bool|env_list|env_secret)\(\s*["']([A-Z_]+)["']""", settings))
    read |= set(re.findall(r"""env=["']([A-Z_]+)["']""", settings))
    read |= {f"{name}_FILE" for name in
             re.findall(r"""env_secret\(\s*["']([A-Z_]+)["']""", settings)}
    assert {"SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL", "SECRET_KEY_FILE"} <= read
    given = set(environment(services["web"])) | set().union(*(env_file(p) for p in PROFILES.values()))
    undecided = sorted(name for name in read - given - set(defaults_on_purpose) if decides.search(name))
    assert not undecided, f"neither compose/*.env nor docker-compose.yml decides {undecided}"


def test_production_profile_passes_check_deploy(services, tmp_path):
    """`manage.py check --deploy` with what the web container of the production
    profile gets: compose/production.env, the environment of docker-compose.yml
    and the secrets as files (made by the generator)."""
    secrets = make_secrets(tmp_path / ".secrets")
    env = dict(env_file(PROFILES["production"]))
    for key, value in environment(services["web"]).items():
        if value.startswith("/run/secrets/"):
            name = value.removeprefix("/run/secrets/")
            assert name in secrets
            value = str(tmp_path / ".secrets" / "compose" / name)
        env[key] = value
    # Exactly these variables (and what runs Python at all): nothing from this process.
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT"}
    done = launcher.manage("check", "--deploy", "--fail-level", "WARNING", env=env, check=False,
                           unset=[k for k in os.environ if k not in keep])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout + done.stderr


# --- (4) the secrets generator ---------------------------------------------------------

def test_the_generator_makes_private_secrets_once(tmp_path):
    folder = tmp_path / ".secrets"
    first = make_secrets(folder)
    assert set(first) == set().union(*SECRETS.values())
    for path in (folder, folder / "compose"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for name, value in first.items():
        # Readable by the containers' users (bind mounts keep the host's mode) ...
        assert stat.S_IMODE((folder / "compose" / name).stat().st_mode) == 0o644, name
        # ... and fit for URLs unescaped (redis://celery:PASSWORD@...).
        password = value.removeprefix("course:") if name == "flower_basic_auth" else value
        assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", password), name
    assert first["flower_basic_auth"].startswith("course:")
    assert len(first["django_secret_key"]) >= 50
    assert len(set(first.values())) == len(first), "every secret is its own"
    # Never overwritten: a second run keeps every value (and closes a loosened mode).
    (folder / "compose" / "redis_password").chmod(0o600)
    done = subprocess.run([sys.executable, "-m", "compose.secrets", "--dir", str(folder)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert make_secrets(folder) == first
    assert stat.S_IMODE((folder / "compose" / "redis_password").stat().st_mode) == 0o644
    for name, value in first.items():   # names and where, never the values
        password = value.removeprefix("course:") if name == "flower_basic_auth" else value
        assert password not in done.stdout + done.stderr, name


def test_the_generator_refuses_a_directory_in_place_of_a_secret(tmp_path):
    """What `docker compose up` leaves when a secret file was missing: an empty directory."""
    (tmp_path / ".secrets" / "compose" / "redis_password").mkdir(parents=True)
    done = subprocess.run([sys.executable, "-m", "compose.secrets", "--dir", str(tmp_path / ".secrets")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "is a directory" in done.stderr and "Traceback" not in done.stderr


def test_git_ignores_the_secrets():
    done = subprocess.run(["git", "check-ignore", "-q", ".secrets/compose/redis_password"], cwd=ROOT)
    assert done.returncode == 0, ".secrets/ must be in .gitignore"


# --- (5) the image -------------------------------------------------------------------

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
    assert "--uid 10001" in " ".join(runs), "the uid the compose comments name"
    env = " ".join(args for op, args in instructions if op == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    copied = " ".join(args for op, args in instructions if op in ("COPY", "ADD")).split()
    assert not {".env", ".secrets", "compose", "."} & set(copied), \
        "secrets are never copied into the image (and compose/ belongs to the other containers)"


def editable_packages() -> list[str]:
    """[tool.setuptools] packages of pyproject.toml (tomllib is not in Python 3.10)."""
    found = re.search(r"^packages = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.MULTILINE | re.DOTALL)
    return re.findall(r'"([\w.]+)"', found[1])


def test_dockerignore_keeps_secrets_and_local_state_out():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert "*" in patterns or {".env", ".secrets", ".venv", ".git"} <= set(patterns)
    assert not any(p.startswith("!") and (".env" in p or ".secrets" in p) for p in patterns), \
        "secrets must stay out of the image"
    packages = editable_packages()
    for needed in ("requirements.txt", "pyproject.toml", "django_demo/", *(f"{p}/" for p in packages)):
        assert "*" not in patterns or f"!{needed}" in patterns, f"the build needs {needed}"


def test_the_image_copies_every_package_its_editable_install_lists():
    """`pip install -e .` in the Dockerfile fails ("package directory 'X' does not exist")
    for a package of pyproject.toml that the image does not have."""
    packages = editable_packages()
    copied = {line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")}
    assert set(packages) <= copied, f"COPY these into the image: {sorted(set(packages) - copied)}"
