"""Flower, Celery's web dashboard, as a background process.

Started the Celery 5 way, global options *before* the subcommand::

    FLOWER_BASIC_AUTH="$(cat .secrets/flower-basic-auth)" celery -A APP --broker=URL flower --address=127.0.0.1 --port=N

Basic auth is on by default, with the password generated for this
installation (``launcher.credentials.flower_auth()``: FLOWER_BASIC_AUTH, else
``.secrets/flower-basic-auth``). Flower reads it from the environment variable
``FLOWER_BASIC_AUTH``, never from its arguments, which `ps` shows to every user
of the machine; for the same reason a broker URL with a password goes in
``CELERY_BROKER_URL``, not ``--broker``. The dashboard listens on 127.0.0.1 only.

``article_command()`` builds the article's order instead
(``celery -A APP flower --broker=URL``), in which Celery 5 ignores ``--broker``:
chapter 04 starts it on purpose to show what Flower then connects to.

Only command lines and readiness live here; what Flower shows is Flower's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from .broker import broker_url_of, free_port
from .celery_procs import celery_settings
from .credentials import flower_auth
from .paths import REPO_ROOT
from .procs import Proc, http_answers

ADDRESS = "127.0.0.1"


def has_password(url: str) -> bool:
    return urlsplit(url).password is not None


def command(app: str, broker_url: str, *, port: int = 5555, address: str = ADDRESS,
            extra_args: Sequence[str] = (), article_order: bool = False) -> list[str]:
    """The arguments after ``celery``. Celery 5 order: ``-A APP --broker=URL flower ...``.

    A broker URL with a password is left out (start_flower passes it in
    ``CELERY_BROKER_URL``, which Celery reads first). ``article_order=True``
    puts ``--broker`` after ``flower``, as the article does; Celery 5 then
    ignores it and the app's own broker setting wins."""
    broker_opt = [f"--broker={broker_url}"]
    args = ["-A", app]
    if article_order:
        args += ["flower", *broker_opt]
    else:
        args += [*([] if has_password(broker_url) else broker_opt), "flower"]
    args += [f"--address={address}", f"--port={port}"]
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


def start_flower(app: str, *, broker=None, port: int | None = None, auth: bool = True,
                 user: str | None = None, password: str | None = None,
                 extra_args: Sequence[str] = (), article_order: bool = False,
                 env: dict | None = None, name: str = "flower", cwd: str | None = None,
                 timeout: float = 30.0) -> FlowerProc:
    """Start Flower for ``app`` and wait until its HTTP port answers.

    ``broker``: a Broker or a URL (default: REDIS_URL, else redis://127.0.0.1:6379/0).
    ``auth``: basic auth (in FLOWER_BASIC_AUTH) with ``flower_auth()`` unless
    ``user``/``password`` are given; ``auth=False`` starts it without (chapter 04
    shows why not to). ``env``: extra variables for the process (e.g. the app's
    REDIS_URL). Fails fast, with the end of its log, if Flower exits while starting."""
    url = broker_url_of(broker)
    port = port or free_port(ADDRESS)
    args = command(app, url, port=port, extra_args=extra_args, article_order=article_order)
    # Flower reads every FLOWER_<OPTION> variable as an option (FLOWER_BASIC_AUTH,
    # FLOWER_UNAUTHENTICATED_API, ...): only those set here get through (launcher.shown).
    settings = celery_settings(app, url)
    basic_auth = None
    if auth:
        default_user, default_password = flower_auth()
        basic_auth = (user or default_user, password or default_password)
        settings["FLOWER_BASIC_AUTH"] = ":".join(basic_auth)  # shown as where it is read from
    if has_password(url) and not article_order:
        settings["CELERY_BROKER_URL"] = url
    settings.update(env or {})
    proc = FlowerProc(name, [sys.executable, "-m", "celery", *args], settings=settings, cwd=cwd or REPO_ROOT)
    proc.url = f"http://{ADDRESS}:{port}"
    proc.auth = basic_auth
    proc.port = port
    proc.broker_url = url
    proc.article_order = article_order

    # Ours, not just anyone's: this process listens on the port, and answers HTTP there.
    proc.wait_until_listening(port, timeout, answers=lambda: proc.answers(0.5),
                              advice=f"Does `celery -A {app}` import?")
    return proc
