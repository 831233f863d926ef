"""The token-budget batching policy, driven by a fake clock."""

import pytest

from worker.inference.batching import (
    PAD_MULTIPLE,
    TokenBudgetBatcher,
    batch_cost,
    pad_multiple,
    padded_length,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(clock, *, tokens=1024, size=64, wait=0.020) -> TokenBudgetBatcher[str]:
    return TokenBudgetBatcher(
        max_batch_tokens=tokens, max_batch_size=size, max_wait_s=wait, clock=clock
    )


def payloads(batch) -> list[str]:
    return [entry.payload for entry in batch]


def test_the_pad_multiple_depends_on_the_device():
    assert (PAD_MULTIPLE, pad_multiple("cuda"), pad_multiple("cpu")) == (8, 8, 1)
    assert [padded_length(n, pad_multiple("cpu")) for n in (1, 7, 9)] == [1, 7, 9]


def test_padded_length_and_cost():
    assert [padded_length(n) for n in (1, 7, 8, 9, 16, 17)] == [8, 8, 8, 16, 16, 24]
    clock = FakeClock()
    batcher = make(clock)
    entries = [batcher.add("a", 5), batcher.add("b", 17)]
    assert batch_cost(entries) == 24 * 2


def test_not_ready_until_a_limit_or_the_wait():
    clock = FakeClock()
    batcher = make(clock, tokens=1024, size=64, wait=0.020)
    batcher.add("a", 100)
    batcher.add("b", 100)
    assert not batcher.is_ready()
    assert batcher.next_batch() == []
    assert batcher.time_until_ready() == pytest.approx(0.020)
    clock.advance(0.019)
    assert batcher.next_batch() == []
    clock.advance(0.001)
    assert batcher.is_ready()
    assert payloads(batcher.next_batch()) == ["a", "b"]
    assert len(batcher) == 0
    assert batcher.time_until_ready() is None


def test_budget_closes_a_batch_at_the_padded_cost():
    clock = FakeClock()
    # each sequence of 100 tokens pads to 104; 4 x 104 = 416 fits a 450 budget, 5 do not
    batcher = make(clock, tokens=450, size=64)
    for name in "abcd":
        batcher.add(name, 100)
    # a fifth 104-token sequence would overflow, so four already make a full batch
    assert batcher.is_ready()
    batcher.add("e", 100)
    batch = batcher.next_batch()
    assert payloads(batch) == ["a", "b", "c", "d"]
    assert batch_cost(batch) == 416 <= 450
    assert payloads(batcher.next_batch()) == []  # "e" alone is not full and not late
    clock.advance(0.02)
    assert payloads(batcher.next_batch()) == ["e"]


def test_budget_counts_the_longest_sequence_for_every_row():
    clock = FakeClock()
    batcher = make(clock, tokens=512, size=64)
    batcher.add("short", 8)
    batcher.add("long", 200)  # pads to 200: 2 x 200 = 400 fits, a third row would be 600
    assert batcher.is_ready()
    batch = batcher.next_batch()
    assert batch_cost(batch) <= 512


def test_size_closes_a_batch():
    clock = FakeClock()
    batcher = make(clock, tokens=100_000, size=3)
    for name in "abcd":
        batcher.add(name, 10)
    assert batcher.is_ready()
    assert payloads(batcher.next_batch()) == ["a", "b", "c"]
    assert not batcher.is_ready()
    assert len(batcher) == 1


def test_groups_similar_lengths_to_minimise_padding():
    clock = FakeClock()
    batcher = make(clock, tokens=4096, size=4)
    lengths = {"s1": 10, "L1": 500, "s2": 12, "L2": 510, "s3": 9, "L3": 505, "s4": 11, "L4": 498}
    for name, length in lengths.items():
        batcher.add(name, length)
    first = batcher.next_batch()
    second = batcher.next_batch()
    groups = sorted([sorted(payloads(first)), sorted(payloads(second))])
    assert groups == [["L1", "L2", "L3", "L4"], ["s1", "s2", "s3", "s4"]]
    assert sorted([batch_cost(first), batch_cost(second)]) == [16 * 4, 512 * 4]


def test_prefers_the_run_with_least_padding():
    clock = FakeClock()
    batcher = make(clock, tokens=100_000, size=2)
    for name, length in [("a", 8), ("b", 64), ("c", 120), ("d", 128), ("e", 300)]:
        batcher.add(name, length)
    # runs of two: (8,64) (64,120) (120,128) (128,300); (120,128) pads least
    assert sorted(payloads(batcher.next_batch())) == ["c", "d"]


def test_wait_timer_starts_at_the_first_item():
    clock = FakeClock()
    batcher = make(clock, wait=0.020)
    batcher.add("first", 10)
    clock.advance(0.015)
    batcher.add("second", 10)  # must not restart the timer
    assert batcher.deadline() == pytest.approx(0.020)
    clock.advance(0.005)
    assert payloads(batcher.next_batch()) == ["first", "second"]


def test_an_old_sequence_always_goes_into_the_next_batch():
    """An endless stream of short sequences must not starve a long one."""
    clock = FakeClock()
    batcher = make(clock, tokens=2048, size=8, wait=0.020)
    batcher.add("long", 500)
    served_at = None
    for step in range(20):
        for index in range(8):
            batcher.add(f"short-{step}-{index}", 10)
        batch = payloads(batcher.next_batch())
        assert batch, "a full batch of short sequences is always ready"
        if "long" in batch:
            served_at = clock.now
            break
        assert clock.now < 0.020, "the long sequence waited past max_wait"
        clock.advance(0.004)
    assert served_at is not None and served_at == pytest.approx(0.020)


def test_forced_batch_leaves_out_sequences_that_would_be_mostly_padding():
    clock = FakeClock()
    batcher = make(clock, tokens=100_000, size=64, wait=0.020)
    batcher.add("long", 400)
    batcher.add("near", 300)
    for index in range(5):
        batcher.add(f"short{index}", 10)
    clock.advance(0.020)
    assert sorted(payloads(batcher.next_batch())) == ["long", "near"]
    # the shorts are late too: the next call serves them at once, together
    assert sorted(payloads(batcher.next_batch())) == [f"short{i}" for i in range(5)]


def test_a_lone_sequence_is_served_once_it_has_waited():
    clock = FakeClock()
    batcher = make(clock, wait=0.020)
    batcher.add("a", 10)
    assert batcher.next_batch() == []
    clock.advance(0.019)
    assert batcher.next_batch() == []
    clock.advance(0.001)
    assert payloads(batcher.next_batch()) == ["a"]


def test_remove_by_payload():
    clock = FakeClock()
    batcher = make(clock)
    for name in ["keep1", "drop1", "keep2", "drop2"]:
        batcher.add(name, 10)
    dropped = batcher.remove(lambda payload: payload.startswith("drop"))
    assert payloads(dropped) == ["drop1", "drop2"]
    clock.advance(0.020)
    assert payloads(batcher.next_batch()) == ["keep1", "keep2"]


def test_removing_the_oldest_moves_the_deadline():
    clock = FakeClock()
    batcher = make(clock, wait=0.020)
    batcher.add("old", 10)
    clock.advance(0.010)
    batcher.add("new", 10)
    batcher.remove(lambda payload: payload == "old")
    assert batcher.deadline() == pytest.approx(0.030)


def test_rejects_a_sequence_over_the_budget():
    batcher = make(FakeClock(), tokens=64)
    with pytest.raises(ValueError, match="exceeds max_batch_tokens"):
        batcher.add("huge", 65)
    with pytest.raises(ValueError):
        batcher.add("empty", 0)


def test_every_batch_respects_the_limits():
    import random

    rng = random.Random(0)
    clock = FakeClock()
    batcher = make(clock, tokens=2048, size=16, wait=0.020)
    added = []
    served = []
    for step in range(300):
        for _ in range(rng.randint(0, 6)):
            name = f"s{len(added)}"
            added.append(name)
            batcher.add(name, rng.randint(1, 512))
        batch = batcher.next_batch()
        if batch:
            assert len(batch) <= 16
            assert batch_cost(batch) <= 2048
            served.extend(payloads(batch))
        clock.advance(0.003)
        oldest = batcher.oldest()
        if oldest is not None:
            # nobody waits much longer than max_wait plus one batch per step
            assert clock.now - oldest.added_at < 0.2
    clock.advance(0.020)  # the rest has waited: batches of the oldest and its neighbours
    while len(batcher):
        served.extend(payloads(batcher.next_batch()))
    assert sorted(served) == sorted(added)
