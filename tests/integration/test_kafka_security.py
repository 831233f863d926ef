"""SASL_SSL through the real broker: kafka.sh's opt-in listener (SCRAM-SHA-512 users made at
format time, a throw-away CA), the worker labelling through it with its password from a file,
and clear, quick exits for refused credentials and untrusted certificates."""

from __future__ import annotations

import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.worker_harness import TopicReader, WorkerProcess, documents
from tests.kafka_fixtures import LocalBroker, create_topic, free_ports, produce_messages

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUICK_EXIT_S = 20  # Python start-up, the first connection, a few short attempts: not a retry loop


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    [sasl_port] = free_ports(1)
    broker = LocalBroker(tmp_path_factory.mktemp("kafka-sasl"),
                         extra_env={"KAFKA_SASL_SSL_PORT": str(sasl_port)})
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topic(sasl_broker: LocalBroker) -> str:
    name = f"secure-{uuid.uuid4().hex}"
    for suffix in ("", "-out", "-dlq"):
        create_topic(sasl_broker.bootstrap, name + suffix, 2)
    return name


def security_env(broker: LocalBroker, **overrides: str) -> dict[str, str]:
    env = {
        "EUROVOC_SECURITY_PROTOCOL": "SASL_SSL",
        "EUROVOC_SASL_MECHANISM": "SCRAM-SHA-512",
        "EUROVOC_SASL_USERNAME": broker.addresses["KAFKA_SASL_USERNAME"],
        "EUROVOC_SASL_PASSWORD_FILE": broker.addresses["KAFKA_SASL_PASSWORD_FILE"],
        "EUROVOC_SSL_CAFILE": broker.addresses["KAFKA_SSL_CAFILE"],
    }
    env.update(overrides)
    return {name: value for name, value in env.items() if value}


def password(broker: LocalBroker) -> str:
    return Path(broker.addresses["KAFKA_SASL_PASSWORD_FILE"]).read_text().strip()


def other_ca(directory: Path) -> Path:
    """A CA certificate that did not sign the broker's."""
    store, pem = directory / "other-ca.p12", directory / "other-ca.pem"
    common = ["-storetype", "PKCS12", "-storepass", "changeit", "-keystore", str(store)]
    subprocess.run(["keytool", "-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-dname",
                    "CN=someone else's CA", "-ext", "bc:c", *common], check=True, capture_output=True)
    subprocess.run(["keytool", "-exportcert", "-rfc", "-alias", "ca", "-file", str(pem), *common],
                   check=True, capture_output=True)
    return pem


def test_kafka_sh_prints_what_a_client_needs(sasl_broker: LocalBroker):
    addresses = sasl_broker.addresses
    assert addresses["KAFKA_SASL_SSL_BOOTSTRAP"] != addresses["KAFKA_BOOTSTRAP"]
    assert Path(addresses["KAFKA_SSL_CAFILE"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    secret = Path(addresses["KAFKA_SASL_PASSWORD_FILE"])
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(password(sasl_broker)) >= 16
    assert addresses["KAFKA_SASL_USERNAME"] == "eurovoc"
    # the password is in no file but its own (the broker config holds only the keystore's)
    config = (sasl_broker.data_dir / "server.properties").read_text()
    assert password(sasl_broker) not in config
    assert stat.S_IMODE((sasl_broker.data_dir / "server.properties").stat().st_mode) == 0o600


def test_the_worker_labels_documents_through_sasl_ssl(sasl_broker, topic, tiny_model):
    produce_messages(sasl_broker.bootstrap, topic, documents(30))
    worker = WorkerProcess(
        bootstrap=sasl_broker.addresses["KAFKA_SASL_SSL_BOOTSTRAP"], topic=topic,
        group=f"g-{uuid.uuid4().hex}", model=tiny_model, extra=["--log-level", "DEBUG"],
        env=security_env(sasl_broker),
    ).start()
    reader = TopicReader(sasl_broker.bootstrap, f"{topic}-out")
    try:
        reader.wait_for(30, timeout_s=90)
        assert sorted(reader.ids()) == sorted(f"doc-{i}" for i in range(30))
    finally:
        reader.close()
        code = worker.stop()
    assert code == 0, worker.log_text()[-3000:]
    assert password(sasl_broker) not in worker.log_text()
    [start] = worker.events("start")
    kafka = start["settings"]["kafka"]
    assert kafka["sasl_password_file"] == sasl_broker.addresses["KAFKA_SASL_PASSWORD_FILE"]
    assert kafka["sasl_password"] is None


def run_until_exit(worker: WorkerProcess) -> tuple[int, float]:
    started = time.monotonic()
    worker.start()
    code = worker.wait(timeout_s=60)
    return code, time.monotonic() - started


def test_a_wrong_password_exits_2_within_seconds(sasl_broker, topic, tiny_model):
    wrong = "not-the-password-0123"
    worker = WorkerProcess(
        bootstrap=sasl_broker.addresses["KAFKA_SASL_SSL_BOOTSTRAP"], topic=topic, group="g",
        model=tiny_model,
        env=security_env(sasl_broker, EUROVOC_SASL_PASSWORD_FILE="", EUROVOC_SASL_PASSWORD=wrong),
    )
    code, elapsed = run_until_exit(worker)
    assert code == 2, worker.log_text()[-3000:]
    assert elapsed < QUICK_EXIT_S
    [stopped] = worker.events("stopped")
    assert "refused the SASL login of user 'eurovoc'" in stopped["reason"]
    assert wrong not in worker.log_text()
    assert len(worker.lines) < 10, "a retry loop:\n" + worker.log_text()


def test_an_untrusted_broker_certificate_exits_2_within_seconds(sasl_broker, topic, tiny_model, tmp_path):
    worker = WorkerProcess(
        bootstrap=sasl_broker.addresses["KAFKA_SASL_SSL_BOOTSTRAP"], topic=topic, group="g",
        model=tiny_model, env=security_env(sasl_broker, EUROVOC_SSL_CAFILE=str(other_ca(tmp_path))),
    )
    code, elapsed = run_until_exit(worker)
    assert code == 2, worker.log_text()[-3000:]
    assert elapsed < QUICK_EXIT_S
    [stopped] = worker.events("stopped")
    assert "TLS certificate is not trusted" in stopped["reason"]
    assert "certificate verify failed" in stopped["reason"]
    assert password(sasl_broker) not in worker.log_text()


def test_a_broker_that_does_not_answer_exits_1_after_the_request_timeout(sasl_broker, topic, tiny_model):
    [nobody] = free_ports(1)
    worker = WorkerProcess(
        bootstrap=f"127.0.0.1:{nobody}", topic=topic, group="g", model=tiny_model,
        extra=["--request-timeout-ms", "4000"], env=security_env(sasl_broker),
    )
    code, elapsed = run_until_exit(worker)
    assert code == 1, worker.log_text()[-3000:]
    assert elapsed < QUICK_EXIT_S
    [stopped] = worker.events("stopped")
    assert f"no broker of 127.0.0.1:{nobody} answered within 4 s" in stopped["reason"]
