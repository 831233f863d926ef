"""Token-budget micro-batching policy (:class:`TokenBudgetBatcher`) and the pad multiple."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Generic, TypeVar

T = TypeVar("T")

PAD_MULTIPLE = 8
"""GPU batches (inference and training) are padded to a multiple of this many tokens
(tensor-core friendly shapes)."""


def pad_multiple(device_type: str) -> int:
    """What a batch on ``device_type`` is padded to a multiple of: ``PAD_MULTIPLE`` on CUDA; 1 on
    a CPU, which computes every padded token for nothing (a batch is its longest sequence)."""
    return PAD_MULTIPLE if device_type == "cuda" else 1


def padded_length(length: int, multiple: int = PAD_MULTIPLE) -> int:
    """``length`` rounded up to a multiple of ``multiple`` (at least one multiple)."""
    return max(multiple, -(-length // multiple) * multiple)


@dataclass(slots=True)
class Pending(Generic[T]):
    """One sequence waiting in the batcher."""

    payload: T
    length: int
    padded: int
    added_at: float
    seq: int = field(compare=False)


def batch_cost(entries: Sequence[Pending]) -> int:
    """Padded tokens of a batch: longest padded length x number of sequences."""
    return max((entry.padded for entry in entries), default=0) * len(entries)


class TokenBudgetBatcher(Generic[T]):
    """Groups pending sequences into padded batches under a token budget and a size cap: a pure
    object, no threads, the clock injected.

    Sequences are added with their token length. A batch's cost is what the model computes once
    the batch is padded: ``longest sequence rounded up to pad_multiple x number of sequences``.

    A batch is ready when

    1. a *full* batch can be formed: a group of similar-length pending sequences to which one
       more sequence (the next longer one, or one as long as its longest) would break
       ``max_batch_tokens`` or ``max_batch_size``, or
    2. the oldest pending sequence has waited ``max_wait`` (its timer starts when IT arrives, so
       a lone sequence never waits longer than that for company).

    Full batches are chosen among runs of consecutive lengths (pending sequences sorted by padded
    length), picking the run with the least padding. That alone could starve a long sequence
    behind an endless stream of short ones, so once the oldest sequence has waited ``max_wait``
    the next batch is built around it: it always goes in, joined by the pending sequences
    nearest to its length, as long as the batch's longest padded sequence stays within twice its
    shortest (extra sequences that would mostly be padding are left for a batch of their own,
    which comes right after).
    """

    def __init__(
        self,
        *,
        max_batch_tokens: int,
        max_batch_size: int,
        max_wait_s: float,
        clock: Callable[[], float],
        pad_multiple: int = PAD_MULTIPLE,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_batch_tokens < pad_multiple:
            raise ValueError("max_batch_tokens must hold at least one padded sequence")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must not be negative")
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.pad_multiple = pad_multiple
        self._clock = clock
        self._pending: dict[int, Pending[T]] = {}  # insertion order == arrival order
        self._seq = count()

    # -- state -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, payload: T, length: int) -> Pending[T]:
        """Queue one sequence of ``length`` real tokens; its wait timer starts now."""
        if length < 1:
            raise ValueError("a sequence has at least one token")
        padded = padded_length(length, self.pad_multiple)
        if padded > self.max_batch_tokens:
            raise ValueError(
                f"a sequence of {length} tokens (padded {padded}) exceeds max_batch_tokens="
                f"{self.max_batch_tokens}"
            )
        seq = next(self._seq)
        entry = Pending(payload, length, padded, self._clock(), seq)
        self._pending[seq] = entry
        return entry

    def remove(self, predicate: Callable[[T], bool]) -> list[Pending[T]]:
        """Drop and return the pending sequences whose payload matches ``predicate``."""
        dropped = [entry for entry in self._pending.values() if predicate(entry.payload)]
        for entry in dropped:
            del self._pending[entry.seq]
        return dropped

    def oldest(self) -> Pending[T] | None:
        return next(iter(self._pending.values()), None)

    def deadline(self) -> float | None:
        """Clock time at which the oldest pending sequence will have waited ``max_wait``."""
        oldest = self.oldest()
        return None if oldest is None else oldest.added_at + self.max_wait_s

    def is_ready(self, now: float | None = None) -> bool:
        if not self._pending:
            return False
        now = self._clock() if now is None else now
        return self._expired(now) or self._full_batch_possible()

    def time_until_ready(self, now: float | None = None) -> float | None:
        """0 when a batch is ready, None when nothing is pending, else seconds to the deadline."""
        if not self._pending:
            return None
        now = self._clock() if now is None else now
        if self.is_ready(now):
            return 0.0
        return max(0.0, self.deadline() - now)

    # -- selection ---------------------------------------------------------------------------

    def next_batch(self, *, now: float | None = None) -> list[Pending[T]]:
        """Remove and return the next batch (arrival order), or ``[]`` when none is ready."""
        if not self._pending:
            return []
        now = self._clock() if now is None else now
        ordered = sorted(self._pending.values(), key=lambda entry: (entry.padded, entry.seq))
        if self._expired(now):
            chosen = self._around_oldest(ordered)
        else:
            chosen = self._best_full_run(ordered)
            if not chosen:
                return []
        chosen.sort(key=lambda entry: entry.seq)
        for entry in chosen:
            del self._pending[entry.seq]
        return chosen

    def _expired(self, now: float) -> bool:
        oldest = self.oldest()
        return oldest is not None and now - oldest.added_at >= self.max_wait_s

    def _fits(self, longest: int, size: int) -> bool:
        return size <= self.max_batch_size and longest * size <= self.max_batch_tokens

    def _full_batch_possible(self) -> bool:
        # A run is full when one more sequence of its longest length would break a limit. The
        # run of the shortest sequences is the largest; if taking every pending sequence (plus
        # one) breaks a limit, some run is full, else none is.
        longest = max(entry.padded for entry in self._pending.values())
        return not self._fits(longest, len(self._pending) + 1)

    def _best_full_run(self, ordered: list[Pending[T]]) -> list[Pending[T]]:
        """The full run of consecutive (by length) sequences with the least padding, or []."""
        n = len(ordered)
        prefix = [0]
        for entry in ordered:
            prefix.append(prefix[-1] + entry.length)
        best: tuple[float, int, int] | None = None
        end = 0
        for start in range(n):
            end = max(end, start + 1)
            # the end of the longest run from ``start`` never moves backwards as start grows
            while end < n and self._fits(ordered[end].padded, end + 1 - start):
                end += 1
            if end == n and self._fits(ordered[end - 1].padded, end + 1 - start):
                break  # ran out of sequences below the limits: this run and later ones not full
            padded = ordered[end - 1].padded * (end - start)
            efficiency = (prefix[end] - prefix[start]) / padded
            if best is None or efficiency > best[0]:
                best = (efficiency, start, end)
        if best is None:
            return []
        return ordered[best[1] : best[2]]

    def _around_oldest(self, ordered: list[Pending[T]]) -> list[Pending[T]]:
        """The oldest sequence plus its nearest-length neighbours, within a 2x length ratio."""
        oldest = self.oldest()
        anchor = next(i for i, entry in enumerate(ordered) if entry.seq == oldest.seq)
        target = oldest.padded
        lo, hi = anchor, anchor + 1  # the batch is ordered[lo:hi]
        while hi - lo < self.max_batch_size:
            shortest, longest = ordered[lo].padded, ordered[hi - 1].padded
            candidates = []
            if lo > 0:
                length = ordered[lo - 1].padded
                if 2 * length >= longest and self._fits(longest, hi - lo + 1):
                    candidates.append((target - length, 0, "left"))
            if hi < len(ordered):
                length = ordered[hi].padded
                if length <= 2 * shortest and self._fits(length, hi - lo + 1):
                    candidates.append((length - target, 1, "right"))
            if not candidates:
                break
            if min(candidates)[2] == "left":
                lo -= 1
            else:
                hi += 1
        return ordered[lo:hi]
