"""The one place that composes a worker.

    settings → logs → metrics and health endpoints → checkpoint manifest, Kafka access and
    topics checked → model loaded → clients → the chain of steps (``worker.pipeline.steps``)
    → the processor → watchdog, topic watch and signals → run → exit code
    (``worker.exit_codes``)

Start-up order matters: the checkpoint's manifest, the Kafka credentials and the topics are
checked before torch is imported and the model loads (a refused login, an untrusted certificate
or a missing topic fails in seconds: ``worker.kafka.access``, ``worker.kafka.topics``), and the
model is loaded (and warmed up) before the consumer joins its group, so no partition is assigned
to a member that cannot process it yet.
"""

import logging
import os
import threading
import time
from collections.abc import Callable

from kafka.errors import KafkaError, KafkaTimeoutError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay

from schemas.dead_letter import dead_letter_bytes
from schemas.manifest import read_manifest
from worker.exit_codes import ExitCode
from worker.inference.engine_settings import EngineSettings
from worker.kafka.access import KafkaAccessDenied, KafkaUnreachable, connect_admin
from worker.kafka.clients import (
    build_consumer,
    build_producer,
    producer_max_request_size,
)
from worker.kafka.topics import (
    MissingTopics,
    TopicWatch,
    ensure_topics,
    topic_max_message_bytes,
    worker_topics,
)
from worker.pipeline.dlq_policy import DlqPolicy
from worker.pipeline.in_flight import InFlightRegistry
from worker.pipeline.processor import Chain, Outcome, StreamProcessor
from worker.pipeline.progress import Progress
from worker.pipeline.steps.classify import ClassifyStep
from worker.pipeline.steps.commit import CommitStep
from worker.pipeline.steps.dead_letter import DeadLetterStep
from worker.pipeline.steps.decode import DecodeStep
from worker.pipeline.steps.produce import ProduceStep
from worker.pipeline.steps.transaction import TransactionStep
from worker.runtime.http_endpoints import HealthServer, HealthState
from worker.runtime.logging_setup import setup_logging
from worker.runtime.metrics import WorkerMetrics
from worker.runtime.periodic import call_within
from worker.runtime.signals import StopSignals
from worker.runtime.watchdog import EXIT_GRACE_S, Watchdog
from worker.settings.worker_settings import WorkerSettings

logger = logging.getLogger(__name__)

_CLOSE_S = 2.0
"""The most each closing step of the way out may take (they run one after the other)."""

EngineFactory = Callable[[EngineSettings, WorkerMetrics], object]


def _default_engine_factory(settings: EngineSettings, metrics: WorkerMetrics):
    from worker.inference.engine import InferenceEngine

    return InferenceEngine.from_settings(settings, metrics.engine)


def check_checkpoint(settings: EngineSettings) -> None:
    """The checkpoint's manifest is readable and fits the engine settings (``ValueError``
    naming the setting otherwise): before torch is even imported."""
    settings.resolve_max_length(read_manifest(settings.model).max_length)


class DeadLetterTopicTooSmall(RuntimeError):
    """The dead-letter topic cannot hold the dead letter of an accepted document (exit 2)."""


def dead_letter_record_limit(admin, settings: WorkerSettings) -> int:
    """The largest dead letter the worker sends: the producer's ``max_request_size`` and the
    dead-letter topic's ``max.message.bytes``, the smaller. Raises
    :class:`DeadLetterTopicTooSmall` when the topic cannot hold the dead letter of the largest
    accepted document (``max_message_bytes``) with its bounded key and headers whole."""
    topic = settings.kafka.dlq_topic
    topic_limit = topic_max_message_bytes(admin, topic)
    needed = dead_letter_bytes(settings.consumer.max_message_bytes)
    if topic_limit < needed:
        raise DeadLetterTopicTooSmall(
            f"dead-letter topic {topic} takes records of up to {topic_limit} bytes "
            f"(max.message.bytes), but the dead letter of the largest accepted document "
            f"(max_message_bytes={settings.consumer.max_message_bytes}) with its key and headers "
            f"takes up to {needed}: raise the topic's max.message.bytes to at least {needed}, "
            f"or lower max_message_bytes")
    return min(topic_limit, producer_max_request_size(settings))


def build_processor(settings: WorkerSettings, *, engine, consumer, producer,
                    metrics: WorkerMetrics, health: HealthState,
                    progress: Progress, max_dead_letter_bytes: int | None = None
                    ) -> StreamProcessor:
    """The chain of steps around a started engine and the two Kafka clients; dead letters are
    kept within ``max_dead_letter_bytes`` (:func:`dead_letter_record_limit`; None: the producer's
    ``max_request_size``)."""
    wakeup = threading.Event()
    engine.on_results = wakeup.set
    letters = settings.dead_letters
    policy = DlqPolicy(max_consecutive=letters.dlq_max_consecutive,
                       max_ratio=letters.dlq_max_ratio, window=letters.dlq_ratio_window)
    registry = InFlightRegistry(metrics, on_drop=policy.forget)
    interval_s = settings.consumer.commit_interval_ms / 1000
    timeout_s = settings.consumer.commit_timeout_s
    if settings.exactly_once:
        commit = produce = TransactionStep(
            producer, consumer, registry, output_topic=settings.kafka.output_topic,
            transactional_id=settings.transactional_id, interval_s=interval_s,
            timeout_s=timeout_s, metrics=metrics, progress=progress,
            renew=(lambda: transactional_producer(settings)) if own_transactional_id(settings)
            else None,
        )
    else:
        commit = CommitStep(
            registry, consumer, metadata=settings.operations.worker_id,
            interval_s=interval_s, timeout_s=timeout_s, progress=progress,
        )
        produce = ProduceStep(
            producer, commit, output_topic=settings.kafka.output_topic,
            max_buffer_bytes=settings.producer.producer_buffer_bytes, wakeup=wakeup,
            progress=progress,
        )
    dead_letters = DeadLetterStep(
        produce, policy, registry, topic=settings.kafka.dlq_topic,
        worker_id=settings.operations.worker_id, max_value_bytes=letters.dlq_max_value_bytes,
        max_record_bytes=max_dead_letter_bytes or producer_max_request_size(settings),
    )
    classify = ClassifyStep(
        engine, produce, dead_letters, max_in_flight=settings.engine.max_in_flight,
        wakeup=wakeup, progress=progress, on_labelled=dead_letters.labelled,
    )
    decode = DecodeStep(classify, dead_letters, settings.consumer.max_message_bytes)
    chain = Chain(first=decode, commit=commit, dead_letters=dead_letters)
    return StreamProcessor(settings, consumer, chain, registry, metrics=metrics, health=health,
                           progress=progress, wakeup=wakeup)


def transactional_producer(settings: WorkerSettings):
    """A producer with the worker's transactional id, registered (which aborts what a previous
    producer with the id left open, and fences it); kafka-python waits ``max_block_ms`` per
    ``init_transactions`` call, a retry goes on waiting, up to the request timeout."""
    producer = build_producer(settings)
    registering = Retrying(retry=retry_if_exception_type(KafkaTimeoutError),
                           stop=stop_after_delay(settings.kafka.request_timeout_ms / 1000),
                           reraise=True)
    try:
        registering(producer.init_transactions)
    except KafkaTimeoutError:
        producer.close(timeout=0)
        raise
    return producer


def own_transactional_id(settings: WorkerSettings) -> bool:
    """Whether the transactional id is this process's alone (derived from the pid-based
    worker_id): then only the broker, not another instance, can fence its producer."""
    return settings.producer.transactional_id is None and (
        settings.consumer.group_instance_id is None)


def _stop_on_signals(processor: StreamProcessor, watchdog: Watchdog, drain_timeout_s: float,
                     exit: Callable[[int], None] = os._exit) -> StopSignals:
    """First SIGTERM/SIGINT: graceful stop, with a hard deadline. Second: exit at once."""

    def stop(name: str) -> None:
        processor.request_stop(f"received {name}")
        watchdog.arm(time.monotonic() + drain_timeout_s + EXIT_GRACE_S, int(ExitCode.FATAL),
                     f"shutdown did not finish within drain_timeout_s + {EXIT_GRACE_S:g}s")

    return StopSignals(stop, second_exits=True, exit=exit)


def run_worker(
    settings: WorkerSettings,
    *,
    engine_factory: EngineFactory | None = None,
    metrics: WorkerMetrics | None = None,
    configure_logging: bool = True,
) -> int:
    """Run a worker until it is stopped; return the process exit code."""
    ops = settings.operations
    if configure_logging:
        setup_logging(ops.log_level, ops.log_format)
    started = time.monotonic()
    logger.info("starting worker %s", ops.worker_id,
                extra={"event": "start", "settings": settings.redacted()})
    metrics = metrics or WorkerMetrics()
    health = HealthState(ops.stall_timeout_s)
    progress = Progress(metrics)
    server = engine = admin = producer = watchdog = topic_watch = None
    try:
        if ops.metrics_port >= 0:
            server = HealthServer(ops.metrics_host, ops.metrics_port, metrics.registry,
                                  health).start()
            logger.info("serving /metrics, /healthz, /readyz on port %d", server.port,
                        extra={"event": "http_listening", "port": server.port})
        try:
            if engine_factory is None:
                check_checkpoint(settings.engine)
        except ValueError as exc:  # CheckpointError included
            return _finish(Outcome(ExitCode.CONFIG, f"invalid model or engine settings: {exc}"))
        try:
            admin = connect_admin(settings.kafka, ops.worker_id)
            ensure_topics(admin, settings)
            dead_letter_limit = dead_letter_record_limit(admin, settings)
        except (KafkaAccessDenied, MissingTopics, DeadLetterTopicTooSmall) as exc:
            return _finish(Outcome(ExitCode.CONFIG, f"Kafka at {settings.kafka.bootstrap_servers}:"
                                   f" {exc}"))
        except (KafkaUnreachable, KafkaError) as exc:
            return _finish(Outcome(ExitCode.FATAL, f"cannot reach Kafka at "
                                   f"{settings.kafka.bootstrap_servers}: {exc}"))
        metrics.broker_connected.set(1)  # the broker just answered; the watchdog samples it next
        try:
            engine = (engine_factory or _default_engine_factory)(settings.engine, metrics)
        except ValueError as exc:  # CheckpointError included
            return _finish(Outcome(ExitCode.CONFIG, f"invalid model or engine settings: {exc}"))
        engine.start()
        health.engine_healthy = engine.healthy
        health.model_loaded = True
        logger.info("model loaded in %.1fs", time.monotonic() - started,
                    extra={"event": "model_loaded"})
        try:
            producer = (transactional_producer(settings) if settings.exactly_once
                        else build_producer(settings))
            for topic in worker_topics(settings)[1:]:
                producer.partitions_for(topic)  # metadata now: send() must not wait for it
            consumer = build_consumer(settings)
        except KafkaError as exc:
            return _finish(Outcome(ExitCode.FATAL, f"cannot connect to Kafka at "
                                   f"{settings.kafka.bootstrap_servers}: {exc!r}"))
        processor = build_processor(settings, engine=engine, consumer=consumer,
                                    producer=producer, metrics=metrics, health=health,
                                    progress=progress,
                                    max_dead_letter_bytes=dead_letter_limit)
        watchdog = Watchdog(processor, consumer, processor.registry,
                            stall_timeout_s=ops.stall_timeout_s, progress=progress,
                            health=health, metrics=metrics, producer=producer).start()

        def topics_gone(missing: list[str]) -> None:
            reason = f"topic {', '.join(missing)} no longer exists (deleted while running)"
            logger.error("%s: stopping", reason, extra={"event": "topic_missing"})
            processor.request_stop(reason, ExitCode.FATAL)
            watchdog.arm(time.monotonic() + EXIT_GRACE_S, int(ExitCode.FATAL), reason)

        topic_watch = TopicWatch(admin, worker_topics(settings), topics_gone,
                                 interval_s=ops.topic_check_interval_s).start()
        with _stop_on_signals(processor, watchdog, ops.drain_timeout_s):
            outcome = processor.run()
        return _finish(outcome)
    finally:
        # Each step bounded (the threads' stops wait <= 1 s each; the rest run on a thread of
        # their own, left behind at their deadline: kafka-python's close() joins its IO thread
        # without a time-out): everything committed was acknowledged; what the producer still
        # holds is uncommitted and read again later.
        for closing in (topic_watch, watchdog):
            if closing is not None:
                closing.stop()
        for name, close in (("producer close", producer and (lambda: producer.close(timeout=0.5))),
                            ("engine stop", engine and (lambda: engine.stop(timeout=0.5))),
                            ("admin client close", admin and admin.close),
                            ("metrics server stop", server and server.stop)):
            if close:
                call_within(name, close, _CLOSE_S)


def _finish(outcome: Outcome) -> int:
    level = logging.INFO if outcome.exit_code == ExitCode.OK else logging.ERROR
    logger.log(level, "worker stopped: %s (exit %d)", outcome.message, int(outcome.exit_code),
               extra={"event": "stopped", "exit_code": int(outcome.exit_code),
                      "reason": outcome.message})
    return int(outcome.exit_code)
