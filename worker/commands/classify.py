"""``eurovoc-worker classify``: label documents from a JSON-lines file with the worker's engine.

    eurovoc-worker classify --model DIR IN.jsonl[.gz] -o OUT.jsonl[.gz]
    python -m worker.commands.classify --model DIR IN.jsonl[.gz] -o OUT.jsonl[.gz]

Input: one JSON object a line with the ``InputDocument`` fields (``id``, ``text``, optional
``title``, ``language``, ``metadata``); the shared data format's ``celex_id`` is accepted as the
``id`` when there is no ``id``; other fields are ignored. ``-`` reads standard input.

Output: one ``LabelsMessage`` JSON a line (``source`` is null), in input order, for every document
that was labelled. ``-`` writes standard output; a file is written next to its final name and
renamed into place at the end, so a failed run leaves no half-written output.

Bad lines (not JSON, not an object, schema violations) and documents the model could not score
are logged with their line number and skipped; the run continues. The exit status is then 3
(``worker.exit_codes``: records rejected), or 0 with ``--skip-invalid``. Exit status 2: bad
arguments, checkpoint or an unreadable input file; 1: the engine failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pydantic import ValidationError

from schemas.codec import encode_message
from schemas.document_files import (
    STDIN,
    DocumentFileError,
    DocumentLineError,
    document_lines,
    open_output,
    parse_document_line,
    source_name,
)
from schemas.labels import LabelsMessage
from schemas.validation import describe_validation_error
from worker.exit_codes import ExitCode
from worker.inference.feeding import feed
from worker.inference.requests import DocumentRequest, EngineFailed, EngineResult
from worker.runtime.logging_setup import setup_logging
from worker.settings.engine_flags import add_engine_arguments, settings_from_args

if TYPE_CHECKING:  # the engine (torch, transformers) is imported when a run starts
    from worker.inference.engine import InferenceEngine

logger = logging.getLogger("worker.commands.classify")



# -- arguments ---------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("input", help="JSON-lines input (.gz read as gzip; - for stdin).")
    parser.add_argument(
        "-o", "--output", required=True, help="JSON-lines output (.gz written as gzip; - stdout)."
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="Exit 0 even when bad lines or unscorable documents were skipped.",
    )
    parser.add_argument("--limit", type=int, default=None, help="Stop after this many documents.")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
    add_engine_arguments(parser)
    parser.set_defaults(func=run_classify)
    return parser


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``classify`` subcommand (``func=run_classify``) to a CLI's subparsers."""
    parser = subparsers.add_parser(
        "classify",
        help="Label documents from a JSON-lines file (no Kafka).",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return configure_parser(parser)


def build_parser() -> argparse.ArgumentParser:
    return configure_parser(
        argparse.ArgumentParser(
            prog="eurovoc-worker classify",
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )


# -- output ------------------------------------------------------------------------------


# -- the run -----------------------------------------------------------------------------


class _Ordered:
    """Writes the label messages of ``classify_file`` in input order, holding early finishers
    until their turn; logs the documents that could not be labelled."""

    def __init__(self, out: IO[bytes], progress) -> None:
        self.out = out
        self.progress = progress
        self.waiting: dict[DocumentRequest, tuple[int, int]] = {}  # (input index, line number)
        self.done: dict[int, LabelsMessage | None] = {}  # by input index, not yet written
        self.next_index = 0
        self.submitted = 0
        self.written = 0
        self.failed = 0

    def add(self, request: DocumentRequest, line_number: int) -> None:
        self.waiting[request] = (self.submitted, line_number)
        self.submitted += 1

    def write(self, result: EngineResult[DocumentRequest]) -> None:
        index, line_number = self.waiting.pop(result.item)
        if result.error is not None:
            self.failed += 1
            logger.error("line %d (id %s): could not be labelled: %s", line_number,
                         result.item.document.id, result.error)
        self.done[index] = result.message
        while self.next_index in self.done:
            labels = self.done.pop(self.next_index)
            if labels is not None:
                self.out.write(encode_message(labels) + b"\n")
                self.written += 1
            self.next_index += 1
            self.progress.update(1)


def classify_file(
    engine: InferenceEngine,
    input_path: str,
    output_path: str,
    *,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, int | float]:
    """Label every document of ``input_path`` into ``output_path`` with a started engine, fed
    as the Kafka worker feeds it (``worker.inference.feeding``, capacity ``max_in_flight``).

    Bad lines are logged and skipped; an unreadable input raises ``DocumentFileError`` (and
    leaves no output file).
    """
    from tqdm import tqdm

    source = source_name(input_path)
    invalid = 0
    started = time.perf_counter()
    with (
        open_output(output_path) as out,
        tqdm(unit="doc", disable=True if not progress else None, file=sys.stderr) as bar,
    ):
        ordered = _Ordered(out, bar)

        def requests() -> Iterator[DocumentRequest]:
            nonlocal invalid
            for line_number, line in document_lines(input_path):
                if limit is not None and ordered.submitted >= limit:
                    return
                try:
                    document = parse_document_line(line, source, line_number)
                except DocumentLineError as exc:
                    invalid += 1
                    logger.error("line %d: %s (skipped)", exc.line_number, exc.problem)
                    continue
                request = DocumentRequest(document)
                ordered.add(request, line_number)
                yield request

        for result in feed(engine, requests(), engine.settings.max_in_flight):
            ordered.write(result)
    elapsed = time.perf_counter() - started
    return {
        "documents": ordered.submitted,
        "written": ordered.written,
        "invalid_lines": invalid,
        "failed": ordered.failed,
        "seconds": elapsed,
        "docs_per_second": ordered.submitted / elapsed if elapsed > 0 else 0.0,
    }


def run_classify(args: argparse.Namespace) -> int:
    """The ``classify`` subcommand; returns the exit status."""
    if not logging.getLogger().handlers:  # leave an embedding program's logging alone
        setup_logging("INFO", "text")
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        logger.error("invalid configuration: %s", describe_validation_error(exc, whole="settings"))
        return ExitCode.CONFIG
    if args.input != STDIN and not Path(args.input).is_file():
        logger.error("input %s does not exist", args.input)
        return ExitCode.CONFIG
    try:
        from transformers.utils import logging as hf_logging

        from worker.inference.engine import InferenceEngine

        hf_logging.disable_progress_bar()
        load_started = time.perf_counter()
        engine = InferenceEngine.from_settings(settings)
    except (OSError, ValueError) as exc:
        logger.error("cannot load the model from %s: %s", settings.model, exc)
        return ExitCode.CONFIG
    logger.info("model %s %s ready in %.1fs (device %s, max_length %d, %s)",
                engine.manifest.name, engine.manifest.version, time.perf_counter() - load_started,
                engine.runner.device, engine.max_length, settings.long_documents)
    engine.start()
    try:
        summary = classify_file(
            engine, args.input, args.output, limit=args.limit, progress=not args.no_progress
        )
    except DocumentFileError as exc:
        logger.error("%s", exc)
        return ExitCode.CONFIG
    except EngineFailed as exc:
        logger.error("%s", exc)
        return ExitCode.FATAL
    finally:
        engine.stop()
    logger.info("labelled %d of %d documents in %.1fs (%.1f docs/s); %d invalid lines, %d failed",
                summary["written"], summary["documents"], summary["seconds"],
                summary["docs_per_second"], summary["invalid_lines"], summary["failed"])
    skipped = summary["invalid_lines"] + summary["failed"]
    if skipped and not args.skip_invalid:
        logger.error("%d lines were skipped; exiting 3 (use --skip-invalid to exit 0)", skipped)
        return ExitCode.REJECTED
    return ExitCode.OK


def classify_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(classify_main())
