"""Flower, Celery's web dashboard, as a background process.

Started the Celery 5 way, global options *before* the subcommand::

    celery -A APP --broker=URL flower --address=127.0.0.1 --port=N --basic-auth=USER:PASSWORD

Basic auth is on by default. The credentials come from ``FLOWER_USER`` and
``FLOWER_PASSWORD``, else the course's demo default ``course`` /
``celery-course`` (fine on your own laptop, never on a server). The dashboard
listens on 127.0.0.1 only.

``article_command()`` builds the article's order instead
(``celery -A APP flower --broker=URL``), in which Celery 5 ignores ``--broker``:
chapter 04 starts it on purpose to show what Flower then connects to.

Only command lines and readiness live here; what Flower shows is Flower's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .broker import broker_url_of, free_port
from .celery_procs import celery_env
from .procs import Proc, http_answers

#: The course's demo credentials, used when FLOWER_USER / FLOWER_PASSWORD are not set.
DEFAULT_USER = "course"
DEFAULT_PASSWORD = "celery-course"

ADDRESS = "127.0.0.1"

def credentials() -> tuple[str, str]:
    """(user, password) for --basic-auth: FLOWER_USER / FLOWER_PASSWORD, or the course default."""
    return (os.environ.get("FLOWER_USER") or DEFAULT_USER,
            os.environ.get("FLOWER_PASSWORD") or DEFAULT_PASSWORD)


def command(app: str, broker_url: str, *, port: int = 5555, address: str = ADDRESS,
            basic_auth: tuple[str, str] | None = None, extra_args: Sequence[str] = (),
            article_order: bool = False) -> list[str]:
    """The arguments after ``celery``. Celery 5 order: ``-A APP --broker=URL flower ...``.

    ``article_order=True`` puts ``--broker`` after ``flower``, as the article
    does; Celery 5 then ignores it and the app's own broker setting wins."""
    broker_opt = f"--broker={broker_url}"
    args = ["-A", app]
    if article_order:
        args += ["flower", broker_opt]
    else:
        args += [broker_opt, "flower"]
    args += [f"--address={address}", f"--port={port}"]
    if basic_auth is not None:
        user, password = basic_auth
        args.append(f"--basic-auth={user}:{password}")
    return args + list(extra_args)


def article_command(app: str, broker_url: str, **kwargs) -> list[str]:
    """The article's ``celery -A tasks flower --broker=...`` (``--broker`` is ignored)."""
    return command(app, broker_url, article_order=True, **kwargs)


class FlowerProc(Proc):
    """A running Flower. ``url`` is its address, ``auth`` its (user, password) or None."""

    url: str
    auth: tuple[str, str] | None
    port: int
    broker_url: str
    article_order: bool

    def answers(self, timeout: float = 1.0) -> bool:
        """True if the HTTP port answers at all (any status, even 401)."""
        return http_answers(self.url + "/healthcheck", timeout)


def _child_env(broker_url: str, env: dict | None) -> dict:
    # Flower reads every FLOWER_<OPTION> variable as an option (FLOWER_BASIC_AUTH,
    # FLOWER_UNAUTHENTICATED_API, ...): a learner's shell must not silently change
    # what the course starts. Only what `env` sets gets through.
    inherited = {k: v for k, v in celery_env(broker_url).items() if not k.startswith("FLOWER_")}
    inherited.update(env or {})
    return inherited


def start_flower(app: str, *, broker=None, port: int | None = None, auth: bool = True,
                 user: str | None = None, password: str | None = None,
                 extra_args: Sequence[str] = (), article_order: bool = False,
                 env: dict | None = None, name: str = "flower", cwd: str | None = None,
                 timeout: float = 30.0) -> FlowerProc:
    """Start Flower for ``app`` and wait until its HTTP port answers.

    ``broker``: a Broker or a URL (default: REDIS_URL, else redis://127.0.0.1:6379/0).
    ``auth``: basic auth with ``credentials()`` unless ``user``/``password`` are given;
    ``auth=False`` starts it without --basic-auth (chapter 04 shows why not to).
    ``env``: extra variables for the process (e.g. the app's REDIS_URL).
    Fails fast, with the end of its log, if Flower exits while starting."""
    url = broker_url_of(broker)
    port = port or free_port(ADDRESS)
    basic_auth = None
    if auth:
        default_user, default_password = credentials()
        basic_auth = (user or default_user, password or default_password)
    args = command(app, url, port=port, basic_auth=basic_auth, extra_args=extra_args,
                   article_order=article_order)
    # What a learner would type; the password is not echoed into notebooks.
    shown = [f"--basic-auth={basic_auth[0]}:***" if a.startswith("--basic-auth=") else a
             for a in args]
    proc = FlowerProc(name, [sys.executable, "-m", "celery", *args], env=_child_env(url, env),
                      cwd=cwd or os.getcwd(), display="celery " + " ".join(shown))
    proc.url = f"http://{ADDRESS}:{port}"
    proc.auth = basic_auth
    proc.port = port
    proc.broker_url = url
    proc.article_order = article_order

    # Ours, not just anyone's: this process listens on the port, and answers HTTP there.
    proc.wait_until_listening(port, timeout, answers=lambda: proc.answers(0.5),
                              advice=f"Does `celery -A {app}` import?")
    return proc
