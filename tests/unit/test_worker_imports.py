"""The worker's command line imports none of the training extra's packages, and ``run --help``
not even torch or transformers: each checked in a fresh interpreter."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRAINING_ONLY = ("accelerate", "sklearn", "matplotlib")
ENGINE = ("torch", "transformers")


def imported_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter has imported after running ``code``."""
    probe = (f"{code}\nimport json, sys\n"
             "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, env=env,
                            cwd=REPO, timeout=120, check=True)
    return set(json.loads(result.stdout.decode().splitlines()[-1]))


def test_the_worker_command_line_imports_no_training_package():
    modules = imported_after("import worker.commands.cli")
    assert "worker" in modules
    assert not modules & set(TRAINING_ONLY)


def test_run_help_imports_neither_the_training_packages_nor_the_engine():
    modules = imported_after(
        "import contextlib, io\n"
        "from worker.commands.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, "
        "contextlib.suppress(SystemExit):\n"
        "    main(['run', '--help'])\n"
        "assert '--bootstrap-servers' in out.getvalue()"
    )
    assert not modules & {*TRAINING_ONLY, *ENGINE}
