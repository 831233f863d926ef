"""/healthz, /readyz and /metrics (worker.runtime.http_endpoints) with a fake clock and a real HTTP server."""

import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from worker.runtime.http_endpoints import (
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
