"""Chapter 12's exercise checks: the learner's answer meets a real fault.

1. ``count(sent, started, finished)`` (in the notebook): from a ledger (two
   dicts task id -> how many times it started / finished) return
   ``{"once": [...], "twice": [...], "lost": [...]}``, ids in the order sent.
   The check feeds fixed ledgers (a task that started twice and finished once
   is "once"; three finishes is "twice" -- "more than once"), then the ledgers
   of the chapter's own runs (``kills``, ``children``, ``shutdowns`` in the
   notebook, when they are there), each compared with instruments.faults.Run.
2. ``SETTINGS_2`` (settings as after ``--``) and ``ENV_2`` (the worker's
   environment): a container's stop (SIGTERM, SIGKILL after a grace period
   shorter than the tasks) loses nothing, and the worker is gone by itself
   before the SIGKILL, so the interrupted tasks go back to the queue at once
   instead of after the visibility timeout. The check runs instruments.faults'
   container-stop scenario with them on a Valkey and workers of its own.
3. ``OPTIONS_3`` and ``SETTINGS_3``: the worker options and settings with which
   no short task waits behind a long one in another process's hands. The check
   runs the prefetch scenario with them: it passes when worker a held none.

Checks 2 and 3 start everything afresh (their own broker and workers, stopped
at the end), so the same answer gets the same verdict every time.
"""

from __future__ import annotations

import selfcheck

exercises = selfcheck.Exercises(12)

#: Fixed ledgers for exercise 1: (sent, started, finished, expected).
COUNT_CASES = [
    (["a", "b", "c"], {"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 1, "c": 1},
     {"once": ["a", "b", "c"], "twice": [], "lost": []}),
    (["a", "b", "c"], {"a": 1, "b": 1}, {"a": 1}, {"once": ["a"], "twice": [], "lost": ["b", "c"]}),
    (["a", "b"], {"a": 2, "b": 1}, {"a": 1, "b": 1}, {"once": ["a", "b"], "twice": [], "lost": []}),
    (["a", "b", "c"], {"a": 3, "b": 2, "c": 1}, {"a": 3, "b": 2}, {"once": [], "twice": ["a", "b"], "lost": ["c"]}),
    (["c", "a", "b"], {"c": 1, "a": 1, "b": 1, "x": 1}, {"c": 1, "a": 1, "x": 1},
     {"once": ["c", "a"], "twice": [], "lost": ["b"]}),
    ([], {}, {}, {"once": [], "twice": [], "lost": []}),
]


KEYS = ("once", "twice", "lost")


def _what_is_wrong(sent: list, started: dict, finished: dict, got) -> str | None:
    """None if ``got`` is the right count of this ledger, else a one-line hint."""
    if not isinstance(got, dict) or set(got) != set(KEYS):
        return f"要返回一个字典，三个键 once、twice、lost 都要有（你返回的是 {got!r}）"
    listed = [t for key in KEYS for t in got[key]]
    if sorted(listed) != sorted(sent):
        return "sent 里的每个 id 恰好列一次，也只列它们"
    for key in KEYS:
        if list(got[key]) != [t for t in sent if t in got[key]]:
            return f"{key} 里的 id 要按发出的顺序排"
    for task_id in sent:
        done = finished.get(task_id, 0)
        right = "lost" if done == 0 else "once" if done == 1 else "twice"
        if task_id not in got[right]:
            if started.get(task_id, 0) != done:
                return (f"{task_id} 开始了 {started.get(task_id, 0)} 次、完成了 {done} 次，应该在 {right} 里："
                        "“完成几次”看 finished，不看 started")
            return f"{task_id} 完成了 {done} 次，应该在 {right} 里（完成两次及以上的都算 twice）"
    return None


@exercises.register(1)
def _count(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "count", "一个函数：从账本数出完成一次、完成两次（及以上）和丢失的任务")
    if problems:
        return problems
    count = ns["count"]
    for sent, started, finished, _ in COUNT_CASES:
        wrong = _what_is_wrong(sent, started, finished, count(list(sent), dict(started), dict(finished)))
        if wrong:
            return [f"sent={sent}, started={started}, finished={finished} 时：{wrong}"]
    runs = [run for name in ("kills", "children", "shutdowns") for run in ns.get(name) or []]
    for run in runs:
        wrong = _what_is_wrong(run.sent, run.started, run.finished,
                               count(list(run.sent), dict(run.started), dict(run.finished)))
        if wrong:
            return [f"本章“{run.title}”那次运行的账本上：{wrong}"]
    return []


def _settings(ns: dict, name: str) -> tuple[list[str], list[str]]:
    """The learner's list of settings, or problems."""
    value = ns.get(name, ...)
    problems = selfcheck.given(ns, name, "一个列表，例如 [\"task.acks_late=true\"]")
    if problems:
        return [], problems
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        return [], [f"`{name}` 要是字符串的列表，例如 [\"task.acks_late=true\"]，不是 {value!r}"]
    bad = [item for item in value if "=" not in item or "." not in item.split("=", 1)[0]]
    if bad:
        return [], [f"{bad[0]!r} 不是“分组.名字=值”的写法（例如 task.acks_late=true、worker.soft_shutdown_timeout=3）"]
    return list(value), []


@exercises.register(2)
def _container_stop(ns: dict) -> list[str]:
    settings, problems = _settings(ns, "SETTINGS_2")
    if problems:
        return problems
    env = ns.get("ENV_2", ...)
    if env is ... or env is None:
        return ["还没有答案：把 `ENV_2` 设为 worker 的环境变量的字典（不需要就写 {}）"]
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        return [f"`ENV_2` 要是字符串到字符串的字典，例如 {{\"NAME\": \"value\"}}，不是 {env!r}"]
    from instruments import faults

    grace = faults.REMAP_GRACE
    # Two tasks, both running when the stop comes, each longer than the grace.
    run = faults.run_scenario("练习 2", faults.runtime_stop(grace), settings=settings, env=env or None,
                              n=2, k=2, seconds=grace + 2)
    killed = run.notes.get("exit_code") == -9
    soft = any(item.startswith("worker.soft_shutdown_timeout") for item in settings)
    remapped = env.get("REMAP_SIGTERM") == "SIGQUIT"
    if run.lost:
        if soft and not remapped:
            return [f"丢了 {len(run.lost)} 个任务：软关闭只在冷关闭（SIGQUIT）时起作用，容器发的是 SIGTERM（温关闭），"
                    "宽限期一过就是 SIGKILL。让 worker 把 SIGTERM 当作 SIGQUIT 处理"]
        if not killed:
            return [f"丢了 {len(run.lost)} 个任务：worker 冷关闭时取消了它们（结果后端里是 RETRY），"
                    "而它们执行前就确认了，消息早已删掉。让消息在任务完成以后才确认"]
        return [f"丢了 {len(run.lost)} 个任务：它们执行前就确认了，SIGKILL 打中时消息已经删掉。"
                "让消息在任务完成以后才确认"]
    if killed:
        if soft and remapped:
            return [f"worker 还在软关闭时，宽限期（{grace:g} 秒）就到了，SIGKILL 落下：软关闭的时间要比宽限期短得多"]
        return ["一个也没丢，可 worker 是被宽限期之后的 SIGKILL 杀掉的：被打断的任务要等可见性超时"
                "（生产里默认一小时）才回来。让 SIGTERM 变成一次很快的冷关闭（可以先给任务一小段软关闭的时间），"
                "未确认的消息就会当场退回队列"]
    return []


@exercises.register(3)
def _prefetch(ns: dict) -> list[str]:
    options = ns.get("OPTIONS_3", ...)
    if options is ... or options is None:
        return ["还没有答案：把 `OPTIONS_3` 设为 worker 的命令行选项的列表（没有就写 []）"]
    if isinstance(options, str) or not all(isinstance(item, str) for item in options):
        return [f"`OPTIONS_3` 要是选项（字符串）的列表，例如 [\"--concurrency=1\"]，不是 {options!r}"]
    settings, problems = _settings(ns, "SETTINGS_3") if ns.get("SETTINGS_3") else ([], [])
    if problems:
        return problems
    from instruments import faults

    run = faults.prefetch_hostages("练习 3", options=options, settings=settings)
    if not run.held:
        return []
    if any(item.startswith("worker.prefetch_multiplier") for item in settings):
        return [f"worker a 还是扣住了 {len(run.held)} 个短任务：`--` 后面的 worker.prefetch_multiplier 没起作用——"
                "命令行选项 --prefetch-multiplier 的默认值（配置里的 4）在它之后才交给 worker。用这个选项本身"]
    if len(run.held) == 1:
        return ["worker a 还扣住了 1 个短任务：长任务一开始就确认了，空出的名额又取走一个短任务。"
                "让长任务完成以后才确认，或者让 worker 只为空闲的子进程取消息"]
    if any("fair" in item for item in options):
        return [f"worker a 还是扣住了 {len(run.held)} 个短任务：`-O fair` 从 Celery 4 起早就是默认的，它管的是主进程把"
                "已经取到的任务交给哪个子进程，不管从 Broker 预取多少"]
    return [f"worker a 扣住了 {len(run.held)} 个短任务：它替唯一的子进程预取了好几条消息"]
