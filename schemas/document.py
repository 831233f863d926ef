"""The input document that upstream ingestion publishes to the input topic."""

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_ID_LENGTH = 256


class InputDocument(BaseModel):
    """One document to classify.

    The payload ``id`` is the document's identity; the Kafka key only decides the partition.
    Unknown extra fields are ignored so that upstream can add fields without breaking workers.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False)

    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, description="Document identity.")
    text: str = Field(min_length=1, description="Full text to classify.")
    title: str | None = Field(default=None, description="Optional title, prepended to the text.")
    language: str | None = Field(default=None, description="Optional ISO 639-1 language code.")
    metadata: dict[str, str] = Field(
        default_factory=dict, description="Flat string map passed through untouched."
    )

    @field_validator("id", "text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value
