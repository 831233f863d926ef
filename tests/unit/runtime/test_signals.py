"""SIGTERM/SIGINT while a command runs (worker.runtime.signals): the stop, the second signal."""

import os
import signal

import pytest

from worker.runtime.signals import StopSignals


def test_a_signal_asks_to_stop_once_and_the_handlers_come_back_after():
    stops: list[str] = []
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    with StopSignals(stops.append) as signals:
        assert signals.signum is None
        os.kill(os.getpid(), signal.SIGINT)
        assert (stops, signals.signum) == (["SIGINT"], signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)  # no exit without second_exits: the latest is kept
        assert (stops, signals.signum) == (["SIGINT"], signal.SIGTERM)
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_a_second_signal_exits_at_once_with_128_plus_its_number(capfd):
    exits: list[int] = []

    def exit_(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    with StopSignals(second_exits=True, exit=exit_):
        os.kill(os.getpid(), signal.SIGTERM)
        assert exits == []
        with pytest.raises(SystemExit):
            os.kill(os.getpid(), signal.SIGINT)
    assert exits == [128 + signal.SIGINT]
    assert '"msg":"second SIGINT: exiting at once"' in capfd.readouterr().err
