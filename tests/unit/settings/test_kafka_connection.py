"""Kafka connection settings: the SASL password from a file, never shown."""

import json
import os

import pytest
from pydantic import ValidationError

from tests.unit.settings.test_worker_settings import REQUIRED, REQUIRED_FLAGS
from worker.commands import cli
from worker.kafka.clients import consumer_config, producer_config
from worker.settings.worker_settings import load_settings

SCRAM = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
         "sasl_username": "svc"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in [name for name in os.environ if name.startswith("EUROVOC_")]:
        monkeypatch.delenv(name)


def test_the_password_comes_from_a_file_and_reaches_every_client(tmp_path):
    secret = tmp_path / "sasl-password"
    secret.write_text("correct horse\n")
    settings = load_settings(**REQUIRED, **SCRAM, sasl_password_file=secret)
    for config in (consumer_config(settings), producer_config(settings)):
        assert config["sasl_plain_password"] == "correct horse"
        assert config["sasl_plain_username"] == "svc"
    assert "correct horse" not in json.dumps(settings.redacted())
    assert "correct horse" not in repr(settings)


def test_the_password_file_is_read_again_for_each_client(tmp_path):
    secret = tmp_path / "sasl-password"
    secret.write_text("first")
    settings = load_settings(**REQUIRED, **SCRAM, sasl_password_file=secret)
    secret.write_text("rotated")
    assert consumer_config(settings)["sasl_plain_password"] == "rotated"


def test_the_password_file_comes_from_the_environment(tmp_path, monkeypatch):
    secret = tmp_path / "p"
    secret.write_text("from-env-file")
    monkeypatch.setenv("EUROVOC_SASL_PASSWORD_FILE", str(secret))
    settings = load_settings(**REQUIRED, **SCRAM)
    assert settings.kafka.read_sasl_password().get_secret_value() == "from-env-file"


def test_the_grouped_variable_names_the_password_file_too(tmp_path, monkeypatch):
    secret = tmp_path / "p"
    secret.write_text("grouped")
    monkeypatch.setenv("EUROVOC_KAFKA__SASL_PASSWORD_FILE", str(secret))
    settings = load_settings(**REQUIRED, **SCRAM)
    assert consumer_config(settings)["sasl_plain_password"] == "grouped"


@pytest.mark.parametrize(
    ("extra", "content", "message"),
    [
        ({"sasl_password": "x"}, "y", "not both"),
        ({}, None, "cannot be read"),
        ({}, "\n", "empty"),
    ],
)
def test_a_bad_password_file_is_a_clear_error(tmp_path, extra, content, message):
    secret = tmp_path / "sasl-password"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ValidationError, match=message) as raised:
        load_settings(**REQUIRED, **SCRAM, sasl_password_file=secret, **extra)
    assert "sasl_password" in str(raised.value)


def test_scram_without_any_password_names_both_settings():
    with pytest.raises(ValidationError, match="sasl_password or sasl_password_file"):
        load_settings(**REQUIRED, **SCRAM)


def test_a_configuration_error_never_prints_the_password(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EUROVOC_SASL_PASSWORD", "hunter2-secret")
    flags = ["--security-protocol", "SASL_SSL", "--sasl-mechanism", "SCRAM-SHA-512",
             "--sasl-username", "svc", "--max-in-flight", "-1"]
    assert cli.main(["run", *REQUIRED_FLAGS, *flags]) == 2
    captured = capsys.readouterr()
    assert "max_in_flight" in captured.err
    assert "hunter2-secret" not in captured.err + captured.out
