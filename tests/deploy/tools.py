"""The external tools of the deploy tests (kustomize, promtool), as ``make tools`` installs them.

A test whose tool is missing is skipped on a developer's machine and fails with ``CI=true``: CI
must prove what the README claims.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _cached(name: str) -> Path | None:
    tools = Path(os.environ.get("EUROVOC_CACHE", Path.home() / ".cache" / "eurovoc-stream")) / "tools"
    found = sorted(tools.glob(f"*/{name}")) if tools.is_dir() else []
    return found[-1] if found else None


def tool(name: str) -> str:
    """Path of ``name``: ``$NAME`` (set by the Makefile), the tools cache, or ``PATH``."""
    candidates = [os.environ.get(name.upper()), _cached(name), shutil.which(name)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    message = f"{name} is not installed (`make tools` installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; with CI=true every deploy test must run")
    pytest.skip(message)


def run_tool(name: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool(name), *args], capture_output=True, text=True, cwd=cwd, timeout=180, check=False
    )
