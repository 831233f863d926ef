"""``eurovoc-worker classify``: label documents from a JSON-lines file with the worker's engine.

    eurovoc-worker classify --model DIR IN.jsonl[.gz] -o OUT.jsonl[.gz]
    python -m worker.classify --model DIR IN.jsonl[.gz] -o OUT.jsonl[.gz]

Input: one JSON object a line with the ``InputDocument`` fields (``id``, ``text``, optional
``title``, ``language``, ``metadata``); the shared data format's ``celex_id`` is accepted as the
``id`` when there is no ``id``; other fields are ignored. ``-`` reads standard input.

Output: one ``LabelsMessage`` JSON a line (``source`` is null), in input order, for every document
that was labelled. ``-`` writes standard output; a file is written next to its final name and
renamed into place at the end, so a failed run leaves no half-written output.

Bad lines (not JSON, not an object, schema violations) and documents the model could not score
are logged with their line number and skipped; the run continues. The exit status is then 1, or
0 with ``--skip-invalid``. Exit status 2: bad arguments or checkpoint; 3: the engine failed.
"""

import argparse
import gzip
import logging
import os
import sys
import time
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import ValidationError

from schemas.codec import encode_message
from schemas.document import InputDocument
from worker.engine import EngineFailed, InferenceEngine, WorkItem, WorkResult
from worker.engine_config import EngineSettings

logger = logging.getLogger("worker.classify")

EXIT_OK, EXIT_SKIPPED, EXIT_CONFIG, EXIT_ENGINE = 0, 1, 2, 3


class InvalidLine(ValueError):
    def __init__(self, line_number: int, reason: str) -> None:
        super().__init__(f"line {line_number}: {reason}")
        self.line_number = line_number
        self.reason = reason


# -- arguments ---------------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``EngineSettings`` field, typed, with the field's description as help."""
    group = parser.add_argument_group("engine")
    for name, field in EngineSettings.model_fields.items():
        annotation = field.annotation
        kwargs: dict[str, Any] = {"help": field.description, "dest": name}
        if field.is_required():
            kwargs["required"] = True
        else:
            kwargs["default"] = None  # unset flags keep the model's defaults
            kwargs["help"] = f"{field.description} (default: {field.default})"
        args = typing.get_args(annotation)
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            annotation = next(arg for arg in args if arg is not type(None))
            args = typing.get_args(annotation)
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(annotation) is typing.Literal:
            kwargs["choices"] = list(args)
        else:
            kwargs["type"] = annotation
            kwargs["metavar"] = "DIR" if annotation is Path else name.upper()
        group.add_argument(_flag(name), **kwargs)


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


def settings_from_args(args: argparse.Namespace) -> EngineSettings:
    values = {
        name: getattr(args, name)
        for name in EngineSettings.model_fields
        if getattr(args, name, None) is not None
    }
    return EngineSettings(**values)


# -- input and output --------------------------------------------------------------------


@contextmanager
def _open_input(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdin.buffer
    elif path.endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            yield handle
    else:
        with open(path, "rb") as handle:
            yield handle


@contextmanager
def _open_output(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    final = Path(path)
    temporary = final.with_name(f".{final.name}.partial")
    raw = open(temporary, "wb")  # noqa: SIM115 - closed below
    handle: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="wb") if path.endswith(".gz") else raw
    try:
        yield handle
    except BaseException:
        handle.close()
        raw.close()
        temporary.unlink(missing_ok=True)
        raise
    handle.close()
    raw.close()
    os.replace(temporary, final)


def parse_line(line: bytes, line_number: int) -> InputDocument | None:
    """The document on one input line; None for a blank line; raises ``InvalidLine``."""
    if not line.strip():
        return None
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidLine(line_number, f"not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise InvalidLine(line_number, f"expected a JSON object, got {type(record).__name__}")
    if "id" not in record and "celex_id" in record:
        record["id"] = record["celex_id"]
    try:
        return InputDocument.model_validate(record)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'document'}: {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidLine(line_number, f"invalid document: {problems}") from exc


# -- the run -----------------------------------------------------------------------------


class _Ordered:
    """Writes results in input order, holding early finishers until their turn."""

    def __init__(self, out: IO[bytes], progress) -> None:
        self.out = out
        self.progress = progress
        # id(item) -> (index among documents, line number, the item, kept alive for its id)
        self.waiting: dict[int, tuple[int, int, WorkItem]] = {}
        self.done: dict[int, WorkResult] = {}
        self.next_index = 0
        self.submitted = 0
        self.written = 0
        self.failed = 0

    def add(self, item: WorkItem, line_number: int) -> None:
        self.waiting[id(item)] = (self.submitted, line_number, item)
        self.submitted += 1

    def collect(self, results: list[WorkResult]) -> None:
        for result in results:
            index, line_number, _ = self.waiting.pop(id(result.item))
            if result.error is not None:
                self.failed += 1
                logger.error(
                    "line %d (id %s): could not be labelled: %s",
                    line_number,
                    result.item.document.id,
                    result.error,
                )
            self.done[index] = result
        while self.next_index in self.done:
            result = self.done.pop(self.next_index)
            if result.message is not None:
                self.out.write(encode_message(result.message) + b"\n")
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
    """Label every document of ``input_path`` into ``output_path`` with a started engine."""
    from tqdm import tqdm

    capacity = engine.settings.max_queued_documents
    invalid = 0
    started = time.perf_counter()
    with (
        _open_input(input_path) as source,
        _open_output(output_path) as out,
        tqdm(unit="doc", disable=True if not progress else None, file=sys.stderr) as bar,
    ):
        ordered = _Ordered(out, bar)
        for line_number, line in enumerate(source, start=1):
            if limit is not None and ordered.submitted >= limit:
                break
            try:
                document = parse_line(line, line_number)
            except InvalidLine as exc:
                invalid += 1
                logger.error("%s (skipped)", exc)
                continue
            if document is None:
                continue
            while engine.pending() >= capacity:
                ordered.collect(engine.poll_results(timeout=0.5))
            item = WorkItem(document=document, source=None, received_at=time.monotonic())
            ordered.add(item, line_number)
            engine.submit([item])
        while ordered.waiting:
            ordered.collect(engine.poll_results(timeout=0.5))
    elapsed = time.perf_counter() - started
    return {
        "documents": ordered.submitted,
        "written": ordered.written,
        "invalid_lines": invalid,
        "failed": ordered.failed,
        "seconds": elapsed,
        "docs_per_second": ordered.submitted / elapsed if elapsed > 0 else 0.0,
    }


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )


def run_classify(args: argparse.Namespace) -> int:
    """The ``classify`` subcommand; returns the exit status."""
    _configure_logging()
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        logger.error("invalid settings: %s", exc)
        return EXIT_CONFIG
    if args.input != "-" and not Path(args.input).is_file():
        logger.error("input %s does not exist", args.input)
        return EXIT_CONFIG
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        load_started = time.perf_counter()
        engine = InferenceEngine.from_settings(settings)
    except (OSError, ValueError) as exc:
        logger.error("cannot load the model from %s: %s", settings.model, exc)
        return EXIT_CONFIG
    logger.info(
        "model %s %s ready in %.1fs (device %s, max_length %d, %s)",
        engine.manifest.name,
        engine.manifest.version,
        time.perf_counter() - load_started,
        engine.runner.device,
        engine.max_length,
        settings.long_documents,
    )
    engine.start()
    try:
        summary = classify_file(
            engine, args.input, args.output, limit=args.limit, progress=not args.no_progress
        )
    except EngineFailed as exc:
        logger.error("%s", exc)
        return EXIT_ENGINE
    finally:
        engine.stop()
    logger.info(
        "labelled %d of %d documents in %.1fs (%.1f docs/s); %d invalid lines, %d failed",
        summary["written"],
        summary["documents"],
        summary["seconds"],
        summary["docs_per_second"],
        summary["invalid_lines"],
        summary["failed"],
    )
    skipped = summary["invalid_lines"] + summary["failed"]
    if skipped and not args.skip_invalid:
        logger.error("%d lines were skipped; exiting 1 (use --skip-invalid to exit 0)", skipped)
        return EXIT_SKIPPED
    return EXIT_OK


def classify_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(classify_main())
