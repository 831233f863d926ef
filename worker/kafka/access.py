"""The first connection to Kafka: it tells a refused login or an untrusted broker certificate
apart from an unreachable broker, within seconds (:func:`connect_admin`)."""

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, SaslAuthenticationFailedError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay

from worker.settings.kafka_connection import KafkaConnectionSettings

ATTEMPT_S = 3.0
"""One bootstrap attempt: a reachable broker answers a login far faster."""
_TRUST_FAILURES = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "Hostname mismatch")
# A connection lost after the broker answered ApiVersions (its version is known), that is while
# logging in. kafka-python 3.0.12 over TLS often loses the broker's SaslAuthenticate error when the
# broker closes the connection right after it (upstream: dpkp/kafka-python#2994), so repeated
# losses at that step are how a refused login shows.
_LOST_DURING_LOGIN = re.compile(r"broker_version=\(\d[^)]*\) \(disconnected\)>: Connection lost")
_LOGIN_LOSSES = 2


class KafkaAccessDenied(RuntimeError):
    """The brokers refused the credentials, or their certificate is not trusted."""


class KafkaUnreachable(RuntimeError):
    """No broker answered within the request timeout."""


class _Causes(logging.Handler):
    """Keeps the exceptions kafka-python logs while it connects (and keeps them off the logs)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.errors: list[BaseException] = []
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        for arg in record.args if isinstance(record.args, tuple) else ():
            if isinstance(arg, BaseException):
                self.errors.append(arg)
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())

    def denial(self, settings: KafkaConnectionSettings) -> str | None:
        """Why the brokers refused us, if they did."""
        refused = (f"the brokers refused the SASL login of user {settings.sasl_username!r} "
                   f"({settings.sasl_mechanism}): check sasl_username and the password")
        if any(isinstance(exc, SaslAuthenticationFailedError) for exc in self.errors):
            return refused
        if settings.security_protocol.startswith("SASL"):
            losses = sum(bool(_LOST_DURING_LOGIN.search(message)) for message in self.messages)
            if losses >= _LOGIN_LOSSES:
                return f"{refused} (the brokers closed the connection at the login {losses} times)"
        for message in self.messages:
            if any(marker in message for marker in _TRUST_FAILURES):
                reason = message.split("Handshake failed: ", 1)[-1].split(" (_ssl.c")[0]
                return (f"the brokers' TLS certificate is not trusted ({reason}): check ssl_cafile="
                        f"{settings.ssl_cafile} and ssl_check_hostname")
        return None

    def last(self) -> str:
        return self.messages[-1] if self.messages else "no answer"


@contextlib.contextmanager
def _captured_kafka_logs() -> Iterator[_Causes]:
    kafka_logger = logging.getLogger("kafka")
    causes = _Causes()
    saved = kafka_logger.propagate, kafka_logger.level
    kafka_logger.addHandler(causes)
    kafka_logger.propagate = False
    kafka_logger.setLevel(logging.WARNING)
    try:
        yield causes
    finally:
        kafka_logger.removeHandler(causes)
        kafka_logger.propagate, kafka_logger.level = saved


def connect_admin(
    settings: KafkaConnectionSettings,
    client_id: str,
    client: Callable[..., KafkaAdminClient] = KafkaAdminClient,
) -> KafkaAdminClient:
    """An admin client, once a broker answered its metadata request with these settings; else
    :class:`KafkaAccessDenied` (a configuration error, exit 2) or :class:`KafkaUnreachable`
    (exit 1) with a message for the operator. ``client`` builds the admin client (a test seam).

    kafka-python retries a failed SASL login or TLS handshake like any connection error until its
    bootstrap timeout, and then reports only "Unable to bootstrap". So the client is bootstrapped
    in short attempts (:data:`ATTEMPT_S`), with kafka-python's own log records captured instead
    of printed: the first attempt that fails on credentials or trust ends the check with
    :class:`KafkaAccessDenied`; without such a cause the attempts go on until
    ``request_timeout_ms`` has passed, and :class:`KafkaUnreachable` names the last cause. Both
    ``run`` and ``replay-dlq`` call it before they build their clients (``run``: before torch is
    imported, and it checks its topics with the client returned: ``worker.kafka.topics``).
    """
    from worker.kafka.clients import security_config

    config = security_config(settings, client_id)
    timeout_s = settings.request_timeout_ms / 1000
    deadline = time.monotonic() + timeout_s
    with _captured_kafka_logs() as causes:

        def attempt() -> KafkaAdminClient:
            attempt_ms = int(1000 * max(0.5, min(ATTEMPT_S, deadline - time.monotonic())))
            try:
                return client(**{**config, "bootstrap_timeout_ms": attempt_ms})
            except KafkaError:
                denial = causes.denial(settings)
                if denial is not None:
                    raise KafkaAccessDenied(denial) from None
                raise

        def unreachable(_state: RetryCallState) -> KafkaAdminClient:
            raise KafkaUnreachable(
                f"no broker of {settings.bootstrap_servers} answered within {timeout_s:g} s "
                f"({settings.security_protocol}; last error: {causes.last()})"
            )

        retrying = Retrying(retry=retry_if_exception_type(KafkaError),
                            stop=stop_after_delay(timeout_s), retry_error_callback=unreachable)
        return retrying(attempt)
