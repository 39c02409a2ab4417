"""Chapter 11's exercise checks: the learner writes a **test**, and the check runs it.

Each exercise gives a task in ``exercise_tasks.py`` (the chapter's scratch folder,
written by the exercise section's first cell) and asks for a test of it in
``test_exN.py`` (``%%writeblock test_exN.py exercise-N``). The check runs the
learner's file with ``pytest``, as a new process, once against the correct task
(every test must pass) and once against each seeded broken variant of it (some
test must fail). So an empty test, or one that asserts nothing, never passes, and
the hint names the bug the learner's test let through.

1. ``split_batches(ids, size)``, tested by plain calls (no broker, no worker: the
   runs get a broker address where nothing listens).
2. ``fetch_rate(currency)``, which retries on 5xx, tested through Celery's
   ``celery_worker`` fixture (a worker in a thread of the test process) with the
   rate service replaced by ``responses``: two 503s and then the rate.
3. The weekday schedule in ``beat_schedule``, tested at chosen instants with
   ``time_machine.travel`` (no broker).

Every run gets a folder and, for exercise 2, a queue of its own, so runs never
meet each other's messages; the variants of one exercise run side by side. The
same test gets the same verdict every time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import selfcheck

exercises = selfcheck.Exercises(11)

FILES = Path(__file__).with_name("ch11_files")
#: The module under test, as the learner reads it (the correct variant).
TASKS = (FILES / "exercise_tasks.py").read_text(encoding="utf-8")
#: The exercises' conftest.py: Celery's pytest plugin with exercise_tasks' app.
CONFTEST = (FILES / "conftest.py").read_text(encoding="utf-8")
#: Makes the exercises' folder pytest's root (and keeps the course's own settings out).
PYTEST_INI = "[pytest]\n"

#: Seconds one test may take before pytest-timeout stops it (a .get() with no worker).
TEST_TIMEOUT = {1: 5, 2: 30, 3: 5}
#: Seconds a whole run may take (a guard: pytest-timeout ends a stuck test first).
RUN_TIMEOUT = 120


@dataclass(frozen=True)
class Variant:
    """A broken copy of exercise_tasks.py: ``old`` replaced by ``new``, and the hint
    printed when the learner's test does not catch it."""

    old: str
    new: str
    hint: str

    def source(self) -> str:
        if self.old not in TASKS:
            raise AssertionError(f"ch11 variant: {self.old!r} is not in exercise_tasks.py")
        return TASKS.replace(self.old, self.new, 1)


VARIANTS: dict[int, list[Variant]] = {
    1: [
        Variant("range(0, len(ids), size)", "range(0, len(ids) - size + 1, size)",
                "最后一批不满 size 个时被丢掉了（[1, 2, 3, 4, 5] 每批 2 个，少了 [5]），你的测试没有发现"),
        Variant('raise ValueError(f"size must be at least 1, not {size}")', "return [ids]",
                "size 是 0 时没有报错、而是返回了一批，你的测试没有发现（用 pytest.raises(ValueError)）"),
    ],
    2: [
        Variant("autoretry_for=(requests.ConnectionError, ServerError)", "autoretry_for=(requests.ConnectionError,)",
                "任务遇到 503 不重试、直接失败，你的测试没有发现（断言 .get() 得到的汇率）"),
        Variant('    return reply.json()["rate"]',
                '    requests.get(RATE_URL, params={"currency": "CNY"}, timeout=2)  # one request too many\n'
                '    return reply.json()["rate"]',
                "成功以后任务又多请求了一次服务（一共 4 次），你的测试没有发现（断言 len(responses.calls) == 3）"),
    ],
    3: [
        Variant('day_of_week="mon-fri"', 'day_of_week="*"',
                "时间表在星期六、星期日也运行，你的测试没有发现（星期六早上 07:30 不该到期）"),
        Variant('timezone="Asia/Shanghai",', 'timezone="UTC",',
                "时区写成了 UTC：任务在北京时间 15:30 运行，你的测试没有发现"
                "（上次在星期五北京时间 07:30 运行，星期六早上不该到期）"),
        Variant("crontab(minute=30,", "crontab(minute=0,",
                "时间写成了 07:00，你的测试没有发现（星期一北京时间 07:29 还不该到期）"),
    ],
}


@dataclass
class Run:
    """One pytest run of the learner's test file against one variant of the tasks."""

    exit_code: int
    passed: int = 0
    failed: list[str] | None = None      # "test name: first line of the failure", per failed test
    output: str = ""

    @property
    def timed_out(self) -> bool:
        # pytest-timeout stopped a test: "Failed: Timeout (>5.0s) from pytest-timeout."
        return any("from pytest-timeout" in line for line in self.failed or [])


def _closed_port_url() -> str:
    """A Redis URL where nothing listens (the port was free a moment ago)."""
    from launcher import free_port

    return f"redis://127.0.0.1:{free_port()}/0"


def _parse(junit: Path) -> tuple[int, list[str]]:
    """(passed, ["test: first line of the failure", ...]) from pytest's JUnit XML."""
    from instruments.pytest_report import read_junit

    cases = read_junit(junit)
    failed = [f"{case.name}: {case.first_line[:160] or case.outcome}" for case in cases
              if case.outcome in ("failed", "error", "xpassed")]
    return sum(case.outcome == "passed" for case in cases), failed


def run_tests(test_source: str, tasks_source: str, number: int, redis_url: str) -> Run:
    """Run ``test_source`` (the learner's test_exN.py) with pytest in a new process, in a
    folder of its own beside ``tasks_source`` as exercise_tasks.py."""
    with tempfile.TemporaryDirectory(prefix="ch11-check-") as folder:
        root = Path(folder)
        (root / "exercise_tasks.py").write_text(tasks_source, encoding="utf-8")
        (root / "conftest.py").write_text(CONFTEST, encoding="utf-8")
        (root / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
        (root / f"test_ex{number}.py").write_text(test_source, encoding="utf-8")
        junit = root / "report.xml"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CELERY_", "DJANGO_"))}
        env.update({
            "REDIS_URL": redis_url,
            "EXERCISE_QUEUE": f"ch11-exercise-{uuid.uuid4().hex[:8]}",   # this run's own queue
            "RATE_URL": "http://127.0.0.1:9/api/rate",   # nothing listens: a test that forgot responses fails
            "PYTHONDONTWRITEBYTECODE": "1",
            # Only the plugins the exercises use (named below): installed ones load otherwise, and
            # some import a lot (nbval: 15 s on a busy machine).
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        })
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "pytest_timeout",
                   f"--timeout={TEST_TIMEOUT[number]}", f"--junitxml={junit}", f"test_ex{number}.py"]
        try:
            done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                                  timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return Run(exit_code=-1, failed=[f"Timeout: 测试 {RUN_TIMEOUT} 秒还没有结束"])
        output = done.stdout + done.stderr
        if not junit.exists():
            return Run(exit_code=done.returncode, failed=[], output=output)
        passed, failed = _parse(junit)
        return Run(exit_code=done.returncode, passed=passed, failed=failed, output=output)


def _broker_url(ns: dict, number: int) -> str | None:
    """Exercise 2 needs the chapter's broker; 1 and 3 get an address where nothing listens."""
    if number != 2:
        return _closed_port_url()
    broker = ns.get("broker")
    return getattr(broker, "url", None)


def _collection_problem(run: Run, number: int) -> str | None:
    """Why pytest could not run the file at all, or None."""
    if run.exit_code == 5:
        return f"test_ex{number}.py 里没有找到测试：测试函数的名字要以 test_ 开头"
    if run.exit_code in (2, 3, 4) or (run.exit_code not in (0, 1) and not run.failed):
        lines = [line for line in run.output.splitlines() if line.strip() and not line.startswith("=")]
        error = next((line for line in lines if "Error" in line), lines[-1] if lines else "")
        return f"pytest 运行不了 test_ex{number}.py：{error.strip()[:200]}"
    return None


#: Pieces of a failure message, and what they usually mean in each exercise.
_CAUSES = {
    1: [(("OperationalError", "Connection refused", "Error 111"),
         "这一题不需要 Broker：直接调用 split_batches(...)，不用 delay()")],
    2: [(("TimeoutError", "timed out"),
         "没有 worker 执行任务：把 celery_worker 写进测试函数的参数"),
        (("ConnectionError", "Connection refused", "MaxRetryError"),
         "任务连到了真正的地址：用 @responses.activate 和 responses.get(RATE_URL, ...) 替换汇率服务"),
        (("ServerError",),
         "直接调用任务不会重试（它把异常直接抛给你）：用 fetch_rate.delay(...).get(timeout=10)，"
         "参数里写 celery_worker")],
}


#: Exercise 3 with naive datetimes: each side reads them in a zone of its own.
_NAIVE = ("时刻要带时区（tzinfo=ZoneInfo(\"Asia/Shanghai\")）：time-machine 把不带时区的时刻当作 UTC，"
          "时间表却按它自己的时区读上次运行的时刻")


def _why(failure: str, number: int, source: str) -> list[str]:
    """What a failure on the correct task usually means (at most one hint)."""
    if number == 3:
        if "time_machine" not in source:
            return ["检查的时刻要由你定：在 time_machine.travel(某个时刻, tick=False) 里调用 is_due()"]
        if "tzinfo" not in source and "ZoneInfo" not in source:
            return [_NAIVE]
        return []
    return [hint for pieces, hint in _CAUSES[number] if any(piece in failure for piece in pieces)][:1]


def check(ns: dict, number: int) -> list[str]:
    files = selfcheck.exercise_files(ns, "exercise_tasks.py")
    if files is None:
        return ["先运行“练习”部分的第一个单元格：它把 exercise_tasks.py 和 conftest.py 写进练习文件夹"]
    test_file = f"test_ex{number}.py"
    if files.stub(test_file, f"exercise-{number}"):
        return [f"还没有答案：在练习 {number} 的单元格里写测试函数（它会写进 exercises/{test_file}）"]
    redis_url = _broker_url(ns, number)
    if redis_url is None:
        return ["找不到本章的 Broker：先运行“准备”单元格"]
    source = files.path(test_file).read_text(encoding="utf-8")
    variants = VARIANTS[number]
    sources = [TASKS] + [v.source() for v in variants]
    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        runs = list(pool.map(lambda tasks: run_tests(source, tasks, number, redis_url), sources))
    correct, broken = runs[0], runs[1:]
    problem = _collection_problem(correct, number)
    if problem:
        return [problem]
    if correct.timed_out:
        waited = TEST_TIMEOUT[number]
        if number == 2:
            return [f"测试等了 {waited} 秒没有结果：用 celery_worker 这个 fixture（写进测试函数的参数），"
                    ".get() 要给 timeout"]
        return [f"测试等了 {waited} 秒还没结束：这一题直接调用任务函数，不用 delay()/get()"
                "（这里没有 worker，也没有 Broker）"]
    if correct.failed:
        return [f"你的测试在正确的任务上也失败了：{correct.failed[0]}", *_why(correct.failed[0], number, source)]
    if correct.passed == 0:
        return [f"test_ex{number}.py 里没有找到测试：测试函数的名字要以 test_ 开头"]
    missed = [variant.hint for variant, run in zip(variants, broken, strict=True) if run.exit_code == 0]
    if missed and number == 3 and "tzinfo" not in source and "ZoneInfo" not in source:
        missed.append(_NAIVE)
    return missed


@exercises.register(1)
def split_batches_tested(ns: dict) -> list[str]:
    return check(ns, 1)


@exercises.register(2)
def fetch_rate_tested(ns: dict) -> list[str]:
    return check(ns, 2)


@exercises.register(3)
def schedule_tested(ns: dict) -> list[str]:
    return check(ns, 3)


def write_files(folder: Path) -> None:
    """The exercise section's first cell: exercise_tasks.py, conftest.py and pytest.ini in
    ``folder`` (made again from scratch: Run All starts from the beginning)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "exercise_tasks.py").write_text(TASKS, encoding="utf-8")
    (folder / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (folder / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
