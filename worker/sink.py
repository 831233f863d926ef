"""Producer wrapper: sends outputs and dead letters, records broker acknowledgements.

No ``flush()`` per batch: each ``send`` registers a callback and an errback that append
``(token, None | exception)`` to a thread-safe deque (they run on the producer's IO thread and do
nothing else); the loop thread takes the completions with :meth:`Sink.drain`, advances its
watermarks and decides about retries. A send that raises synchronously (no metadata within
``max_block_ms``, a record over ``max_request_size``) is reported the same way, as a failed
completion, so every path ends in exactly one completion per send.
"""

import logging
import threading
from collections import deque
from typing import Any

from kafka import KafkaProducer

logger = logging.getLogger(__name__)


class Sink:
    def __init__(self, producer: KafkaProducer) -> None:
        self._producer = producer
        self._completions: deque[tuple[Any, BaseException | None]] = deque()
        self._signal = threading.Event()
        self.sent = 0

    # Runs on the producer IO thread: append and return.
    def _on_success(self, token: Any, _metadata: Any) -> None:
        self._completions.append((token, None))
        self._signal.set()

    def _on_error(self, token: Any, exc: BaseException) -> None:
        self._completions.append((token, exc))
        self._signal.set()

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        token: Any,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Send one record; exactly one completion for ``token`` will follow."""
        self.sent += 1
        try:
            future = self._producer.send(topic, value=value, key=key, headers=headers)
        except Exception as exc:  # noqa: BLE001 - reported as a failed delivery
            self._on_error(token, exc)
            return
        future.add_callback(self._on_success, token)
        future.add_errback(self._on_error, token)

    def drain(self) -> list[tuple[Any, BaseException | None]]:
        """Completions since the last call (loop thread)."""
        self._signal.clear()
        completions = self._completions
        out = []
        while completions:
            out.append(completions.popleft())
        return out

    def wait(self, timeout: float) -> bool:
        """Block until a completion arrives or ``timeout`` seconds pass."""
        if self._completions:
            return True
        return self._signal.wait(timeout)

    def close(self, timeout: float) -> None:
        try:
            self._producer.close(timeout=timeout)
        except Exception:  # noqa: BLE001 - closing on the way out
            logger.warning("producer close failed", exc_info=True)
