"""The measured timings, as Markdown tables (for the README, the instructor's guide
and `make timings`):

    python -m tests.timings

1. per chapter, under `make lab` conditions (a lab's kernel beside other chapters
   and a terminal worker): Run All and the exercise checks run as a learner retries
   them — written by the learner-mode tests (tests/learner_mode.py, ``.timings/chNN.json``);
2. the suite's time budget per chapter from the last `make test`
   (tests/budget.py, ``.timings/budget.json``).
"""

from __future__ import annotations

import json
import sys

from tests.budget import CI_BUDGET, OUTPUT
from tests.chapters import CHAPTERS
from tests.learner_mode import TIMINGS


def learner_table() -> list[str]:
    lines = ["| 章 | notebook | 全部运行（秒） | 练习检查 ×4 情形（秒） | 测于 |", "|---|---|---:|---:|---|"]
    for chapter in CHAPTERS:
        path = TIMINGS / f"ch{chapter.nn}.json"
        if chapter.number is None or not path.exists():
            continue
        row = json.loads(path.read_text())
        lines.append(f"| {chapter.nn} | `{row['notebook']}` | {row['run_all_s']:.0f} | "
                     f"{row.get('exercise_checks_s', 0):.0f} | {row['measured']}, {row['cores']} 核 |")
    return lines


def budget_table() -> list[str]:
    if not OUTPUT.exists():
        return ["(no `make test` measured yet: .timings/budget.json is missing)"]
    data = json.loads(OUTPUT.read_text())
    lines = [f"`make test`：{data['wall_seconds']:.0f} 秒（{data['cores']} 核；`.ci/run` 的预算 {CI_BUDGET:.0f} 秒）",
             "", "| 预算行 | 占用的墙钟时间（秒） | 测试时间合计（秒） | 预算（秒） |", "|---|---:|---:|---:|"]
    for row in data["rows"]:
        budget = f"{row['budget']:g}" if row["budget"] else "—"
        lines.append(f"| {row['line']} | {row['wall_share']:.0f} | {row['test_seconds']:.0f} | {budget} |")
    return lines


def main() -> int:
    print("\n".join([*learner_table(), "", *budget_table()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
