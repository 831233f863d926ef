"""HTTP endpoints on their own thread: ``/metrics``, ``/healthz``, ``/readyz``; and the wait of a
tool that starts workers for their ``/readyz``."""

import contextlib
import logging
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger(__name__)


class HealthState:
    """What ``/healthz`` and ``/readyz`` answer: written by the loop and watchdog threads (plain
    attribute stores), read by the HTTP one; ``clock`` is a test seam."""

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self._clock = clock
        self.last_tick: float | None = None
        self.model_loaded = False
        self.member = False  # the group assignment is applied and the membership not lost
        self.stopping = False
        self.failure: str | None = None  # set by the watchdog: why the worker is not healthy
        self.engine_healthy: Callable[[], bool] = lambda: True

    def tick(self, now: float | None = None) -> None:
        self.last_tick = self._clock() if now is None else now

    def live(self) -> tuple[bool, str]:
        """``/healthz``: live while the loop thread keeps completing iterations (an idle or fully
        paused worker still iterates: it keeps calling ``poll()``); not once it has not for
        ``stall_after_s`` seconds, once the watchdog found the worker stalled (work to do, no
        progress: ``worker.runtime.watchdog``), or when the inference engine has died. Before the
        loop starts (model loading): live, ``starting`` (use a startup probe for a slow first
        load)."""
        if self.failure is not None:
            return False, self.failure
        if self.last_tick is None:
            return True, "starting"
        stalled_for = self._clock() - self.last_tick
        if stalled_for > self.stall_after_s:
            return False, f"loop stalled for {stalled_for:.1f}s"
        if self.model_loaded and not self.engine_healthy():
            return False, "inference engine is not running"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """``/readyz``: ready while the model is loaded and the member holds its place in the
        group, from the moment its first assignment was applied until it loses its membership
        (evicted, partitions lost) or starts stopping."""
        if not self.model_loaded:
            return False, "model not loaded"
        if self.stopping:
            return False, "stopping"
        if not self.member:
            return False, "not a member of the consumer group (joining, or membership lost)"
        return True, "ok"


CONNECTION_TIMEOUT_S = 10.0
"""The longest one connection may stay open, request and reply included (idle or not)."""
MAX_CONNECTIONS = 32
"""Connections served at once (a thread each); more are answered 503 at once, without one."""
_BUSY_BODY = b"too many connections\n"
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: "
         + str(len(_BUSY_BODY)).encode() + b"\r\nConnection: close\r\n\r\n" + _BUSY_BODY)


class _BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server whose connections each end by a deadline (the serving thread
    shuts a connection down once it is due, so a client that sends nothing, or one byte at a
    time, holds a thread and a file descriptor for at most ``timeout_s``) and of which at most
    ``max_connections`` are served at once: one beyond is answered 503 by the serving thread
    and closed, no thread started for it."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *,
                 timeout_s: float, max_connections: int) -> None:
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._deadlines: dict[socket.socket, float] = {}
        self._refusing = False
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address) -> None:
        with self._lock:
            full = len(self._deadlines) >= self._max_connections
            if not full:
                self._deadlines[request] = time.monotonic() + self._timeout_s
        if full:
            self._refuse(request, client_address)
            return
        self._refusing = False
        super().process_request(request, client_address)

    def _refuse(self, request: socket.socket, client_address) -> None:
        if not self._refusing:
            self._refusing = True
            logger.warning("HTTP endpoint: %d connections open; refusing more (503) until one "
                           "ends (each ends within %.0fs)", self._max_connections,
                           self._timeout_s, extra={"event": "http_connections_refused",
                                                   "client": client_address[0]})
        try:
            request.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                request.recv(65536)  # what the request sent so far: closing then sends no RST
            request.send(_BUSY)
        except OSError:
            pass  # the client went away meanwhile
        self.shutdown_request(request)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(request, None)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Every round of the serving loop: shut down the connections that are due (their
        handler thread then reads the end of the stream, or fails its write, and ends)."""
        now = time.monotonic()
        with self._lock:
            due = [request for request, deadline in self._deadlines.items() if deadline <= now]
            for request in due:
                self._deadlines[request] = float("inf")  # shut down once
        for request in due:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request, client_address) -> None:
        logger.debug("HTTP connection from %s ended with an error", client_address[0],
                     exc_info=True)


class HealthServer:
    """Serves, on a daemon thread of its own, ``/metrics`` (the Prometheus text format of
    ``registry``), ``/healthz`` and ``/readyz`` (200 or 503 with the reason: ``HealthState``);
    port 0 picks a free port (``port`` tells which). Each connection is closed after
    ``timeout_s`` whatever it is doing, and at most ``max_connections`` are served at once
    (more get a 503 without a thread: ``_BoundedServer``)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, state: HealthState,
                 *, timeout_s: float = CONNECTION_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        server_state = state

        class Handler(BaseHTTPRequestHandler):
            """One GET of an endpoint (HTTP/1.0: one request per connection); no access log;
            each read and write of the connection times out after ``timeout_s``."""

            timeout = timeout_s

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._reply_check(*server_state.live())
                elif path == "/readyz":
                    self._reply_check(*server_state.ready())
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def _reply_check(self, ok: bool, text: str) -> None:
                self._reply(200 if ok else 503, (text + "\n").encode(), "text/plain")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet
                pass

        self._server = _BoundedServer((host, port), Handler, timeout_s=timeout_s,
                                      max_connections=max_connections)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
            name="eurovoc-http", daemon=True,
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "HealthServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever: forever if not started
            self._server.shutdown()
        self._server.server_close()


class WorkerNotReady(RuntimeError):
    """A worker process exited, or did not answer /readyz with 200, in time."""


def wait_until_ready(
    port: int,
    process: subprocess.Popen,
    timeout_s: float,
    *,
    host: str = "127.0.0.1",
    interval_s: float = 0.1,
) -> None:
    """Poll a worker process's ``/readyz`` until it answers 200 (for tools that start workers)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WorkerNotReady(f"the worker exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=1.0) as response:
                if response.status == 200:
                    return
        except OSError:  # not listening yet, or 503 (HTTPError is an OSError)
            pass
        time.sleep(interval_s)
    raise WorkerNotReady(f"the worker was not ready within {timeout_s:g} s")
