"""The course's measurement and fault instruments: what the chapters use to
provoke, record and measure what Celery does -- not Celery code to copy.

    bad_inputs.py   chapter 07: each bad input provoked against a real worker, timed
    retry_stats.py  chapter 07: many calls sent, their outcomes counted
    task_events.py  chapter 08: a recorder of real task events (who ran what, when)
    parallelism.py  chapter 08: speed-ups and latencies measured with real workers
    mail_bench.py   chapter 09: mail throughput and duplicates under forced retries, with real processes
    faults.py       chapter 12: faults injected into real workers and brokers, every task counted
    tables.py       results as HTML tables a learner can read (CJK included)
"""
