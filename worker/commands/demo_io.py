"""``produce`` and ``tail``: publish documents to a topic and print decoded label outputs."""

import argparse
import itertools
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from pydantic import ValidationError
from tqdm import tqdm

from schemas.codec import encode_message
from schemas.document_files import DocumentFileError, read_documents
from schemas.labels import LabelsMessage

logger = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"


class DemoIOError(RuntimeError):
    """A demo command cannot go on (unreachable broker, failed sends)."""


def _bootstrap_default() -> str:
    return os.environ.get("EUROVOC_BOOTSTRAP_SERVERS") or os.environ.get(
        "KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP
    )


def _connect(factory: Callable[..., object], bootstrap: str, timeout_s: float, **config):
    try:
        return factory(
            bootstrap_servers=bootstrap,
            bootstrap_timeout_ms=int(timeout_s * 1000),
            request_timeout_ms=max(int(timeout_s * 1000), 5000),
            **config,
        )
    except KafkaError as exc:
        raise DemoIOError(f"cannot reach Kafka at {bootstrap} within {timeout_s:g} s: {exc}") from exc


def ensure_topic(bootstrap: str, topic: str, partitions: int, timeout_s: float) -> None:
    """Create ``topic`` with ``partitions`` partitions unless it exists."""
    admin = _connect(KafkaAdminClient, bootstrap, timeout_s)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
        logger.info("created topic %s with %d partitions", topic, partitions)
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def produce(
    path: Path,
    topic: str,
    bootstrap: str,
    *,
    limit: int | None = None,
    partitions: int | None = None,
    timeout_s: float = 10.0,
) -> int:
    """Publish the documents of ``path`` (validated first, key = id); return how many were acked."""
    documents = read_documents(path)
    first = next(documents, None)  # fail on a bad file before touching the broker
    if first is None:
        raise DocumentFileError(f"{path}: no documents")
    if partitions:
        ensure_topic(bootstrap, topic, partitions, timeout_s)
    producer = _connect(
        KafkaProducer, bootstrap, timeout_s,
        acks="all", linger_ms=20, compression_type="gzip", max_block_ms=int(timeout_s * 1000),
    )
    errors: list[BaseException] = []
    lock = threading.Lock()
    acked = 0
    progress = tqdm(desc=f"produce → {topic}", unit="doc", total=limit, file=sys.stderr)

    def on_ack(_metadata: object) -> None:
        nonlocal acked
        with lock:
            acked += 1
        progress.update()

    def on_error(exc: BaseException) -> None:
        with lock:
            errors.append(exc)

    try:
        sent = 0
        for document in itertools.chain([first], documents):
            if limit is not None and sent >= limit:
                break
            future = producer.send(topic, key=document.id.encode(), value=encode_message(document))
            future.add_callback(on_ack).add_errback(on_error)
            sent += 1
        producer.flush(timeout=max(timeout_s, 30.0))
    finally:
        producer.close(timeout=5)
        progress.close()
    if errors:
        raise DemoIOError(f"{len(errors)} of {sent} documents were not delivered: {errors[0]!r}")
    return acked


def format_labels(value: bytes) -> str:
    """One human-readable line for an output message (raw text when it is not one)."""
    try:
        message = LabelsMessage.model_validate_json(value)
    except ValidationError:
        return value.decode("utf-8", errors="replace")
    labels = ", ".join(f"{label.name} ({label.score:.2f})" for label in message.labels) or "-"
    suffix = f"  [truncated at {message.tokens} tokens]" if message.truncated else ""
    return f"{message.id}\t{labels}{suffix}"


def tail(
    topic: str,
    bootstrap: str,
    *,
    max_messages: int | None = None,
    idle_timeout_s: float = 10.0,
    raw_json: bool = False,
    read_committed: bool = False,
    timeout_s: float = 10.0,
    out=sys.stdout,
) -> int:
    """Print the messages of ``topic`` from the beginning; stop after ``max_messages`` or when
    idle. ``read_committed``: only messages of committed transactions (what a downstream reader
    of an exactly-once worker sees), none of aborted or still open ones."""
    consumer = _connect(
        KafkaConsumer, bootstrap, timeout_s,
        auto_offset_reset="earliest", enable_auto_commit=False,
        consumer_timeout_ms=int(idle_timeout_s * 1000),
        isolation_level="read_committed" if read_committed else "read_uncommitted",
    )
    consumer.subscribe([topic])
    progress = tqdm(desc=f"tail ← {topic}", unit="msg", total=max_messages, file=sys.stderr)
    try:
        for record in consumer:
            value = record.value
            out.write((value.decode("utf-8", "replace") if raw_json else format_labels(value)) + "\n")
            out.flush()
            progress.update()
            if max_messages is not None and progress.n >= max_messages:
                break
    finally:
        consumer.close()
        progress.close()
    return progress.n


def _run_produce(args: argparse.Namespace) -> int:
    try:
        count = produce(
            args.file, args.topic, args.bootstrap_servers,
            limit=args.limit, partitions=args.partitions, timeout_s=args.timeout_s,
        )
    except (DemoIOError, DocumentFileError) as exc:
        logger.error("produce failed: %s", exc)
        return 2
    logger.info("produced %d documents to %s", count, args.topic)
    return 0


def _run_tail(args: argparse.Namespace) -> int:
    try:
        count = tail(
            args.topic, args.bootstrap_servers,
            max_messages=args.max_messages, idle_timeout_s=args.idle_timeout_s,
            raw_json=args.json, read_committed=args.read_committed, timeout_s=args.timeout_s,
        )
    except DemoIOError as exc:
        logger.error("tail failed: %s", exc)
        return 2
    logger.info("read %d messages from %s", count, args.topic)
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", required=True)
    parser.add_argument(
        "--bootstrap-servers", default=_bootstrap_default(),
        help="HOST:PORT (default: $EUROVOC_BOOTSTRAP_SERVERS, $KAFKA_BOOTSTRAP or %(default)s)",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=10.0, help="Give up on an unreachable broker after this."
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    produce_parser = subparsers.add_parser(
        "produce", help="Publish documents from a JSONL(.gz) file (id/text or EUR-Lex format)."
    )
    produce_parser.add_argument("file", type=Path)
    _common(produce_parser)
    produce_parser.add_argument("--limit", type=int, default=None, help="Publish at most N.")
    produce_parser.add_argument(
        "--partitions", type=int, default=None, help="Create the topic with N partitions if missing."
    )
    produce_parser.set_defaults(func=_run_produce)

    tail_parser = subparsers.add_parser("tail", help="Print decoded label outputs from a topic.")
    _common(tail_parser)
    tail_parser.add_argument("--max-messages", type=int, default=None)
    tail_parser.add_argument(
        "--idle-timeout-s", type=float, default=10.0, help="Stop after this long with no message."
    )
    tail_parser.add_argument("--json", action="store_true", help="Print each message as JSON.")
    tail_parser.add_argument(
        "--read-committed", action="store_true",
        help="Read only committed transactions (the outputs of an exactly-once worker as its "
        "downstream readers see them); default: read_uncommitted, everything written.",
    )
    tail_parser.set_defaults(func=_run_tail)
