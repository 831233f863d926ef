"""The one place that composes a worker: settings → logs → metrics → engine → sink → loop → signals.

Start-up order matters: the model is loaded (and warmed up) *before* the consumer joins its group,
so no partition is assigned to a member that cannot process it yet.

Exit codes: 0 stopped cleanly (SIGTERM/SIGINT, drained and committed); 1 fatal error (engine
died, a delivery failed for good, Kafka unreachable); 2 invalid configuration (including Kafka
refusing the credentials or a broker certificate that is not trusted);
3 dead-letter limit tripped. A second SIGTERM/SIGINT exits at once with 128 + signal number
(at-least-once still holds: unfinished work was never committed).
"""

import logging
import os
import signal
import time
from collections.abc import Callable

from kafka.errors import KafkaError

from worker.config import WorkerSettings
from worker.consumer_loop import ConsumerLoop, ExitCode, Outcome
from worker.engine_config import EngineSettings
from worker.health import HealthServer, HealthState
from worker.kafka_access import KafkaAccessDenied, KafkaUnreachable, check_kafka_access
from worker.kafka_clients import build_consumer, build_producer
from worker.logging_setup import setup_logging
from worker.metrics import WorkerMetrics
from worker.rebalance import QueueingRebalanceListener
from worker.sink import Sink

logger = logging.getLogger(__name__)

EngineFactory = Callable[[EngineSettings, WorkerMetrics], object]


def _default_engine_factory(settings: EngineSettings, metrics: WorkerMetrics):
    from worker.engine import InferenceEngine

    return InferenceEngine.from_settings(settings, metrics)


class _Signals:
    """First SIGTERM/SIGINT: graceful stop. Second: exit at once."""

    def __init__(self, loop: ConsumerLoop) -> None:
        self._loop = loop
        self._count = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "_Signals":
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame) -> None:
        self._count += 1
        name = signal.Signals(signum).name
        if self._count > 1:
            os.write(2, f'{{"level":"ERROR","msg":"second {name}: exiting at once"}}\n'.encode())
            os._exit(128 + signum)
        self._loop.request_stop(f"received {name}")


def run_worker(
    settings: WorkerSettings,
    *,
    engine_factory: EngineFactory | None = None,
    metrics: WorkerMetrics | None = None,
    configure_logging: bool = True,
) -> int:
    """Run a worker until it is stopped; return the process exit code."""
    if configure_logging:
        setup_logging(settings.log_level, settings.log_format)
    started = time.monotonic()
    logger.info("starting worker %s", settings.worker_id,
                extra={"event": "start", "settings": settings.redacted()})
    metrics = metrics or WorkerMetrics()
    health = HealthState(settings.health_stall_s)
    server = None
    engine = None
    sink = None
    try:
        if settings.metrics_port >= 0:
            server = HealthServer(
                settings.metrics_host, settings.metrics_port, metrics.registry, health
            ).start()
            logger.info("serving /metrics, /healthz, /readyz on port %d", server.port,
                        extra={"event": "http_listening", "port": server.port})
        # Credentials and trust first: a refused login is a configuration error, and should not
        # wait for the model to load (minutes on a GPU) to be reported.
        try:
            check_kafka_access(settings, settings.worker_id)
        except KafkaAccessDenied as exc:
            return _finish(Outcome(ExitCode.CONFIG, f"Kafka at {settings.bootstrap_servers}: {exc}"))
        except KafkaUnreachable as exc:
            return _finish(Outcome(ExitCode.FATAL, str(exc)))
        engine = (engine_factory or _default_engine_factory)(settings.engine_settings(), metrics)
        engine.start()
        health.engine_healthy = engine.healthy
        health.model_loaded = True
        logger.info("model loaded in %.1fs", time.monotonic() - started,
                    extra={"event": "model_loaded"})
        try:
            sink = Sink(build_producer(settings))
            consumer = build_consumer(settings)
        except KafkaError as exc:
            return _finish(Outcome(ExitCode.FATAL,
                                   f"cannot connect to Kafka at {settings.bootstrap_servers}: "
                                   f"{exc!r}"))
        loop = ConsumerLoop(settings, consumer, sink, engine, metrics,
                            QueueingRebalanceListener(), health)
        with _Signals(loop):
            outcome = loop.run()
        return _finish(outcome)
    finally:
        # Short timeouts: exit within drain_timeout_s + 5 s. Everything committed was already
        # acknowledged; what the producer still holds is uncommitted and will be read again.
        if sink is not None:
            sink.close(timeout=0.5)
        if engine is not None:
            try:
                engine.stop(timeout=0.5)
            except Exception:  # noqa: BLE001
                logger.warning("engine stop failed", exc_info=True)
        if server is not None:
            server.stop()


def _finish(outcome: Outcome) -> int:
    level = logging.INFO if outcome.exit_code == ExitCode.OK else logging.ERROR
    logger.log(level, "worker stopped: %s (exit %d)", outcome.message, int(outcome.exit_code),
               extra={"event": "stopped", "exit_code": int(outcome.exit_code),
                      "reason": outcome.message})
    return int(outcome.exit_code)
