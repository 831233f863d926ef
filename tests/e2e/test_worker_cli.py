"""``eurovoc-worker run`` as a user runs it: help, configuration errors, exit codes."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.tiny_checkpoint import make_tiny_checkpoint
from worker.settings.worker_settings import WorkerSettings, setting_groups

pytestmark = pytest.mark.e2e

REQUIRED = ["--bootstrap-servers", "127.0.0.1:1", "--input-topic", "docs", "--output-topic",
            "labels", "--dlq-topic", "dead", "--group-id", "g"]


def _command() -> list[str]:
    script = shutil.which("eurovoc-worker", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "worker.commands.cli"]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EUROVOC_")}
    environment.update(env or {})
    return subprocess.run([*_command(), *args], capture_output=True, text=True, timeout=120,
                          env=environment)


def test_run_help_documents_every_setting():
    result = _run("run", "--help")
    assert result.returncode == 0
    for names in setting_groups(WorkerSettings).values():
        for name in names:
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


def test_engine_settings_that_do_not_fit_the_checkpoint_exit_2_naming_the_setting(tmp_path):
    # Fault 3: a ValueError from building the engine escaped as a traceback with exit 1.
    make_tiny_checkpoint(tmp_path, max_length=64)
    result = _run("run", *REQUIRED, "--model", str(tmp_path), "--max-batch-tokens", "32",
                  "--metrics-port", "-1")
    assert result.returncode == 2, result.stderr
    assert "max_batch_tokens=32 cannot hold one sequence of max_length=64" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_removed_setting_names_its_replacement():
    result = _run("run", *REQUIRED, "--model", "/nowhere",
                  env={"EUROVOC_MAX_QUEUED_DOCUMENTS": "64"})
    assert result.returncode == 2
    assert "max_queued_documents was removed: max_in_flight is the one capacity knob" in (
        result.stderr)
