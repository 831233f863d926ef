"""``python -m tests.integration.flaky_txn_worker run ...``: the real worker whose transactional
producer fails ``send_offsets_to_transaction`` on the calls numbered in
``$EUROVOC_TEST_FAIL_OFFSETS_CALLS`` (e.g. ``3,7``), after the transaction's outputs were sent
and flushed: an error in the middle of a transaction (test only; production code has no such
hook)."""

import os
import sys

from kafka import KafkaProducer
from kafka.errors import KafkaConnectionError

_FAIL = {int(n) for n in os.environ.get("EUROVOC_TEST_FAIL_OFFSETS_CALLS", "").split(",") if n}
_send_offsets = KafkaProducer.send_offsets_to_transaction
_calls = [0]


def _flaky_send_offsets(self, offsets, group_metadata):
    _calls[0] += 1
    if _calls[0] in _FAIL:
        raise KafkaConnectionError(f"injected failure of send_offsets_to_transaction #{_calls[0]}")
    return _send_offsets(self, offsets, group_metadata)


KafkaProducer.send_offsets_to_transaction = _flaky_send_offsets

if __name__ == "__main__":
    from worker.commands.cli import main

    sys.exit(main())
