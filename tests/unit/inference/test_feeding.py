"""Feeding the engine: groups of TOKENIZE_GROUP, the capacity limit, results as room frees up."""

from schemas.document import InputDocument
from tests.fake_engine import FakeEngine
from worker.inference.feeding import TOKENIZE_GROUP, EngineFeeder, feed
from worker.inference.requests import DocumentRequest


class CountingEngine(FakeEngine):
    """Records the size of every ``submit`` call and the most documents it ever held."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.calls: list[int] = []
        self.most_held = 0

    def submit(self, items) -> None:
        self.calls.append(len(items))
        self.most_held = max(self.most_held, len(self.queue) + len(self.ready) + len(items))
        super().submit(items)


def requests(n: int) -> list[DocumentRequest]:
    return [DocumentRequest(InputDocument(id=f"d{i}", text="fish")) for i in range(n)]


def test_the_feeder_hands_over_full_groups_at_once_and_the_rest_on_results():
    engine = CountingEngine(auto=False)
    feeder = EngineFeeder(engine, max_in_flight=1000)
    for request in requests(TOKENIZE_GROUP + 3):
        feeder.add(request)
    assert engine.calls == [TOKENIZE_GROUP]
    assert feeder.outstanding() == TOKENIZE_GROUP + 3
    assert feeder.results() == []  # nothing finished yet, but the rest went in
    assert engine.calls == [TOKENIZE_GROUP, 3]
    engine.release(TOKENIZE_GROUP + 3)
    assert len(feeder.results()) == TOKENIZE_GROUP + 3
    assert feeder.outstanding() == 0


def test_room_counts_the_buffer_the_engine_and_the_results_the_caller_holds():
    engine = CountingEngine(auto=False)
    feeder = EngineFeeder(engine, max_in_flight=4)
    first, second, third = requests(3)
    feeder.add(first)
    feeder.add(second)
    assert feeder.has_room() and feeder.has_room(results_held=1)
    assert not feeder.has_room(results_held=2)
    feeder.results()  # the two are in the engine now: still counted
    feeder.add(third)
    assert feeder.outstanding() == 3 and not feeder.has_room(results_held=1)
    feeder.clear()  # the buffered third is forgotten, never submitted
    assert feeder.outstanding() == 2 and engine.calls == [2]


def test_feed_returns_every_result_and_never_holds_more_than_the_capacity():
    engine = CountingEngine(reverse=True)
    docs = requests(50)
    read = []

    def lazily():
        for request in docs:
            read.append(request)
            yield request

    results = feed(engine, lazily(), max_in_flight=4)
    first = next(results)
    assert len(read) == 5, "requests are read as room frees up (the fifth waits for room)"
    rest = list(results)
    assert sorted(result.item.document.id for result in [first, *rest]) == sorted(
        request.document.id for request in docs)
    assert engine.most_held == 4
    assert all(calls <= 4 for calls in engine.calls)
