"""The base of the watchdog's and the topic watch's threads."""

import threading
from typing import Self


class Periodic:
    """Calls ``tick()`` every ``interval_s`` on a daemon thread named ``name`` until ``stop()``
    or until ``tick()`` returns ``False``; ``stop()`` waits up to ``stop_wait_s`` for the
    round in progress."""

    def __init__(self, name: str, interval_s: float, stop_wait_s: float = 0.0) -> None:
        self._interval_s = interval_s
        self._stop_wait_s = stop_wait_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def tick(self) -> bool | None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._stop_wait_s and self._thread.is_alive():
            self._thread.join(self._stop_wait_s)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            if self.tick() is False:
                return
