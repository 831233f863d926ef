"""``eurovoc-worker run`` as a user runs it: help, configuration errors, exit codes."""

import os
import shutil
import subprocess
import sys

import pytest

from worker.config import WorkerSettings

pytestmark = pytest.mark.e2e

REQUIRED = ["--bootstrap-servers", "127.0.0.1:1", "--input-topic", "docs", "--output-topic",
            "labels", "--dlq-topic", "dead", "--group-id", "g"]


def _command() -> list[str]:
    script = shutil.which("eurovoc-worker", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "worker.cli"]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EUROVOC_")}
    environment.update(env or {})
    return subprocess.run([*_command(), *args], capture_output=True, text=True, timeout=120,
                          env=environment)


def test_run_help_documents_every_setting():
    result = _run("run", "--help")
    assert result.returncode == 0
    for name in WorkerSettings.model_fields:
        assert f"--{name.replace('_', '-')}" in result.stdout, name
    assert "EUROVOC_" in result.stdout


def test_invalid_setting_fails_at_start_up_naming_it():
    result = _run("run", *REQUIRED, "--model", "/nowhere", "--max-in-flight", "0")
    assert result.returncode == 2
    assert "max_in_flight" in result.stderr


def test_invalid_environment_variable_names_the_setting():
    result = _run("run", *REQUIRED, "--model", "/nowhere",
                  env={"EUROVOC_COMMIT_INTERVAL_MS": "soon"})
    assert result.returncode == 2
    assert "commit_interval_ms" in result.stderr


def test_a_missing_checkpoint_is_a_configuration_error(tmp_path):
    result = _run("run", *REQUIRED, "--model", str(tmp_path), "--metrics-port", "-1")
    assert result.returncode == 2
    assert "model" in result.stderr
