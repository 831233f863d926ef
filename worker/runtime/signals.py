"""SIGTERM and SIGINT while a command runs: one handler for every command (``run``,
``replay-dlq``)."""

import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Self

from worker.exit_codes import signal_exit_code

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Within the ``with`` block, SIGTERM and SIGINT ask the command to stop; the previous
    handlers are restored after it.

    Each signal is kept in ``signum`` (the latest: the command's exit code is then
    ``signal_exit_code(signum)``); the first also calls ``on_stop(name)``, from the signal
    handler, so it must only set flags. With ``second_exits`` a second signal does not wait for
    the stop: it writes one JSON log line to stderr and ends the process at once with
    128 + its number (through ``exit``, a test seam; ``os._exit`` skips every ``finally``).
    """

    def __init__(self, on_stop: Callable[[str], None] = lambda _name: None, *,
                 second_exits: bool = False, exit: Callable[[int], None] = os._exit) -> None:
        self._on_stop = on_stop
        self._second_exits = second_exits
        self._exit = exit
        self._previous: dict[int, object] = {}
        self.signum: int | None = None

    def __enter__(self) -> Self:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        first = self.signum is None
        self.signum = signum
        name = signal.Signals(signum).name
        if first:
            self._on_stop(name)
        elif self._second_exits:
            os.write(2, f'{{"level":"ERROR","msg":"second {name}: exiting at once"}}\n'.encode())
            self._exit(signal_exit_code(signum))
