"""A checkpoint's manifest (``eurovoc.json``), read without importing torch: the command line
checks a checkpoint before the worker loads it (``worker.checkpoint`` loads the rest)."""

from pathlib import Path

from schemas.manifest import MANIFEST_FILENAME, CheckpointManifest


class CheckpointError(ValueError):
    """The checkpoint directory is missing something or is inconsistent."""


def read_manifest(path: Path) -> CheckpointManifest:
    manifest_path = Path(path) / MANIFEST_FILENAME
    if not manifest_path.is_file():
        raise CheckpointError(f"{path} is not a eurovoc checkpoint: {MANIFEST_FILENAME} is missing")
    try:
        return CheckpointManifest.model_validate_json(manifest_path.read_bytes())
    except ValueError as exc:
        raise CheckpointError(f"{manifest_path} is invalid: {exc}") from exc
