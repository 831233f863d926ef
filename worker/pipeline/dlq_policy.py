"""The dead-letter limit: it stops a worker which would dead-letter everything."""

from collections import deque


class DlqPolicy:
    """Counts outcomes in consumption order and trips on a systematic failure (after Arroyo's
    ``DlqLimit``): too many dead letters in a row, or too large a share of the recent records,
    means something is systematically wrong (a wrong topic, a broken model), and the worker must
    stop instead of draining its input into the dead-letter topic.

    * ``max_consecutive``: that many dead letters in a row (0 disables);
    * ``max_ratio`` of the last ``window`` records dead-lettered (>= 1.0 disables). The ratio is
      only judged once ``min(window, min_samples)`` records were seen, so the first bad record of
      a fresh worker does not count as 100 %.
    """

    def __init__(
        self,
        max_consecutive: int = 100,
        max_ratio: float = 0.5,
        window: int = 1000,
        min_samples: int = 100,
    ) -> None:
        self.max_consecutive = max_consecutive
        self.max_ratio = max_ratio
        self.window = window
        self.min_samples = min(min_samples, window)
        self._recent: deque[bool] = deque(maxlen=window)
        self._bad_in_window = 0
        self.consecutive = 0

    def _push(self, bad: bool) -> None:
        if len(self._recent) == self.window and self._recent[0]:
            self._bad_in_window -= 1
        self._recent.append(bad)
        if bad:
            self._bad_in_window += 1

    def record_ok(self, count: int = 1) -> None:
        self.consecutive = 0
        for _ in range(min(count, self.window)):
            self._push(False)

    def check(self, reason: str) -> str | None:
        """Would one more dead letter (of ``reason``) break the limit? Return the cause, or None.

        Does not record anything: call ``record_dead_letter`` once the record is accepted.
        """
        consecutive = self.consecutive + 1
        if self.max_consecutive and consecutive >= self.max_consecutive:
            return (f"dead-letter limit: {consecutive} consecutive records dead-lettered "
                    f"(limit {self.max_consecutive}; last reason {reason})")
        if self.max_ratio < 1.0:
            seen = min(len(self._recent) + 1, self.window)
            bad = self._bad_in_window + 1
            if len(self._recent) == self.window and self._recent[0]:
                bad -= 1
            if seen >= self.min_samples and bad / seen >= self.max_ratio:
                return (f"dead-letter limit: {bad} of the last {seen} records dead-lettered "
                        f"({bad / seen:.0%} >= {self.max_ratio:.0%}; last reason {reason})")
        return None

    def record_dead_letter(self, reason: str) -> None:
        self.consecutive += 1
        self._push(True)
