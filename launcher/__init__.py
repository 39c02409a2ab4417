"""Start and stop the course's processes (broker, Celery workers, ...) for
notebooks, tests and ``make lab``. Small on purpose: no Celery logic here.

    >>> import launcher
    >>> broker = launcher.ensure_broker()          # REDIS_URL, 6379, or embedded Valkey
    >>> worker = launcher.start_worker("demo_tasks.tasks", broker=broker)
    >>> worker.display                             # the command that starts the same in a terminal
    >>> worker.show(10)                            # the tail of its log, as a terminal shows it
    >>> worker.stop()                              # warm: running tasks finish first
    >>> launcher.stop_all(verbose=True)            # also runs at exit
"""

from .broker import DEFAULT_URL, Broker, BrokerError, check_broker, ensure_broker, free_port, ping, start_embedded
from .celery_procs import FAST_FLAGS, celery_command, connection_errors, start_celery, start_worker
from .chapter import Chapter, prepare_chapter
from .django_procs import manage, start_beat, start_django_server
from .flower import start_flower
from .procs import PortInUse, Proc, ProcessError, on_stop, running, stop_all, stop_together, wait_for
from .sanitize import sanitize
from .services import (
    BotReceiverProc,
    CrawlSiteProc,
    FlakyServiceProc,
    SmtpServerProc,
    start_bot_receiver,
    start_crawl_site,
    start_flaky_service,
    start_smtp_server,
)

__all__ = [
    "DEFAULT_URL", "FAST_FLAGS", "BotReceiverProc", "Broker", "BrokerError", "Chapter", "CrawlSiteProc",
    "FlakyServiceProc", "PortInUse", "Proc", "ProcessError", "SmtpServerProc", "celery_command", "check_broker",
    "connection_errors", "ensure_broker", "free_port", "manage", "on_stop", "ping", "prepare_chapter", "running",
    "sanitize", "start_beat", "start_bot_receiver", "start_celery", "start_crawl_site", "start_django_server",
    "start_embedded", "start_flaky_service", "start_flower", "start_smtp_server", "start_worker", "stop_all",
    "stop_together", "wait_for",
]
