"""What ``produce`` and ``tail`` share: their connection flags, clients that give up on an
unreachable broker after ``--timeout-s``, and the error that ends them."""

import argparse
import os
from collections.abc import Callable

from kafka.errors import KafkaError

from worker.settings.kafka_connection import KafkaConnectionSettings

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"


class KafkaIOError(RuntimeError):
    """``produce`` or ``tail`` cannot go on (an unreachable broker, failed sends): exit 1."""


def _bootstrap_default() -> str:
    return os.environ.get("EUROVOC_BOOTSTRAP_SERVERS") or os.environ.get(
        "KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP
    )


def add_topic_flags(parser: argparse.ArgumentParser) -> None:
    """``--topic``, and how to reach its brokers: ``--bootstrap-servers``, ``--timeout-s``."""
    parser.add_argument("--topic", required=True)
    parser.add_argument(
        "--bootstrap-servers", default=_bootstrap_default(),
        help="HOST:PORT (default: $EUROVOC_BOOTSTRAP_SERVERS, $KAFKA_BOOTSTRAP or %(default)s)",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=10.0, help="Give up on an unreachable broker after this."
    )


def connection(bootstrap: str, timeout_s: float) -> KafkaConnectionSettings:
    """The connection settings of these flags (``worker.kafka.topics`` takes them)."""
    return KafkaConnectionSettings(bootstrap_servers=bootstrap,
                                   request_timeout_ms=max(1000, int(timeout_s * 1000)))


def connect(factory: Callable[..., object], bootstrap: str, timeout_s: float, **config):
    """A kafka-python client of ``factory`` (``KafkaProducer``, ``KafkaConsumer``), or
    :class:`KafkaIOError` once no broker answered within ``timeout_s``."""
    try:
        return factory(
            bootstrap_servers=bootstrap,
            bootstrap_timeout_ms=int(timeout_s * 1000),
            request_timeout_ms=max(int(timeout_s * 1000), 5000),
            **config,
        )
    except KafkaError as exc:
        raise KafkaIOError(f"cannot reach Kafka at {bootstrap} within {timeout_s:g} s: {exc}") from exc
