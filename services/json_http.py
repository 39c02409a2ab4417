"""What the course's small HTTP services share (the flaky service of chapter 07,
the bot receiver of chapter 09): a threaded server that stays quiet when a client
gives up before its answer, and a handler that answers JSON.

A client that gave up -- a task's timeout, while the service holds its answer on
purpose -- is the normal case here, not an error: nothing is printed for it, and
the answer nobody waits for is dropped.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietServer(ThreadingHTTPServer):
    """One thread per request (a held answer never blocks the others)."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (its timeout) before we answered is expected here, not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class JsonHandler(BaseHTTPRequestHandler):
    """A handler whose answers are JSON; the service prints its own line per request."""

    #: The Content-Type of every answer.
    content_type = "application/json; charset=utf-8"

    def log_message(self, format, *args) -> None:
        """Silenced: the service prints its own line per recorded request (stdout)."""

    def send_json(self, status: int, body: object) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", self.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except ConnectionError:  # the client has given up (a held answer): nobody to answer
            pass


def serve_until_stopped(server: QuietServer, ready: str, stopped: str) -> int:
    """Serve until SIGTERM or SIGINT (Ctrl-C); print ``ready`` once serving and ``stopped`` at the end.

    The server runs in a thread and the main thread waits for the signal: shutdown()
    called from a signal handler on the thread running serve_forever() would wait for itself."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    print(ready, flush=True)
    try:
        while not stop.wait(0.5):  # a timed wait: signal handlers run in between
            pass
    finally:
        server.shutdown()
        server.server_close()  # daemon request threads are not waited for: a held request ends with us
    print(stopped, flush=True)
    return 0
