"""``eurovoc-train`` on an install without the ``[train]`` extra: one line naming the extra, exit
2 (simulated in a fresh interpreter whose ``sitecustomize`` makes those imports fail)."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from model_training.cli import main
from model_training.extras import INSTALL_HINT, TRAIN_PACKAGES

REPO = Path(__file__).resolve().parents[3]
BLOCKER = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None  # import fails\n"


def eurovoc_train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``eurovoc-train ARGS`` where none of the training extra's packages can be imported."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(names=sorted(TRAIN_PACKAGES)))
    path = [str(tmp_path), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return subprocess.run(
        [sys.executable, "-m", "model_training.cli", *args],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
    )


def test_the_extra_lists_exactly_the_packages_that_are_checked():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert {Requirement(line).name for line in extras["train"]} == set(TRAIN_PACKAGES.values())
    assert INSTALL_HINT == "pip install 'eurovoc-stream[train]'"


@pytest.mark.parametrize("command", [["baseline"], ["train", "--profile", "cpu-quick"]])
def test_without_the_extra_eurovoc_train_names_it_and_exits_2(tmp_path, command):
    result = eurovoc_train(tmp_path, *command)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert INSTALL_HINT in line and "accelerate, scikit-learn, matplotlib" in line
    assert "Traceback" not in result.stderr


def test_predict_is_the_workers_command_and_needs_no_extra(tmp_path):
    result = eurovoc_train(tmp_path, "predict", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: eurovoc-worker classify")


def test_predict_passes_every_argument_to_classify(tmp_path, capsys, caplog):
    with pytest.raises(SystemExit) as exited:
        main(["predict", "--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    assert "--long-documents" in help_text and "--max-in-flight" in help_text
    missing = tmp_path / "missing.jsonl"
    assert main(["predict", "--model", str(tmp_path), str(missing), "-o", "-"]) == 2
    assert f"input {missing} does not exist" in caplog.text
