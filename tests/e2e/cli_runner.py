"""Run the console scripts as a user would (from the venv that runs the tests)."""

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run_cli(script: str, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / script), *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )
