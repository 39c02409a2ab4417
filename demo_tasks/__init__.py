"""The chapters' Celery code, one module per chapter: what a learner reads.

    tasks.py      chapters 01-04: the article's ``tasks.py`` (``add``) and what the course adds
    run_task.py   chapter 03: the article's ``run_task.py``
    periodic.py   chapter 06: a beat schedule (interval and crontab)
    retries.py    chapter 07: retries, time limits, failures
    workflows.py  chapter 08: canvas (chain, group, chord), routing, rate limits
    wordcount.py  chapter 08: the word counting its tasks do (plain Python, no Celery)
    reliability.py chapter 12: one task that writes a ledger of its starts and finishes, one that leaks
    database.py   chapter 12: database work in the Django project's worker (``-I demo_tasks.database``)

The Django project of chapters 05-06 is in ``django_demo/``; the services the
tasks talk to are in ``services/``; the course's measurements in ``instruments/``.
"""
