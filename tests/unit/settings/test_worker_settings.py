"""Worker settings: sources, validation, the run command line, the Kafka client options."""

import json

import pytest
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from pydantic import ValidationError

from schemas.dead_letter import dead_letter_bytes
from worker.commands import cli
from worker.kafka.clients import consumer_config, producer_config
from worker.kafka.topics import BROKER_DEFAULT_MAX_MESSAGE_BYTES
from worker.settings.worker_settings import (
    ConfigFileError,
    WorkerSettings,
    load_settings,
    setting_groups,
)

REQUIRED = {
    "bootstrap_servers": "127.0.0.1:9092",
    "input_topic": "docs",
    "output_topic": "labels",
    "dlq_topic": "docs-dlq",
    "group_id": "workers",
    "model": "/models/m",
}
REQUIRED_FLAGS = [
    "--bootstrap-servers", "127.0.0.1:9092", "--input-topic", "docs", "--output-topic",
    "labels", "--dlq-topic", "docs-dlq", "--group-id", "workers", "--model", "/models/m",
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("EUROVOC_"):
            monkeypatch.delenv(name)


def test_defaults():
    settings = load_settings(**REQUIRED)
    assert settings.consumer.assignment_strategy == "cooperative-sticky"
    # An accepted document's dead letter fits a topic of Kafka's default max.message.bytes.
    assert settings.consumer.max_message_bytes == settings.dead_letters.dlq_max_value_bytes
    assert dead_letter_bytes(settings.consumer.max_message_bytes) <= (
        BROKER_DEFAULT_MAX_MESSAGE_BYTES)
    letters = settings.dead_letters
    assert (letters.dlq_max_consecutive, letters.dlq_max_ratio, letters.dlq_ratio_window) == (
        100, 0.5, 1000)
    assert settings.operations.worker_id
    assert settings.engine.max_in_flight == 256
    assert settings.operations.stall_timeout_s == 120
    assert str(settings.engine.model) == REQUIRED["model"]


def test_every_setting_has_one_name_across_the_groups():
    names = [name for group in setting_groups(WorkerSettings).values() for name in group]
    assert len(names) == len(set(names))
    assert set(setting_groups(WorkerSettings)) == {
        "kafka", "consumer", "producer", "dead_letters", "engine", "operations"}


def test_environment_and_file(tmp_path, monkeypatch):
    config = tmp_path / "worker.json"
    config.write_text(json.dumps({**REQUIRED, "max_in_flight": 64, "linger_ms": 9}))
    monkeypatch.setenv("EUROVOC_MAX_IN_FLIGHT", "32")
    settings = load_settings(config_file=config)
    assert settings.engine.max_in_flight == 32  # the environment beats the file
    assert settings.producer.linger_ms == 9
    toml = tmp_path / "worker.toml"
    toml.write_text("\n".join(f'{k} = "{v}"' for k, v in REQUIRED.items())
                    + "\nlinger_ms = 7\n[engine]\nmax_batch_size = 5\n")
    settings = load_settings(config_file=toml)
    assert (settings.producer.linger_ms, settings.engine.max_batch_size) == (7, 5)


def test_grouped_environment_beats_the_flat_one(monkeypatch):
    monkeypatch.setenv("EUROVOC_MAX_BATCH_SIZE", "3")
    monkeypatch.setenv("EUROVOC_ENGINE__MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("EUROVOC_HEALTH_STALL_S", "33")  # the old name of stall_timeout_s
    settings = load_settings(**REQUIRED)
    assert settings.engine.max_batch_size == 4
    assert settings.operations.stall_timeout_s == 33


def test_missing_or_unknown_config_file(tmp_path):
    with pytest.raises(ConfigFileError):
        load_settings(config_file=tmp_path / "nope.json")
    bad = tmp_path / "worker.yaml"
    bad.write_text("a: 1")
    with pytest.raises(ConfigFileError):
        load_settings(config_file=bad)
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({**REQUIRED, "max_inflight": 3}))
    with pytest.raises(ValidationError, match="max_inflight"):
        load_settings(config_file=typo)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_queued_documents": 1000}, "max_queued_documents was removed: max_in_flight"),
        ({"request_timeout_ms": 1000, "fetch_max_wait_ms": 1000}, "request_timeout_ms"),
        ({"heartbeat_interval_ms": 50_000}, "heartbeat_interval_ms"),
        ({"output_topic": "docs"}, "output_topic"),
        ({"security_protocol": "SASL_SSL"}, "sasl_mechanism"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}, "sasl_username"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
         "sasl_password"),
        ({"compression_type": "zstd"}, "compression_type"),
        ({"group_instance_id": "bad id!"}, "group_instance_id"),
        ({"dlq_max_ratio": 0}, "dlq_max_ratio"),
    ],
)
def test_invalid_settings_name_the_setting(override, named):
    from kafka import codec

    if named == "compression_type" and codec.has_zstd():
        pytest.skip("zstd is installed here")
    with pytest.raises(ValueError, match=named):  # pydantic's ValidationError included
        load_settings(**{**REQUIRED, **override})


def test_secrets_are_masked():
    settings = load_settings(**REQUIRED, security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                             sasl_username="u", sasl_password="hunter2")
    assert "hunter2" not in json.dumps(settings.redacted())
    assert "hunter2" not in repr(settings)
    config = consumer_config(settings)
    assert config["sasl_plain_password"] == "hunter2"
    assert config["security_protocol"] == "SASL_SSL"


def test_kafka_client_options():
    settings = load_settings(**REQUIRED, group_instance_id="worker-0")
    consumer = consumer_config(settings)
    assert consumer["enable_auto_commit"] is False
    [assignor] = consumer["partition_assignment_strategy"]
    assert isinstance(assignor, CooperativeStickyAssignor)
    assert consumer["group_instance_id"] == "worker-0"
    assert consumer["bootstrap_servers"] == ["127.0.0.1:9092"]
    producer = producer_config(settings)
    assert producer["acks"] == "all" and producer["enable_idempotence"] is True
    assert producer["compression_type"] == "gzip"
    assert producer["max_request_size"] >= dead_letter_bytes(
        settings.dead_letters.dlq_max_value_bytes)
    assert consumer["allow_auto_create_topics"] is producer["allow_auto_create_topics"] is False


def test_run_help_documents_every_setting(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for group, names in setting_groups(WorkerSettings).items():
        for name in names:
            assert f"--{name.replace('_', '-')}" in text, name
            assert f"--{group}.{name}".replace('_', '-') in text, name
    assert "--config" in text


def test_run_flags_beat_the_environment(monkeypatch):
    seen = {}
    monkeypatch.setenv("EUROVOC_MAX_IN_FLIGHT", "40")
    monkeypatch.setenv("EUROVOC_LINGER_MS", "11")
    monkeypatch.setattr("worker.app.run_worker", lambda settings: seen.setdefault("s", settings)
                        and 0)
    assert cli.main(["run", *REQUIRED_FLAGS, "--max-in-flight", "20", "--no-warmup",
                     "--consumer.max-poll-records", "7"]) == 0
    settings = seen["s"]
    assert (settings.engine.max_in_flight, settings.producer.linger_ms) == (20, 11)
    assert (settings.engine.warmup, settings.consumer.max_poll_records) == (False, 7)


def test_run_with_invalid_configuration_exits_2_naming_the_setting(capsys):
    assert cli.main(["run", *REQUIRED_FLAGS, "--max-in-flight", "-3"]) == 2
    assert "max_in_flight" in capsys.readouterr().err
    assert cli.main(["run", "--bootstrap-servers", "x:1"]) == 2
    assert "group_id" in capsys.readouterr().err


def test_sasl_and_tls_settings_reach_every_kafka_client(tmp_path):
    from worker.kafka.clients import security_config

    files = {}
    for name in ("ca.pem", "cert.pem", "key.pem"):
        files[name] = tmp_path / name
        files[name].write_text("-----BEGIN-----\n")
    settings = load_settings(
        **{**REQUIRED, "bootstrap_servers": "b1:9093, b2:9093"}, security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512", sasl_username="svc", sasl_password="s3cret",
        ssl_cafile=files["ca.pem"], ssl_certfile=files["cert.pem"], ssl_keyfile=files["key.pem"],
        ssl_password="keypass", ssl_check_hostname=False,
    )
    expected = {
        "bootstrap_servers": ["b1:9093", "b2:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": str(files["ca.pem"]),
        "ssl_certfile": str(files["cert.pem"]),
        "ssl_keyfile": str(files["key.pem"]),
        "ssl_password": "keypass",
        "ssl_check_hostname": False,
    }
    for config in (security_config(settings.kafka, "w"), consumer_config(settings),
                   producer_config(settings)):
        assert {name: config.get(name) for name in expected} == expected
    assert "s3cret" not in json.dumps(settings.redacted())


def test_plaintext_passes_no_security_options():
    config = consumer_config(load_settings(**REQUIRED, sasl_username="ignored"))
    assert config["security_protocol"] == "PLAINTEXT"
    assert not {name for name in config if name.startswith(("sasl_", "ssl_"))}


def test_ssl_alone_passes_tls_options_without_sasl(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    config = producer_config(load_settings(**REQUIRED, security_protocol="SSL", ssl_cafile=ca))
    assert (config["security_protocol"], config["ssl_cafile"]) == ("SSL", str(ca))
    assert config["ssl_check_hostname"] is True
    assert not {name for name in config if name.startswith("sasl_")}


@pytest.mark.parametrize("name", ["ssl_cafile", "ssl_certfile", "ssl_keyfile"])
def test_a_missing_tls_file_names_the_setting(tmp_path, name):
    with pytest.raises(ValidationError, match=name):
        load_settings(**REQUIRED, security_protocol="SSL", **{name: tmp_path / "missing.pem"})


def test_the_dead_letter_value_limit_is_never_below_the_largest_accepted_document():
    with pytest.raises(ValueError, match=(
            r"dlq_max_value_bytes=2000000 must not be below max_message_bytes=2097152")):
        load_settings(**REQUIRED, max_message_bytes=2 * 1024 * 1024,
                      dlq_max_value_bytes=2_000_000)
    raised = load_settings(**REQUIRED, max_message_bytes=2 * 1024 * 1024,
                           dlq_max_value_bytes=2 * 1024 * 1024)
    # The producer can send the largest dead letter, key and headers included.
    assert producer_config(raised)["max_request_size"] == dead_letter_bytes(2 * 1024 * 1024)


def test_a_too_small_dead_letter_value_limit_is_a_usage_error_of_run(capsys):
    assert cli.main(["run", *REQUIRED_FLAGS, "--dlq-max-value-bytes", "4096"]) == 2
    err = capsys.readouterr().err
    assert "dlq_max_value_bytes=4096" in err and "max_message_bytes=1000000" in err
