"""How the first connection's failures are told apart, from kafka-python's own log records."""

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
)

from tests.kafka_fixtures import free_ports
from tests.tiny_checkpoint import make_tiny_checkpoint
from worker.kafka.access import (
    KafkaAccessDenied,
    KafkaUnreachable,
    _captured_kafka_logs,
    connect_admin,
)
from worker.settings.kafka_connection import KafkaConnectionSettings

SASL = KafkaConnectionSettings(bootstrap_servers="b:9093", security_protocol="SASL_SSL",
                               sasl_mechanism="SCRAM-SHA-512", sasl_username="svc",
                               sasl_password="pw")
REPO = Path(__file__).resolve().parents[3]
LOST_AT_LOGIN = "<KafkaConnection node_id=bootstrap-0 broker_version=(4, 3) (disconnected)>: Connection lost: %s"


def denial_after(*records: tuple[str, str, tuple], settings=SASL) -> str | None:
    with _captured_kafka_logs() as causes:
        for name, message, args in records:
            logging.getLogger(name).error(message, *args)
    return causes.denial(settings)


def test_a_sasl_error_is_a_refused_login():
    exc = SaslAuthenticationFailedError("Authentication failed due to invalid credentials")
    assert "refused the SASL login of user 'svc'" in denial_after(
        ("kafka.net.manager", "Connection failed: %s", (exc,)))


def test_connections_lost_twice_at_the_login_are_a_refused_login():
    lost = ("kafka.net.connection", LOST_AT_LOGIN, (KafkaConnectionError("socket disconnected"),))
    assert denial_after(lost) is None  # once may be a glitch
    assert "closed the connection at the login 2 times" in denial_after(lost, lost)


def test_losses_before_the_broker_answered_are_not_a_login_problem():
    early = ("kafka.net.connection",
             "<KafkaConnection node_id=bootstrap-0 broker_version=unknown (disconnected)>: Connection lost: %s",
             (KafkaConnectionError("socket disconnected"),))
    assert denial_after(early, early, early) is None


def test_an_unverified_certificate_is_a_trust_problem():
    handshake = KafkaConnectionError(
        "Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed "
        "certificate in certificate chain (_ssl.c:1006)")
    denial = denial_after(("kafka.net.manager", "Connection failed: %s", (handshake,)))
    assert "TLS certificate is not trusted ([SSL: CERTIFICATE_VERIFY_FAILED] certificate verify " \
           "failed: self-signed certificate in certificate chain)" in denial


def test_kafka_python_logs_are_held_back_during_the_check_and_restored_after(caplog):
    kafka_logger = logging.getLogger("kafka")
    before = (kafka_logger.propagate, kafka_logger.level)
    with caplog.at_level(logging.WARNING):
        with _captured_kafka_logs():
            logging.getLogger("kafka.net.manager").error("noise")
    assert "noise" not in caplog.text
    assert (kafka_logger.propagate, kafka_logger.level) == before


class _Admin:
    """Stands in for KafkaAdminClient: each attempt logs ``logged`` as kafka-python would, then
    fails with ``KafkaTimeoutError`` (the attempts' options are kept in ``attempts``)."""

    def __init__(self, *logged: tuple[str, tuple]) -> None:
        self.logged = logged
        self.attempts: list[dict] = []

    def __call__(self, **config) -> "_Admin":
        self.attempts.append(config)
        for message, args in self.logged:
            logging.getLogger("kafka.net.manager").error(message, *args)
        raise KafkaTimeoutError("Unable to bootstrap from b:9092")


def test_a_refused_login_ends_the_first_attempt_without_retrying():
    refused = ("Connection failed: %s", (SaslAuthenticationFailedError("invalid credentials"),))
    admin = _Admin(refused)
    with pytest.raises(KafkaAccessDenied, match="refused the SASL login of user 'svc'"):
        connect_admin(SASL, "c", client=admin)
    assert len(admin.attempts) == 1


def test_an_unreachable_broker_is_retried_in_short_attempts_until_the_request_timeout():
    settings = KafkaConnectionSettings(bootstrap_servers="b:9092", request_timeout_ms=1000)
    admin = _Admin(("Connection failed: %s", (KafkaConnectionError("refused"),)))
    started = time.monotonic()
    with pytest.raises(KafkaUnreachable) as raised:
        connect_admin(settings, "c", client=admin)
    assert 1.0 <= time.monotonic() - started < 3.0
    assert str(raised.value) == ("no broker of b:9092 answered within 1 s (PLAINTEXT; last "
                                 "error: Connection failed: KafkaConnectionError: refused)")
    assert len(admin.attempts) > 1
    assert all(500 <= a["bootstrap_timeout_ms"] <= 1000 for a in admin.attempts)
    assert admin.attempts[0]["client_id"] == "c"


def test_the_start_up_checks_run_before_torch_is_imported(tmp_path):
    """A refused login or an unreachable broker must not wait for torch (seconds) and a model
    load (minutes on a GPU) to be reported: the manifest and Kafka are checked first."""
    model = tmp_path / "model"
    make_tiny_checkpoint(model)
    [port] = free_ports(1)  # nobody listens there
    script = f"""
import sys
from worker.commands import cli
code = cli.main(["run", "--bootstrap-servers", "127.0.0.1:{port}", "--input-topic", "docs",
                 "--output-topic", "labels", "--dlq-topic", "dlq", "--group-id", "g",
                 "--model", {str(model)!r}, "--metrics-port", "-1", "--request-timeout-ms", "1000"])
print("torch imported:", "torch" in sys.modules)
sys.exit(code)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"no broker of 127.0.0.1:{port} answered within 1 s" in output
    assert "torch imported: False" in output
