"""/healthz, /readyz and /metrics (worker.runtime.http_endpoints) with a fake clock and a real HTTP server."""

import contextlib
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from worker.runtime.http_endpoints import (
    _BUSY,
    HealthServer,
    HealthState,
    WorkerNotReady,
    wait_until_ready,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_live_while_the_loop_iterates_and_not_once_it_stalls():
    clock = Clock()
    state = HealthState(stall_after_s=5, clock=clock)
    assert state.live() == (True, "starting")  # model loading: the loop has not started
    state.tick()
    clock.now += 4.9
    assert state.live()[0]
    state.tick()  # an idle or fully paused loop still ticks
    clock.now += 5.5
    ok, reason = state.live()
    assert not ok and "stalled for 5.5s" in reason


def test_not_live_when_the_engine_died():
    state = HealthState(stall_after_s=5, clock=Clock())
    state.tick()
    state.model_loaded = True
    state.engine_healthy = lambda: False
    assert state.live() == (False, "inference engine is not running")


def test_ready_while_the_model_is_loaded_and_the_member_holds_its_partitions():
    state = HealthState(stall_after_s=5, clock=Clock())
    assert not state.ready()[0]
    state.model_loaded = True
    assert state.ready() == (False, "not a member of the consumer group (joining, or "
                                    "membership lost)")
    state.member = True
    assert state.ready() == (True, "ok")
    state.stopping = True
    assert state.ready() == (False, "stopping")


def test_not_live_once_the_watchdog_found_a_stall():
    state = HealthState(stall_after_s=5, clock=Clock())
    state.tick()
    state.failure = "stalled: no progress for 121.0s with work to do"
    assert state.live() == (False, "stalled: no progress for 121.0s with work to do")


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served():
    clock = Clock()
    state = HealthState(stall_after_s=5, clock=clock)
    registry = CollectorRegistry()
    Counter("eurovoc_documents_consumed", "consumed", registry=registry).inc(3)
    server = HealthServer("127.0.0.1", 0, registry, state).start()
    yield server.port, state, clock
    server.stop()


def test_http_endpoints_answer_503_on_a_stalled_loop(served):
    port, state, clock = served
    state.tick()
    state.model_loaded = True
    assert _get(port, "/healthz") == (200, "ok\n")
    assert _get(port, "/readyz")[0] == 503
    state.member = True
    assert _get(port, "/readyz") == (200, "ok\n")
    clock.now += 60
    status, body = _get(port, "/healthz")
    assert status == 503 and "stalled" in body
    status, body = _get(port, "/metrics")
    assert status == 200 and "eurovoc_documents_consumed_total 3.0" in body
    assert _get(port, "/nope")[0] == 404


def test_wait_until_ready_returns_once_readyz_answers_200(served):
    port, state, _ = served
    state.tick()
    state.model_loaded = True
    threading.Timer(0.3, lambda: setattr(state, "member", True)).start()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        wait_until_ready(port, sleeper, timeout_s=10, interval_s=0.05)
        assert state.member
        state.member = False
        with pytest.raises(WorkerNotReady, match="not ready within 0.3 s"):
            wait_until_ready(port, sleeper, timeout_s=0.3, interval_s=0.05)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_wait_until_ready_fails_at_once_when_the_worker_exits(served):
    port, _, _ = served
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    exited.wait()
    with pytest.raises(WorkerNotReady, match="exited with code 2"):
        wait_until_ready(port, exited, timeout_s=30)


@pytest.fixture
def bounded():
    """A server whose connections end after 0.5 s, at most 3 of them at once."""
    state = HealthState(stall_after_s=5, clock=Clock())
    server = HealthServer("127.0.0.1", 0, CollectorRegistry(), state, timeout_s=0.5,
                          max_connections=3).start()
    yield server.port
    server.stop()


def _idle_client(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _ended_after(client: socket.socket) -> float:
    """Seconds until the server ended the connection (reading its end of the stream)."""
    started = time.monotonic()
    while client.recv(4096):
        pass
    return time.monotonic() - started


def test_an_idle_connection_is_closed_after_the_time_out(bounded):
    with _idle_client(bounded) as client:
        took = _ended_after(client)
    assert 0.4 <= took < 3.0


def test_a_client_that_sends_a_byte_at_a_time_is_closed_at_the_same_deadline(bounded):
    """The time-out bounds the whole connection, not each read: a slow drip does not reset it."""
    with _idle_client(bounded) as client:
        started = time.monotonic()
        with contextlib.suppress(OSError):  # the server shut it down mid-drip
            for byte in b"GET /healthz HTTP/1.0\r\n" * 10:
                client.send(bytes([byte]))
                time.sleep(0.05)  # the drip itself, not a wait for the server
        took = time.monotonic() - started + _ended_after(client)
    assert 0.4 <= took < 3.0


def test_healthz_answers_while_idle_clients_hang_around(bounded):
    idle = [_idle_client(bounded) for _ in range(2)]
    try:
        started = time.monotonic()
        assert _get(bounded, "/healthz") == (200, "starting\n")
        assert time.monotonic() - started < 0.4  # not after the idle ones were closed
    finally:
        for client in idle:
            client.close()


def test_connections_beyond_the_cap_are_refused_without_a_thread(bounded):
    idle = [_idle_client(bounded) for _ in range(3)]
    try:
        _wait_for_handler_threads(3)  # the serving thread accepts them one by one
        with _idle_client(bounded) as refused:
            started = time.monotonic()
            refused.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := refused.recv(4096):
                reply += chunk
            assert time.monotonic() - started < 0.4  # at once, not at the time-out
        assert reply == _BUSY and _handler_threads() == 3
    finally:
        for client in idle:
            client.close()
    _wait_for_handler_threads(0)  # their threads read the end of the stream and ended
    assert _get(bounded, "/healthz")[0] == 200  # served again once they are gone


def _handler_threads() -> int:
    """Threads serving a connection (socketserver names them Thread-N (process_request_thread))."""
    return sum("process_request_thread" in thread.name for thread in threading.enumerate())


def _wait_for_handler_threads(count: int) -> None:
    deadline = time.monotonic() + 5
    while _handler_threads() != count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _handler_threads() == count
