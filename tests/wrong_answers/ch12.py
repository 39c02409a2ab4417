"""Plausible wrong answers to chapter 12's exercises, each with a piece of the hint its check
must print (run by tests/exercise_matrix.py, in the learner-mode test of chapter 12 after Run All)."""

from tests.exercise_matrix import Wrong


def _count(classify: str, *, ids: str = "sent") -> str:
    """Exercise 1's answer with the classification ``classify`` (an expression of ``task_id``)
    over the ids ``ids``."""
    loop = f"for task_id in {ids}:"
    return ("def count(sent, started, finished):\n"
            "    out = {\"once\": [], \"twice\": [], \"lost\": []}\n"
            f"    {loop}\n"
            f"        n = {classify}\n"
            "        out[\"lost\" if n == 0 else \"once\" if n == 1 else \"twice\"].append(task_id)\n"
            "    return out\n")


WRONG = {
    1: [
        Wrong([_count("started.get(task_id, 0)")], hint="看 finished",
              why="counts starts: a task re-run after the fault looks done twice, a started-and-lost one done"),
        Wrong([_count("finished.get(task_id, 0) if finished.get(task_id, 0) < 3 else 0")],
              hint="完成两次及以上的都算 twice", why="three finishes counted as lost"),
        Wrong([_count("finished.get(task_id, 0)", ids="sorted(set(sent) | set(finished))")], hint="也只列它们",
              why="the ids of the ledger listed, not only those sent"),
        Wrong([_count("finished.get(task_id, 0)", ids="sorted(sent)")], hint="按发出的顺序",
              why="ids sorted, not in the order sent"),
    ],
    2: [
        Wrong(['SETTINGS_2 = ["task.acks_late=true"]\nENV_2 = {}'], hint="宽限期之后的 SIGKILL",
              why="nothing lost, but the tasks wait for the visibility timeout"),
        Wrong(['SETTINGS_2 = ["worker.soft_shutdown_timeout=0.5"]\nENV_2 = {}'], hint="软关闭只在冷关闭",
              why="a soft shutdown starts with SIGQUIT; a container sends SIGTERM, then SIGKILL"),
        Wrong(['SETTINGS_2 = ["worker.soft_shutdown_timeout=0.5"]\nENV_2 = {"REMAP_SIGTERM": "SIGQUIT"}'],
              hint="执行前就确认了", why="a cold shutdown cancels early-acknowledged tasks: lost, marked RETRY"),
        Wrong(['SETTINGS_2 = "task.acks_late=true"\nENV_2 = {}'], hint="字符串的列表", why="a string, not a list"),
        Wrong(['SETTINGS_2 = ["task.acks_late=true"]\nENV_2 = ["REMAP_SIGTERM=SIGQUIT"]'], hint="字典",
              why="the environment as a list"),
    ],
    3: [
        Wrong(['OPTIONS_3 = ["--prefetch-multiplier=1"]\nSETTINGS_3 = []'], hint="长任务一开始就确认了",
              why="prefetch 1 with early acknowledgement: the freed place takes a short task"),
        Wrong(['OPTIONS_3 = ["-O", "fair"]\nSETTINGS_3 = []'], hint="早就是默认",
              why="-O fair: the default since Celery 4"),
        Wrong(['OPTIONS_3 = []\nSETTINGS_3 = ["worker.prefetch_multiplier=1"]'],
              hint="命令行选项 --prefetch-multiplier",
              why="the option's default (4) wins over the setting after --"),
    ],
}
