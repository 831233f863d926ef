"""``eurovoc-worker tail``: print the label outputs of a topic, one line each (or as JSON)."""

import argparse
import logging
import sys

from kafka import KafkaConsumer
from pydantic import ValidationError
from tqdm import tqdm

from schemas.labels import LabelsMessage
from worker.commands.kafka_io import KafkaIOError, add_topic_flags, connect
from worker.exit_codes import ExitCode

logger = logging.getLogger(__name__)


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
    consumer = connect(
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


def _run(args: argparse.Namespace) -> int:
    try:
        count = tail(
            args.topic, args.bootstrap_servers,
            max_messages=args.max_messages, idle_timeout_s=args.idle_timeout_s,
            raw_json=args.json, read_committed=args.read_committed, timeout_s=args.timeout_s,
        )
    except KafkaIOError as exc:
        logger.error("tail failed: %s", exc)
        return ExitCode.FATAL
    logger.info("read %d messages from %s", count, args.topic)
    return ExitCode.OK


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tail", help="Print decoded label outputs from a topic.")
    add_topic_flags(parser)
    parser.add_argument("--max-messages", type=int, default=None)
    parser.add_argument(
        "--idle-timeout-s", type=float, default=10.0, help="Stop after this long with no message."
    )
    parser.add_argument("--json", action="store_true", help="Print each message as JSON.")
    parser.add_argument(
        "--read-committed", action="store_true",
        help="Read only committed transactions (the outputs of an exactly-once worker as its "
        "downstream readers see them); default: read_uncommitted, everything written.",
    )
    parser.set_defaults(func=_run)
