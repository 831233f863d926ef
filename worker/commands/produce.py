"""``eurovoc-worker produce``: publish the documents of a JSONL(.gz) file to a topic."""

import argparse
import itertools
import logging
import sys
import threading
from pathlib import Path

from kafka import KafkaProducer
from kafka.errors import KafkaError
from tqdm import tqdm

from schemas.codec import encode_message
from schemas.document_files import DocumentFileError, read_documents
from worker.commands.kafka_io import KafkaIOError, add_topic_flags, connect, connection
from worker.exit_codes import ExitCode
from worker.kafka.access import KafkaAccessDenied, KafkaUnreachable
from worker.kafka.topics import create_topics

logger = logging.getLogger(__name__)

CLIENT_ID = "eurovoc-produce"


def ensure_topic(bootstrap: str, topic: str, partitions: int, timeout_s: float) -> None:
    """Create ``topic`` with ``partitions`` partitions unless it exists."""
    try:
        create_topics(connection(bootstrap, timeout_s), [topic], partitions, client_id=CLIENT_ID)
    except (KafkaAccessDenied, KafkaUnreachable, KafkaError) as exc:
        raise KafkaIOError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc


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
    producer = connect(
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
        raise KafkaIOError(f"{len(errors)} of {sent} documents were not delivered: {errors[0]!r}")
    return acked


def _run(args: argparse.Namespace) -> int:
    try:
        count = produce(
            args.file, args.topic, args.bootstrap_servers,
            limit=args.limit, partitions=args.partitions, timeout_s=args.timeout_s,
        )
    except (DocumentFileError, KafkaIOError) as exc:
        logger.error("produce failed: %s", exc)
        return ExitCode.CONFIG if isinstance(exc, DocumentFileError) else ExitCode.FATAL
    logger.info("produced %d documents to %s", count, args.topic)
    return ExitCode.OK


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "produce", help="Publish documents from a JSONL(.gz) file (id/text or EUR-Lex format)."
    )
    parser.add_argument("file", type=Path)
    add_topic_flags(parser)
    parser.add_argument("--limit", type=int, default=None, help="Publish at most N.")
    parser.add_argument(
        "--partitions", type=int, default=None, help="Create the topic with N partitions if missing."
    )
    parser.set_defaults(func=_run)
