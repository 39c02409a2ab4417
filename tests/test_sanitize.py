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


def test_report_ids_files_and_error_ids_are_named_for_what_they_are():
    report, task = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d", "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
    assert sanitize(f"302 -> /reports/{report}/") == "302 -> /reports/REPORT-ID/"
    assert sanitize(f"report {report} visible to the worker: True") == "report REPORT-ID visible to the worker: True"
    assert sanitize(f'filename="report-{report}-{task[:8]}.csv"') == 'filename="report-REPORT-ID-TASK.csv"'
    assert sanitize(f"Task reports.tasks.generate_report[{task}]") == "Task reports.tasks.generate_report[TASK-ID]"
    assert sanitize("report failed, error id 0badc0de") == "report failed, error id ERROR-ID"
    assert sanitize("错误编号: 0badc0de") == "错误编号: ERROR-ID"
    assert sanitize("checksum 0badc0de") == "checksum 0badc0de"  # unlabelled hex stays


def test_billiard_job_numbers():
    line = "WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL) Job: 4."
    assert sanitize(line) == "WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL) Job: N."
