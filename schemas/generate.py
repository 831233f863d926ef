"""Generate one JSON Schema file per message model into ``schemas/json/``."""

import argparse
import logging
from pathlib import Path

import orjson
from pydantic import BaseModel

from schemas.dead_letter import DeadLetterHeaders
from schemas.document import InputDocument
from schemas.labels import LabelsMessage
from schemas.manifest import CheckpointManifest

SCHEMA_DIR = Path(__file__).parent / "json"

MODELS: dict[str, type[BaseModel]] = {
    "input_document": InputDocument,
    "labels_message": LabelsMessage,
    "dead_letter_headers": DeadLetterHeaders,
    "checkpoint_manifest": CheckpointManifest,
}

logger = logging.getLogger(__name__)


def render_schemas() -> dict[str, bytes]:
    """File name -> JSON Schema bytes, exactly as written to disk."""
    return {
        f"{name}.schema.json": orjson.dumps(
            model.model_json_schema(by_alias=True),
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE,
        )
        for name, model in MODELS.items()
    }


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, content in render_schemas().items():
        path = directory / filename
        path.write_bytes(content)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=SCHEMA_DIR, help="Output directory.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in write_schemas(args.out):
        logger.info("wrote %s", path)
