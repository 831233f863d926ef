"""The watchdog: the worker never looks healthy while doing nothing useful, and always exits."""

import logging
import os
import time
from collections.abc import Callable

from worker.exit_codes import ExitCode
from worker.pipeline.in_flight import InFlightRegistry
from worker.pipeline.processor import StreamProcessor
from worker.pipeline.progress import Progress
from worker.runtime.http_endpoints import HealthState
from worker.runtime.logging_setup import kafka_log_throttle
from worker.runtime.metrics import WorkerMetrics
from worker.runtime.periodic import Periodic

logger = logging.getLogger(__name__)

TICK_S = 0.5
"""How often the watchdog checks."""
EXIT_GRACE_S = 5.0
"""How long past its deadline a stopping worker may take before it is ended hard."""
_OUTAGE_SAMPLES = 2  # consecutive disconnected samples that make an outage


class Watchdog(Periodic):
    """A thread of its own that checks, every :data:`TICK_S`:

    * **stall**: with work to do (documents in flight or in the backlog, consumer lag) and no
      progress (no records fetched, no batch scored, no output or dead letter acknowledged, no commit) for
      ``stall_timeout_s``, or with a loop thread that has not completed an iteration for that
      long (a call into kafka-python that never returns): log a diagnosis (the oldest in-flight
      document's stage and age, whether kafka-python's IO thread is alive, the last progress of
      each kind), turn ``/healthz`` to 503 and stop the worker with exit code 1, so that the
      orchestrator restarts it and its partitions move. This covers a wedged forward pass, a
      lost completion and a consumer that joined and then never fetched again.
    * **deadline**: once a stop is requested, or the worker is stopping for any reason, the
      process exits at its deadline whatever is going on (``drain_timeout_s`` +
      :data:`EXIT_GRACE_S` after the stop was requested; :data:`EXIT_GRACE_S` after a stall or
      an error in the loop): kafka-python calls (``consumer.close()`` among them) can block
      without a timeout.
    * **broker connectivity**: ``eurovoc_broker_connected``, 1 while the consumer or the
      producer has a connection to a broker (an idle consumer may reconnect long after the
      producer did); an outage is logged once when it starts and once when it ends
      (kafka-python's own repeated errors are silenced meanwhile).

    ``exit`` and ``clock`` are test seams (``os._exit``, ``time.monotonic``).
    """

    def __init__(
        self,
        processor: StreamProcessor,
        consumer,
        registry: InFlightRegistry,
        *,
        stall_timeout_s: float,
        progress: Progress,
        health: HealthState,
        metrics: WorkerMetrics,
        producer=None,
        exit: Callable[[int], None] = os._exit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._processor = processor
        self._consumer = consumer
        self._producer = producer
        self._registry = registry
        self._stall_timeout_s = stall_timeout_s
        self._progress = progress
        self._health = health
        self._metrics = metrics
        self._exit = exit
        self._clock = clock
        self._deadline: tuple[float, int, str] | None = None
        self._disconnected = 0
        self._outage_since: float | None = None
        super().__init__("eurovoc-watchdog", TICK_S, stop_wait_s=2 * TICK_S)

    def arm(self, deadline: float, exit_code: int, why: str) -> None:
        """Exit with ``exit_code`` at ``deadline`` (monotonic) unless the process ended before;
        an earlier deadline wins. Two stores: safe from a signal handler."""
        if self._deadline is None or deadline < self._deadline[0]:
            self._deadline = (deadline, exit_code, why)

    def tick(self) -> None:
        self.check(self._clock())  # what it raises is logged and the thread goes on (Periodic)

    def check(self, now: float) -> None:
        """One round of checks (the thread calls it; tests call it with their own clock)."""
        if self._deadline is not None and now >= self._deadline[0]:
            _, exit_code, why = self._deadline
            logger.error("%s: exiting now (exit %d); uncommitted work is read again by the next "
                         "owner", why, exit_code, extra={"event": "hard_exit"})
            logging.shutdown()
            self._exit(exit_code)
            return
        if self._health.stopping and self._deadline is None:
            self._arm_stop_deadline(now)
        self._sample_connectivity(now)
        if self._health.failure is None and not self._health.stopping:  # stopping: deadline
            problem = self._stalled(now)
            if problem is not None:
                self._on_stall(problem, now)

    def _arm_stop_deadline(self, now: float) -> None:
        """A stop however it came (a signal arms its own deadline; a delivery failure, a fenced
        producer or an error in the loop do not): the drain, the last commit and the
        consumer's close end by the drain deadline + :data:`EXIT_GRACE_S`, or, with nothing to
        drain (no stop was requested: the loop raised), :data:`EXIT_GRACE_S` from now."""
        drain_deadline = self._processor.drain_deadline
        self.arm((now if drain_deadline is None else drain_deadline) + EXIT_GRACE_S,
                 int(ExitCode.FATAL), "the stopping worker did not finish within its deadline")

    # -- stalls ---------------------------------------------------------------------------

    def _stalled(self, now: float) -> str | None:
        last_tick = self._health.last_tick
        if last_tick is not None and now - last_tick > self._stall_timeout_s:
            return f"the loop thread has not completed an iteration for {now - last_tick:.1f}s"
        idle_for = now - self._progress.latest()
        if idle_for > self._stall_timeout_s and self._processor.has_work():
            return f"no progress for {idle_for:.1f}s with work to do"
        return None

    def _on_stall(self, problem: str, now: float) -> None:
        logger.error("stalled: %s; %s", problem, self.diagnosis(now),
                     extra={"event": "stalled"})
        self._health.failure = f"stalled: {problem}"
        self._processor.request_stop(f"stalled: {problem}", ExitCode.FATAL)
        self.arm(now + EXIT_GRACE_S, int(ExitCode.FATAL), "the stalled worker did not stop")

    def diagnosis(self, now: float) -> str:
        try:
            oldest = self._registry.oldest()
            in_flight = self._registry.count()
        except RuntimeError:  # the loop thread changed the registry meanwhile
            oldest, in_flight = None, -1
        parts = [f"{in_flight} documents in flight, consumer lag {self._processor.lag}"]
        if oldest is not None:
            source = oldest.source
            parts.append(
                f"oldest in flight: {source.topic}/{source.partition}@{source.offset} in stage "
                f"{oldest.stage.value} for {now - oldest.stage_since:.1f}s (read "
                f"{now - oldest.received_at:.1f}s ago)")
        parts.append("kafka-python IO thread "
                     + ("alive" if self._consumer.io_thread_alive() else "DEAD"))
        parts.append(f"last progress: {self._progress.describe(now)}")
        return "; ".join(parts)

    # -- connectivity ---------------------------------------------------------------------

    def _sample_connectivity(self, now: float) -> None:
        connected = self._consumer.connected() or (
            self._producer is not None and self._producer.connected())
        self._metrics.broker_connected.set(1 if connected else 0)
        if connected:
            self._disconnected = 0
            if self._outage_since is not None:
                logger.warning("Kafka reachable again after %.1fs", now - self._outage_since,
                               extra={"event": "broker_reachable",
                                      "outage_seconds": round(now - self._outage_since, 1)})
                self._outage_since = None
                kafka_log_throttle.quiet = False
            return
        self._disconnected += 1
        if self._disconnected == _OUTAGE_SAMPLES:
            self._outage_since = now - (_OUTAGE_SAMPLES - 1) * TICK_S
            kafka_log_throttle.quiet = True
            logger.error("Kafka unreachable: no connection to any broker; waiting for it "
                         "(kafka-python's errors are silenced until it is back)",
                         extra={"event": "broker_unreachable"})
