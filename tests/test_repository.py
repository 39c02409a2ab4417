"""Repository hygiene: notebooks committed from one real run, pins, Makefile.
(docker-compose.yml has its own tests: test_compose.py.)"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.helpers import NOTEBOOKS, documents
from tests.helpers import REPO_ROOT as ROOT

#: An absolute path of this machine. (A relative ``.venv/bin/python``, as a shown command or
#: the CI workflow of chapter 11 says it, is the same on every machine: only ``/.venv/`` is.)
MACHINE_PATH = re.compile(r"(/root/|/tmp/|/work/|/home/[^/\s]+/|/Users/[^/\s]+/|site-packages|/\.venv/)")
SKELETON = ["## 准备", "## 练习", "## 参考答案", "## 下一步"]


def test_the_course_has_its_first_chapters():
    names = [p.stem for p in NOTEBOOKS]
    assert names[:3] == ["01_what_is_celery", "02_environment", "03_first_task"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_was_committed_from_one_complete_run(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in code]
    assert None not in counts, f"{counts.count(None)} code cell(s) never executed"
    assert counts == list(range(1, len(code) + 1)), f"execution counts not 1..n in order: {counts}"
    for i, cell in enumerate(code, 1):
        source = "".join(cell["source"])
        tagged = "raises-exception" in cell.get("metadata", {}).get("tags", [])
        errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
        if errors:
            assert tagged and "NBVAL_RAISES_EXCEPTION" in source, \
                f"cell {i} has an error output ({errors[0]['ename']}) but is not tagged raises-exception"
        elif tagged:
            pytest.fail(f"cell {i} is tagged raises-exception but raised nothing")
        for out in cell["outputs"]:
            text = json.dumps(out.get("text", "")) + json.dumps(out.get("data", {})) \
                + json.dumps(out.get("traceback", []))
            found = MACHINE_PATH.search(text)
            assert not found, f"cell {i} shows a machine-specific path ({found.group(0)})"
            assert out.get("name") != "stderr" or "NBVAL_IGNORE_OUTPUT" in source, \
                f"cell {i} wrote to stderr: {''.join(out['text'])[:200]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_skeleton(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert markdown.startswith("# "), "a notebook starts with its title"
    positions = [markdown.find(h) for h in SKELETON]
    assert -1 not in positions, f"missing sections: {[h for h, p in zip(SKELETON, positions, strict=True) if p < 0]}"
    assert positions == sorted(positions), "sections out of order"
    assert "学习目标" in markdown
    ignored = [c for c in nb["cells"] if "NBVAL_IGNORE_OUTPUT" in "".join(c["source"])]
    for cell in ignored:
        # nbval honours the marker only as a whole comment line ("# NBVAL_IGNORE_OUTPUT":
        # nbval/plugin.py, find_comment_markers), so the reason is the comment right below it.
        lines = "".join(cell["source"]).splitlines()
        at = next(i for i, text in enumerate(lines) if "NBVAL_IGNORE_OUTPUT" in text)
        assert lines[at].lstrip("#").strip() == "NBVAL_IGNORE_OUTPUT", \
            f"nbval ignores {lines[at]!r}: the marker must be a comment line of its own"
        reason = lines[at + 1].strip() if at + 1 < len(lines) else ""
        assert reason.startswith("#") and len(reason.lstrip("#").strip(" ()")) > 10, \
            "NBVAL_IGNORE_OUTPUT needs its reason in the comment line right below it"


REQUIREMENTS = ("requirements.txt", "requirements-test.txt")
FIRST_PARTY = {"demo_tasks", "django_demo", "instruments", "launcher", "services", "reports", "wordcounts",
               "gallery", "videos", "notifications", "selfcheck", "tests", "tasks", "compose",
               "terminal", "fonts", "architecture",  # these three: pictures/src/ (its sys.path)
               "anti_patterns", "conftest",  # examples/testing/ (its pytest.ini's pythonpath; its own conftest.py)
               "exercise_tasks"}  # selfcheck/ch11_files/: the module the exercises' tests import


def pins() -> dict[str, str]:
    """{normalised distribution name: the file that pins it} over both requirement files."""
    found = {}
    for name in REQUIREMENTS:
        for line in (ROOT / name).read_text().splitlines():
            if line.strip() and not line.startswith(("#", "-r ")):
                found[re.split(r"[=\[ ;]", line, maxsplit=1)[0].lower().replace("_", "-")] = name
    return found


@pytest.mark.parametrize("name", REQUIREMENTS)
def test_requirements_are_exact_pins_that_say_why(name):
    for line in (ROOT / name).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("-r "):
            assert line == "-r requirements.txt" and name == "requirements-test.txt", line
            continue
        spec, _, why = line.partition("#")
        assert re.match(r"^[A-Za-z0-9_.\-\[\]]+==[\w.]+(\s*;.*)?$", spec.strip()), f"not an exact pin: {line}"
        assert re.search(r"ch\d\d|all chapters|tests/|make \w+", why), f"no chapter or tool named: {line}"


#: Cell magics whose body is Python code.
PYTHON_CELL_MAGICS = {"%%time", "%%timeit", "%%capture"}


def imported_modules() -> set[str]:
    """Top-level names imported anywhere in the repository's code and notebooks."""
    sources = [p.read_text(encoding="utf-8") for p in ROOT.glob("**/*.py")
               if not {".venv", ".git", "build"} & set(p.relative_to(ROOT).parts)]
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in (c for c in nb["cells"] if c["cell_type"] == "code"):
            lines = "".join(cell["source"]).splitlines()  # without IPython's %magics and !commands
            if lines and lines[0].startswith("%%") and lines[0].split()[0] not in PYTHON_CELL_MAGICS:
                continue  # a cell magic whose body is not Python (a file's text, a template)
            sources.append("\n".join(line for line in lines if not line.lstrip().startswith(("%", "!"))))
    names = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - FIRST_PARTY


def test_everything_imported_is_pinned():
    distributions = metadata.packages_distributions()
    pinned = pins()
    for module in sorted(imported_modules()):
        assert module in distributions, f"{module} is imported but no installed package provides it"
        names = {d.lower().replace("_", "-") for d in distributions[module]}
        assert names & set(pinned), f"{module} (from {sorted(names)}) is imported but pinned in neither {REQUIREMENTS}"


def test_the_course_runs_without_the_test_requirements():
    """make lab and the Docker image install requirements.txt only: nothing they run may need more."""
    course_only = {name for name, where in pins().items() if where == "requirements.txt"}
    for tool in ("nbval", "playwright", "matplotlib", "ruff"):
        assert tool not in course_only, f"{tool} belongs in requirements-test.txt"
    # pytest too: chapter 11 runs the example tests (examples/testing/) in make lab.
    for needed in ("celery", "jupyterlab", "psutil", "redis", "django", "pillow", "imageio-ffmpeg", "pytest",
                   "pytest-django", "pytest-xdist", "responses", "time-machine"):
        assert needed in course_only, f"{needed} must be in requirements.txt"


def test_make_alone_lists_the_targets():
    out = subprocess.run(["make", "-s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for target in ("lab", "test", "test-notebook", "lint", "pictures", "notebooks", "browser", "postgres"):
        assert re.search(rf"make {target}\s+\S", out), out


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


@pytest.mark.parametrize("doc, text", documents(), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_every_relative_link_resolves(doc, text):
    links = [link for link in LINK.findall(text) if not re.match(r"^([a-z]+:|#)", link)]
    for link in links:
        target = (doc.parent / link.split("#")[0]).resolve()
        assert target.exists(), f"{doc.name} links to {link}, which does not exist"
        assert target.is_relative_to(ROOT), f"{doc.name} links outside the repository: {link}"
