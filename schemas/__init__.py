"""Message schemas shared by the worker, the training package and downstream consumers.

Every message that crosses a process boundary is one of these pydantic models; the JSON Schema
files under ``schemas/json/`` are generated from them (``python -m schemas``) and a test fails when
they drift.
"""

from schemas.codec import InvalidDocument, decode_document, encode_message
from schemas.dead_letter import DEAD_LETTER_HEADERS, DeadLetterHeaders, ErrorType
from schemas.document import MAX_ID_LENGTH, InputDocument
from schemas.labels import LabelScore, LabelsMessage, ModelInfo, SourceRef
from schemas.manifest import MANIFEST_FILENAME, CheckpointManifest, LabelDef, Thresholds

SCHEMA_VERSION = LabelsMessage.model_fields["schema_version"].default

__all__ = [
    "DEAD_LETTER_HEADERS",
    "MANIFEST_FILENAME",
    "MAX_ID_LENGTH",
    "SCHEMA_VERSION",
    "CheckpointManifest",
    "DeadLetterHeaders",
    "ErrorType",
    "InputDocument",
    "InvalidDocument",
    "LabelDef",
    "LabelScore",
    "LabelsMessage",
    "ModelInfo",
    "SourceRef",
    "Thresholds",
    "decode_document",
    "encode_message",
]
