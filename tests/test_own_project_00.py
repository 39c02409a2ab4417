"""The own-project blocks themselves, without running them (tests/own_project.py):
every marker reads, every Python block compiles, fragments say they are fragments,
and every block that is not a fragment is checked by a test of
tests/test_own_project_NN.py, so a new chapter's block cannot go untested."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from launcher.paths import NOTEBOOKS_DIR
from tests import own_project
from tests.own_project import FRAGMENT_PREFIX, Block, BlockError, Project

TESTS_DIR = Path(__file__).resolve().parent
#: A Python block that names the learner's app, or a module or file of their project package
#: (``proj.settings``, ``proj/urls.py``, ``from proj import``), looks like an own-project block.
LOOKS_OWN = re.compile(r"\bmyapp\b|\bproj[./]|\b(?:from|import) proj\b")


def checked_keys() -> dict[str, list[str]]:
    """Key -> the tests (module::function) that check that block's effect."""
    found: dict[str, list[str]] = {}
    for path in sorted(TESTS_DIR.glob("test_own_project_[0-9][0-9].py")):
        module = importlib.import_module(f"tests.{path.stem}")
        for name, value in vars(module).items():
            for key in getattr(value, "own_project_blocks", ()):
                found.setdefault(key, []).append(f"{path.name}::{name}")
    return found


def test_every_marker_reads_and_every_block_is_well_formed():
    blocks = own_project.collect()
    assert blocks, "no own-project block found: did the markers change?"
    problems = [f"{b.describe()}: {own_project.syntax_problem(b)}" for b in blocks if own_project.syntax_problem(b)]
    assert not problems, "\n".join(problems)


def test_every_block_that_is_not_a_fragment_is_checked_by_a_test():
    checked = checked_keys()
    untested = [b for b in own_project.collect() if b.mode != "fragment" and b.key not in checked]
    assert not untested, ("own-project blocks no test checks (add a test with @checks(KEY) to "
                          "tests/test_own_project_NN.py of their chapter):\n"
                          + "\n".join("  - " + b.describe() for b in untested))


def test_every_key_a_test_names_is_a_marked_block():
    keys = {b.key for b in own_project.collect()}
    unknown = {key: tests for key, tests in checked_keys().items() if key not in keys}
    assert not unknown, f"tests name blocks that are not marked (a renamed file, a moved block?): {unknown}"


def test_every_chapter_with_blocks_has_its_test_file():
    chapters = {b.chapter for b in own_project.collect() if b.mode != "fragment"}
    missing = sorted(c for c in chapters if not (TESTS_DIR / f"test_own_project_{c}.py").is_file())
    assert not missing, f"chapters with own-project blocks but no tests/test_own_project_NN.py: {missing}"


def test_fragments_are_checked_for_their_syntax_and_say_so():
    for b in own_project.collect():
        if b.mode == "fragment":
            assert b.text.lstrip("\n").startswith(FRAGMENT_PREFIX), b.describe()
            assert own_project.syntax_problem(b) is None, b.describe()
    # What the check catches, on blocks made up here.
    def made_up(text: str, mode: str = "fragment") -> Block:
        return Block(Path("99_x.ipynb"), 1, 1, "python", text, "django", "myapp/views.py", mode, "99:myapp/views.py")

    assert own_project.syntax_problem(made_up("# 片段：视图里的一段\nwith transaction.atomic():\n    pass\n")) is None
    assert "not valid Python" in own_project.syntax_problem(made_up("# 片段：视图里的一段\nwith x:\n"))
    assert "first line says what it is part of" in own_project.syntax_problem(made_up("x = 1\n"))
    assert "says it is a fragment" in own_project.syntax_problem(made_up("# 片段：一段\nx = 1\n", "append"))


def test_unmarked_python_blocks_do_not_look_like_the_learners_project():
    """A Python block in the prose that names ``myapp`` or a module of ``proj`` is meant for the
    learner's project: it needs a marker, so that a test assembles it."""
    suspicious = []
    for path in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        for index, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
            if cell["cell_type"] != "markdown":
                continue
            source = "".join(cell["source"])
            marked = {text for _, _, text, _ in own_project.blocks_in(source, path, index)}
            for match in re.finditer(r"^(\s*)```python\n(.*?)^\1```", source, re.M | re.S):
                text = "\n".join(line[len(match[1]):] for line in match[2].splitlines()) + "\n"
                if LOOKS_OWN.search(text) and text not in marked:
                    suspicious.append(f"{path.name}, cell {index}: {text.splitlines()[0]!r}")
    assert not suspicious, ("Python blocks that name proj/myapp without an own-project marker:\n"
                            + "\n".join(suspicious))


@pytest.mark.parametrize(("body", "error"), [
    ("own-project: proj/celery.py", "needs a file and a mode"),
    ("own-project: proj/celery.py create", "needs a file and a mode"),
    ("own-project: ../celery.py new", "a path inside the project"),
    ("own-projects: proj/celery.py new", "is not a marker"),
    ("own-project proj/celery.py new", "is not a marker"),
])
def test_a_marker_that_does_not_read_is_an_error(body, error):
    with pytest.raises(BlockError, match=error):
        own_project.parse_marker(body)


def test_a_mode_that_does_not_match_the_project_names_the_block(tmp_path):
    project = Project(tmp_path, "plain", "redis://127.0.0.1:1/0")
    (tmp_path / "tasks.py").write_text("x = 1\n")
    exists = Block(Path("99_x.ipynb"), 3, 7, "python", "y = 2\n", "plain", "tasks.py", "new", "99:tasks.py")
    with pytest.raises(BlockError, match=r"chapter 99 \(99_x\.ipynb\), cell 3, line 7: tasks\.py .*exists already"):
        project.add(exists)
    missing = Block(Path("99_x.ipynb"), 4, 2, "python", "z = 3\n", "plain", "other.py", "append", "99:other.py")
    with pytest.raises(BlockError, match=r"cell 4, line 2: other\.py .*no other\.py to change"):
        project.add(missing)
    project.add(Block(Path("99_x.ipynb"), 5, 1, "python", "z = 3\n", "plain", "tasks.py", "append", "99:tasks.py#2"))
    assert (tmp_path / "tasks.py").read_text() == "x = 1\n\nz = 3\n"
