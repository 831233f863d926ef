"""HTTP endpoints on their own thread: ``/metrics``, ``/healthz``, ``/readyz``; and the wait of a
tool that starts workers for their ``/readyz``."""

import logging
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


class HealthServer:
    """Serves, on a daemon thread of its own, ``/metrics`` (the Prometheus text format of
    ``registry``), ``/healthz`` and ``/readyz`` (200 or 503 with the reason: ``HealthState``);
    port 0 picks a free port (``port`` tells which)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, state: HealthState):
        server_state = state

        class Handler(BaseHTTPRequestHandler):
            """One GET of an endpoint; no access log."""

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

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
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
