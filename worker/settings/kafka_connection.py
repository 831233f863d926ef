"""Kafka connection settings (brokers, timeouts, SASL/TLS), shared by ``eurovoc-worker run`` and
``eurovoc-worker replay-dlq``; ``worker.kafka.clients.security_config`` turns them into
kafka-python options.

Secrets: ``sasl_password`` and ``ssl_password`` are ``SecretStr`` (masked in logs and reprs). A
password can instead come from a file (``sasl_password_file``, e.g. a mounted Kubernetes Secret),
read when a client is built, so a rotated file is picked up by the next start.
"""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

SASL_PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaConnectionSettings(BaseModel):
    """Where the brokers are and how to authenticate to them."""

    bootstrap_servers: str = Field(
        min_length=1, description="Comma-separated Kafka bootstrap servers, host:port."
    )
    request_timeout_ms: int = Field(default=30_000, ge=1000, description="Client request timeout.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", None] = Field(
        default=None, description="SASL mechanism (for SASL_PLAINTEXT / SASL_SSL)."
    )
    sasl_username: str | None = Field(default=None, description="SASL PLAIN/SCRAM user name.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL PLAIN/SCRAM password.")
    sasl_password_file: Path | None = Field(
        default=None,
        description="File holding the SASL password (trailing newline ignored), instead of "
        "sasl_password; e.g. a mounted Kubernetes Secret.",
    )
    ssl_cafile: Path | None = Field(default=None, description="CA bundle to verify brokers.")
    ssl_certfile: Path | None = Field(default=None, description="Client certificate (PEM).")
    ssl_keyfile: Path | None = Field(default=None, description="Client private key (PEM).")
    ssl_password: SecretStr | None = Field(default=None, description="Password of ssl_keyfile.")
    ssl_check_hostname: bool = Field(default=True, description="Verify the broker host name.")

    @model_validator(mode="after")
    def _check_security(self) -> "KafkaConnectionSettings":
        if self.sasl_password is not None and self.sasl_password_file is not None:
            raise ValueError("give sasl_password or sasl_password_file, not both")
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                raise ValueError(f"sasl_mechanism is required with {self.security_protocol}")
            if self.sasl_mechanism in SASL_PASSWORD_MECHANISMS:
                if not self.sasl_username:
                    raise ValueError(f"sasl_username is required with {self.sasl_mechanism}")
                if self.sasl_password is None and self.sasl_password_file is None:
                    raise ValueError(
                        f"sasl_password or sasl_password_file is required with "
                        f"{self.sasl_mechanism}"
                    )
                if self.sasl_password_file is not None:
                    self.read_sasl_password()  # unreadable or empty: fail at start-up
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}={path}: no such file")
        return self

    def read_sasl_password(self) -> SecretStr | None:
        """The SASL password: ``sasl_password``, or the content of ``sasl_password_file``."""
        if self.sasl_password_file is None:
            return self.sasl_password
        path = self.sasl_password_file
        try:
            password = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"sasl_password_file={path}: cannot be read ({exc.strerror or exc})")
        if not password:
            raise ValueError(f"sasl_password_file={path}: the file is empty")
        return SecretStr(password)
