"""The console script's start-up: the command line never loads the model stack just to parse."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "argv",
    [
        ["produce", "docs.jsonl", "--topic", "t"],
        ["tail", "--topic", "t"],
        ["classify", "in.jsonl", "-o", "out.jsonl", "--model", "m", "--long-documents", "chunk"],
        ["run", "--bootstrap-servers", "x:1", "--max-in-flight", "3"],
        ["replay-dlq", "--bootstrap-servers", "x:1", "--dlq-topic", "d", "--input-topic", "i"],
    ],
)
def test_parsing_any_command_imports_neither_torch_nor_transformers(argv):
    code = (
        "import sys\n"
        "from worker.commands.cli import build_parser\n"
        f"build_parser().parse_args({argv!r})\n"
        "heavy = sorted({'torch', 'transformers'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_an_invalid_run_configuration_fails_before_the_model_stack_is_imported():
    code = (
        "import sys\n"
        "from worker.commands.cli import main\n"
        "code = main(['run', '--bootstrap-servers', 'x:1', '--max-in-flight', '0'])\n"
        "assert code == 2, code\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "max_in_flight" in result.stderr
