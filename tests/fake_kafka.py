"""An in-memory Kafka for unit and contract tests: a broker, a group consumer and a producer.

Only what the worker uses, with kafka-python's shapes: ``poll()`` returns
``{TopicPartition: [records]}``, rebalance listener callbacks come from inside ``poll()``,
``commit_async`` callbacks run on a later ``poll()``, producer futures are
``kafka.future.Future``. Tests script rebalances (``FakeConsumer.events``), hold or fail
acknowledgements (``FakeProducer``) and read back what was produced and committed
(``FakeBroker``).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable

from kafka import TopicPartition
from kafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFencedError,
    UnknownTopicOrPartitionError,
)
from kafka.future import Future
from kafka.structs import ConsumerGroupMetadata, MemberState

Record = namedtuple("Record", "offset key value headers")


class FakeBroker:
    def __init__(self) -> None:
        self.topics: dict[str, list[list[Record]]] = {}
        self.committed: dict[tuple[str, TopicPartition], int] = {}

    def create_topic(self, name: str, partitions: int = 3) -> None:
        self.topics[name] = [[] for _ in range(partitions)]

    def append(self, topic: str, partition: int, key, value, headers=None) -> int:
        log = self.topics[topic][partition]
        log.append(Record(len(log), key, value, headers or []))
        return len(log) - 1

    def produce(self, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
        """Keyed records round-robin over the partitions (like the tests' helper)."""
        logs = self.topics[topic]
        for index, (key, value) in enumerate(messages):
            self.append(topic, index % len(logs), key, value)

    def records(self, topic: str) -> list[Record]:
        return [record for log in self.topics[topic] for record in log]

    def committed_offsets(self, group: str, topic: str) -> dict[int, int]:
        return {tp.partition: offset for (g, tp), offset in self.committed.items()
                if g == group and tp.topic == topic}


class FakeConsumer:
    """One group member that owns what its script assigns (all partitions by default)."""

    def __init__(self, broker: FakeBroker, group: str, topic: str,
                 assign: Iterable[int] | None = None) -> None:
        self.broker = broker
        self.group = group
        self.topic = topic
        partitions = range(len(broker.topics[topic])) if assign is None else assign
        self.events: list[tuple[str, set[TopicPartition]]] = [
            ("assigned", {TopicPartition(topic, p) for p in partitions})]
        self.positions: dict[TopicPartition, int] = {}
        self.assigned: set[TopicPartition] = set()
        self.paused_set: set[TopicPartition] = set()
        self.commits: list[dict[TopicPartition, int]] = []
        self.state = MemberState.STABLE
        self.listener = None
        self.polls = 0
        self.on_poll: Callable[[FakeConsumer], None] | None = None
        self._callbacks: list[Callable[[], None]] = []
        self.closed = False

    def subscribe(self, topics, listener=None) -> None:
        self.listener = listener

    def poll(self, timeout_ms=0, max_records=500):
        self.polls += 1
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()
        while self.events:
            kind, partitions = self.events.pop(0)
            if kind == "assigned":
                self.assigned |= partitions
                for tp in partitions:
                    self.positions.setdefault(tp, self.broker.committed.get((self.group, tp), 0))
                self.listener.on_partitions_assigned(partitions)
            else:
                self.assigned -= partitions
                self.paused_set -= partitions
                getattr(self.listener, f"on_partitions_{kind}")(partitions)
        if self.on_poll is not None:
            self.on_poll(self)
        out = {}
        for tp in sorted(self.assigned):
            if tp in self.paused_set or max_records <= 0:
                continue
            log = self.broker.topics[tp.topic][tp.partition]
            batch = log[self.positions[tp]:self.positions[tp] + max_records]
            if batch:
                out[tp] = batch
                self.positions[tp] += len(batch)
                max_records -= len(batch)
        return out

    def pause(self, *tps) -> None:
        self.paused_set |= set(tps)

    def resume(self, *tps) -> None:
        self.paused_set -= set(tps)

    def paused(self):
        return set(self.paused_set)

    def assignment(self):
        return set(self.assigned)

    def _commit(self, offsets) -> None:
        plain = {tp: meta.offset for tp, meta in offsets.items()}
        self.commits.append(plain)
        for tp, offset in plain.items():
            self.broker.committed[(self.group, tp)] = offset

    def commit(self, offsets, timeout_ms=None) -> None:
        self._commit(offsets)

    def commit_async(self, offsets, callback) -> None:
        def done() -> None:
            self._commit(offsets)
            callback(offsets, None)

        self._callbacks.append(done)

    def committed_now(self) -> dict[TopicPartition, int]:
        merged: dict[TopicPartition, int] = {}
        for commit in self.commits:
            merged.update(commit)
        return merged

    def seek(self, tp, offset) -> None:
        self.positions[tp] = offset

    def highwater(self, tp):
        return len(self.broker.topics[tp.topic][tp.partition])

    def position(self, tp, timeout_ms=None):
        return self.positions[tp]

    def group_metadata(self):
        if self.state == MemberState.UNJOINED:
            return ConsumerGroupMetadata(self.group, -1, "", None, self.state)
        return ConsumerGroupMetadata(self.group, 1, "member", None, self.state)

    def connected(self) -> bool:
        return True

    def io_thread_alive(self) -> bool:
        return True

    def close(self, autocommit=True, timeout_ms=None) -> None:
        self.closed = True


class FakeProducer:
    """Acknowledges at once (``auto``), or holds until ``ack_all()``; ``fail_first`` sends fail
    like a record whose delivery timed out."""

    def __init__(self, broker: FakeBroker, auto: bool = True, fail_first: int = 0) -> None:
        self.broker = broker
        self.auto = auto
        self.fail_first = fail_first
        self.sent: list[tuple[str, bytes | None, bytes | None, list | None]] = []
        self.held: list[tuple[Future, str, bytes | None, bytes | None, list | None]] = []

    def send(self, topic, value=None, key=None, headers=None) -> Future:
        if topic not in self.broker.topics:
            raise KafkaTimeoutError(f"Failed to update metadata for {topic}")
        future = Future()
        self.sent.append((topic, key, value, headers))
        if self.fail_first > 0:
            self.fail_first -= 1
            future.failure(KafkaTimeoutError("delivery timed out"))
        elif self.auto:
            self._deliver(future, topic, key, value, headers)
        else:
            self.held.append((future, topic, key, value, headers))
        return future

    def _deliver(self, future: Future, topic, key, value, headers) -> None:
        partitions = len(self.broker.topics[topic])
        partition = hash(key) % partitions if key is not None else 0
        self.broker.append(topic, partition, key, value, headers)
        future.success(None)

    def ack_all(self, skip: Callable[[str, bytes | None], bool] | None = None) -> None:
        """Acknowledge what is held, but the records ``skip(topic, key)`` picks."""
        held, self.held = self.held, []
        for future, topic, key, value, headers in held:
            if skip is not None and skip(topic, key):
                self.held.append((future, topic, key, value, headers))
            else:
                self._deliver(future, topic, key, value, headers)

    def partitions_for(self, topic):
        if topic not in self.broker.topics:
            raise UnknownTopicOrPartitionError(topic)
        return set(range(len(self.broker.topics[topic])))

    def close(self, timeout=None) -> None:
        pass


class FakeTransactionalProducer(FakeProducer):
    """A transactional producer: what is sent reaches the broker (and the group's offsets are
    committed) at ``commit_transaction`` only; ``aborted`` keeps what was aborted.
    ``fail_offsets_calls``: those calls of ``send_offsets_to_transaction`` (1-based) fail;
    ``fenced``: every transactional call fails as a fenced producer's does; ``on_commit``: called
    inside ``commit_transaction`` (a test can block there)."""

    def __init__(self, broker: FakeBroker, fail_offsets_calls=(), **kwargs) -> None:
        super().__init__(broker, **kwargs)
        self.fail_offsets_calls = set(fail_offsets_calls)
        self.fenced = False
        self.on_commit: Callable[[], None] | None = None
        self.open: list | None = None
        self.offsets: dict = {}
        self.group: str | None = None
        self.offsets_calls = 0
        self.transactions: list[list[tuple[str, bytes | None]]] = []  # committed, in order
        self.aborted: list[list[tuple[str, bytes | None]]] = []

    def _check(self) -> None:
        if self.fenced:
            raise ProducerFencedError()

    def begin_transaction(self) -> None:
        self._check()
        if self.open is not None:
            raise KafkaError("Invalid transition attempted from state IN_TRANSACTION")
        self.open, self.offsets = [], {}

    def send(self, topic, value=None, key=None, headers=None) -> Future:
        if self.open is None:
            raise KafkaError("Cannot call send in state READY")
        future = Future()
        self.sent.append((topic, key, value, headers))
        self.open.append((future, topic, key, value, headers))
        return future

    def flush(self, timeout=None) -> None:
        for future, *_ in self.open or []:
            if not future.is_done:
                future.success(None)

    def send_offsets_to_transaction(self, offsets, group_metadata) -> None:
        self._check()
        self.offsets_calls += 1
        if self.offsets_calls in self.fail_offsets_calls:
            raise KafkaConnectionError(f"injected failure #{self.offsets_calls}")
        self.offsets.update({tp: meta.offset for tp, meta in offsets.items()})
        self.group = group_metadata.group_id

    def commit_transaction(self) -> None:
        self._check()
        if self.on_commit is not None:
            self.on_commit()
        for future, topic, key, value, headers in self.open:
            self._deliver(Future(), topic, key, value, headers)
        for tp, offset in self.offsets.items():
            self.broker.committed[(self.group, tp)] = offset
        self.transactions.append([(topic, key) for _, topic, key, _, _ in self.open])
        self.open = None

    def abort_transaction(self) -> None:
        self._check()
        self.aborted.append([(topic, key) for _, topic, key, _, _ in self.open])
        self.open = None
