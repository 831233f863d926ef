"""The base of the watchdog's and the topic watch's threads, and the bound on calls that may
block on the way out."""

import logging
import threading
from collections.abc import Callable
from typing import Self

logger = logging.getLogger(__name__)


class Periodic:
    """Calls ``tick()`` every ``interval_s`` on a daemon thread named ``name`` until ``stop()``
    or until ``tick()`` returns ``False``; ``stop()`` waits up to ``stop_wait_s`` for the
    round in progress.

    The thread outlives anything ``tick()`` raises: the first failure of a kind is logged with
    its traceback, repeats of it are counted, and the next good round logs that it recovered."""

    def __init__(self, name: str, interval_s: float, stop_wait_s: float = 0.0) -> None:
        self._interval_s = interval_s
        self._stop_wait_s = stop_wait_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._failure: str | None = None
        self._failures = 0

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
            if self._guarded_tick() is False:
                return

    def _guarded_tick(self) -> bool | None:
        # BaseException: a thread gets no KeyboardInterrupt, and a SystemExit raised in a check
        # would otherwise end the thread without a word.
        try:
            result = self.tick()
        except BaseException as exc:  # noqa: BLE001 - the thread must outlive its checks
            self._on_failure(exc)
            return None
        if self._failure is not None:
            logger.warning("%s recovered after %d failed rounds", self._thread.name,
                           self._failures, extra={"event": "check_recovered"})
            self._failure, self._failures = None, 0
        return result

    def _on_failure(self, exc: BaseException) -> None:
        self._failures += 1
        failure = f"{type(exc).__name__}: {exc}"
        if failure != self._failure:
            self._failure = failure
            logger.error("%s: a round failed (%s); the thread goes on", self._thread.name,
                         failure, exc_info=exc, extra={"event": "check_failed"})


def call_within(name: str, call: Callable[[], object], timeout_s: float) -> bool:
    """Run ``call`` (a close or stop that may block: kafka-python's ``close()`` joins its IO
    thread without a time-out) on a daemon thread and wait for it at most ``timeout_s``;
    return whether it finished. What it raises, or that it did not finish, is logged: on the
    way out, one stuck step must not keep the others, or the process, from ending."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    thread = threading.Thread(target=run, name=f"eurovoc-close-{name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        logger.warning("%s did not finish within %.1fs; left behind", name, timeout_s,
                       extra={"event": "close_timeout", "step": name})
        return False
    if failed:
        logger.warning("%s failed", name, exc_info=failed[0])
        return False
    return True
