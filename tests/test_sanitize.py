from launcher import sanitize


def test_sanitize_replaces_what_changes_between_runs():
    line = ("[2026-11-24 04:30:01,123: INFO/ForkPoolWorker-2] Task demo_tasks.tasks.add"
            "[0f8fad5b-d9cb-469f-a165-70867728950e] succeeded in 0.0012s: 8")
    assert sanitize(line) == ("[TIME: INFO/ForkPoolWorker-N] Task demo_tasks.tasks.add"
                              "[TASK-ID] succeeded in DURATION: 8")
    assert sanitize("w1@my-laptop.local ready.") == "w1@HOST ready."
    assert sanitize("redis://127.0.0.1:45225/0") == "redis://127.0.0.1:PORT/0"
    assert sanitize("app: tasks:0x7f3a2b1c4d50") == "app: tasks:0xADDR"


def test_sanitize_keeps_results_and_names():
    assert sanitize("task result: 8") == "task result: 8"
    assert sanitize("demo_tasks.tasks.add") == "demo_tasks.tasks.add"
