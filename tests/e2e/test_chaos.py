"""``python bench/chaos.py --small --json`` as the issue asks: both delivery modes through two
SIGKILLs and a broker restart, with poison records, and the targets asserted on its report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
KEYS = {"in", "out_distinct", "lost", "duplicated", "dead_lettered", "recovery_s",
        "survivor_gap_s", "faults"}
MAX_IN_FLIGHT, RATE, COMMIT_INTERVAL_S = 256, 15.0, 1.0


@pytest.mark.timeout(900)
def test_small_chaos_run_meets_the_targets(tmp_path):
    output = tmp_path / "chaos_small.json"
    result = subprocess.run(
        [sys.executable, "bench/chaos.py", "--small", "--json", "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=880)
    assert result.returncode == 0, result.stderr[-5000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == json.loads(output.read_text())
    assert set(report) == {"at_least_once", "exactly_once", "config"}
    for mode in ("at_least_once", "exactly_once"):
        run = report[mode]
        assert KEYS <= set(run), mode
        assert [fault["type"] for fault in run["faults"]].count("sigkill") == 2
        assert [fault["type"] for fault in run["faults"]].count("broker") == 1
        assert run["in"] > 1900 and run["lost"] == 0, (mode, run)
        assert run["out_distinct"] == run["in"]
        assert run["dead_lettered"] == run["poison_in"], (mode, run)  # with the right error.type
        assert len(run["recovery_s"]) == len(run["faults"])
        assert None not in run["recovery_s"], (mode, run)  # every partition flowed again
    assert report["exactly_once"]["duplicated"] == 0, report["exactly_once"]
    kills = 2
    assert report["at_least_once"]["duplicated"] <= kills * (
        MAX_IN_FLIGHT + RATE * COMMIT_INTERVAL_S), report["at_least_once"]
