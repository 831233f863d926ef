"""A pydantic ``ValidationError`` as one line naming each field, for every command's messages
(settings and documents alike)."""

from pydantic import ValidationError


def describe_validation_error(
    exc: ValidationError, *, whole: str, limit: int | None = None
) -> str:
    """``"field: problem; other.field: problem"``; ``whole`` names an error of the whole object.

    With ``limit``, at most that many problems are listed, then ``... N more``.
    """
    errors = exc.errors(include_url=False, include_input=False)
    shown = errors if limit is None else errors[:limit]
    parts = [f"{'.'.join(str(part) for part in err['loc']) or whole}: {err['msg']}"
             for err in shown]
    if len(errors) > len(shown):
        parts.append(f"... {len(errors) - len(shown)} more")
    return "; ".join(parts)
