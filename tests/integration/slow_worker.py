"""``python -m tests.integration.slow_worker run ...``: the real worker with every model batch
slowed by ``$EUROVOC_TEST_BATCH_DELAY_S`` seconds (test only; production code has no such hook)."""

import os
import sys
import time

from worker.inference import model_runner

_DELAY_S = float(os.environ.get("EUROVOC_TEST_BATCH_DELAY_S", "0"))
_score_batch = model_runner.ModelRunner.score_batch


def _slow_score_batch(self, sequences):
    time.sleep(_DELAY_S)
    return _score_batch(self, sequences)


model_runner.ModelRunner.score_batch = _slow_score_batch

if __name__ == "__main__":
    from worker.commands.cli import main

    sys.exit(main())
