"""Servers the chapters' tasks talk to, each runnable on its own
(``python -m services.NAME --port N``) and started for the chapters by
``launcher`` (e.g. ``launcher.start_flaky_service()``).

    flaky_service.py  chapter 07: an HTTP API that fails on purpose (503, hangs, slow answers)
"""
