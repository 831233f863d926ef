"""The bound on closing steps (worker.runtime.periodic.call_within)."""

import logging
import threading
import time

from worker.runtime.periodic import call_within


def test_a_call_that_finishes_is_waited_for():
    done = []
    assert call_within("quick", lambda: done.append(1), 5.0) is True
    assert done == [1]


def test_a_call_that_blocks_is_left_behind_at_its_deadline(caplog):
    release = threading.Event()
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="worker.runtime.periodic"):
            assert call_within("admin client close", release.wait, 0.2) is False
        assert 0.2 <= time.monotonic() - started < 2.0
    finally:
        release.set()
    assert caplog.records[0].getMessage() == (
        "admin client close did not finish within 0.2s; left behind")


def test_what_a_call_raises_is_logged_not_raised(caplog):
    def fails() -> None:
        raise OSError("socket already closed")

    with caplog.at_level(logging.WARNING, logger="worker.runtime.periodic"):
        assert call_within("producer close", fails, 5.0) is False
    [record] = caplog.records
    assert record.getMessage() == "producer close failed"
    assert "socket already closed" in str(record.exc_info[1])
