"""kafka-python clients as the worker needs them: four workarounds for kafka-python 3.0.12, each
on the function or method that makes it.

Each is a deviation from upstream that should go upstream (dpkp/kafka-python, still present on
its master in December 2026); ``kafka-python`` is pinned below 3.1 until a release is tested.
"""

import time

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import Fetcher
from kafka.record.default_records import DefaultRecordBatch


def _no_auto_create(cluster, config: dict) -> None:
    """Workaround: ``allow_auto_create_topics=False`` is ignored upstream, as
    ``KafkaConnectionManager`` builds its ``ClusterMetadata`` without the option, so every
    metadata request may auto-create a topic on brokers that allow it: pass it on."""
    cluster.config["allow_auto_create_topics"] = config["allow_auto_create_topics"]


def _keep_finished_joins(coordinator) -> None:
    """Workaround: a finished join is thrown away, or never applied, upstream.

    A JoinGroup/SyncGroup round trip that finishes while no ``poll()`` waits for it is lost:
    ``join_group_async`` starts a new JoinGroup (``if self._join_task is None or
    self._join_task.is_done``), and the group leader's repeated JoinGroup starts yet another
    rebalance; and when the rejoin was caused by a metadata change, the leader's assignment
    already refreshed the snapshot, ``need_rejoin()`` turns False and the member stays
    "rebalancing" without heartbeats until it is evicted. Measured with ``poll(timeout_ms=0)``
    every 20-50 ms: one member was still rebalancing after 5 s (generation 231 after 12 s with
    two), or joined a new topic's group in 1 of 3 tries.

    This keeps the unclaimed assignment, makes ``need_rejoin()`` true while there is one and
    hands it to the next attempt instead of a new request. Upstream fix: await a finished
    ``_join_task`` first, whatever ``need_rejoin()`` says (``wait_for`` on a finished task
    returns its result at once).
    """
    join_and_sync = coordinator._do_join_and_sync_async
    on_join_complete = coordinator._on_join_complete_async
    need_rejoin = coordinator.need_rejoin
    unclaimed: list[bytes] = []  # the assignment of a finished join no poll() has taken yet

    async def do_join_and_sync():
        if unclaimed:
            return unclaimed[0]
        assignment = await join_and_sync()
        unclaimed[:] = [assignment]
        return assignment

    async def on_complete(generation, member_id, protocol, assignment):
        unclaimed.clear()
        await on_join_complete(generation, member_id, protocol, assignment)

    coordinator._do_join_and_sync_async = do_join_and_sync
    coordinator._on_join_complete_async = on_complete
    coordinator.need_rejoin = lambda: bool(unclaimed) or need_rejoin()


class RawHeaderKey(str):
    """A record header key whose bytes are not UTF-8: decoded with ``surrogateescape``, so that
    it compares unequal to every real name and ``encode()`` gives its bytes back (kafka-python
    calls ``key.encode("utf-8")`` to size a fetched record's headers, and to send them)."""

    __slots__ = ()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "RawHeaderKey":
        return cls(raw.decode("utf-8", "surrogateescape"))

    def encode(self, encoding: str = "utf-8", errors: str = "surrogateescape") -> bytes:
        return str.encode(self, encoding, errors)


class _LenientSlice(bytes):
    """A slice of a record batch whose ``decode()`` falls back to a ``RawHeaderKey``."""

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        try:
            return bytes.decode(self, encoding, errors)
        except UnicodeDecodeError:
            return RawHeaderKey.from_bytes(self)


class _LenientBuffer:
    """A record batch's buffer as ``DefaultRecordBatch._read_msg`` reads it (bytes by index,
    slices), with lenient slices; the buffer itself is not copied."""

    __slots__ = ("_buffer",)

    def __init__(self, buffer: bytearray) -> None:
        self._buffer = buffer

    def __len__(self) -> int:
        return len(self._buffer)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return _LenientSlice(self._buffer[index])
        return self._buffer[index]


class _LenientHeaderKeysBatch(DefaultRecordBatch):
    """A v2 record batch whose records' header keys need not be UTF-8.

    Workaround: upstream decodes every header key with ``.decode("utf-8")`` (strict) in
    ``DefaultRecordBatch._read_msg``, inside ``poll()``: one record with a key that is not UTF-8
    raises ``CorruptRecordError`` from every ``poll()`` and its partition never moves (the fetch
    stops at that offset; seeking past it loses the record). The Kafka protocol calls header keys
    strings, but the broker does not check them (Java's consumer decodes them leniently too).
    Here a record whose parse fails that way is parsed again, and only it, with its undecodable
    keys as ``RawHeaderKey`` (lossless); every other record takes upstream's path unchanged.
    This relies on 3.0.x's ``_read_msg`` taking header keys as ``buffer[a:b].decode("utf-8")``
    from ``self._buffer`` and setting ``self._pos`` only once a record is read, hence the pin
    below 3.1 (tests/unit/kafka/test_workarounds.py fails if either changes; master at a3b3836,
    3.1.0.dev, still decodes strictly). The report for upstream: docs/kafka-python-headers.md.
    """

    __slots__ = ()

    def _read_msg(self, *args, **kwargs):
        try:
            return super()._read_msg(*args, **kwargs)
        except UnicodeDecodeError:
            buffer = self._buffer
            self._buffer = _LenientBuffer(buffer)
            try:
                return super()._read_msg(*args, **kwargs)
            finally:
                self._buffer = buffer


class _LenientBatches:
    """The ``MemoryRecords`` of one fetched partition, handing out v2 batches as
    ``_LenientHeaderKeysBatch`` (the only method ``PartitionRecords._unpack_records`` calls)."""

    __slots__ = ("_records",)

    def __init__(self, records) -> None:
        self._records = records

    def next_batch(self):
        batch = self._records.next_batch()
        if type(batch) is DefaultRecordBatch:
            batch.__class__ = _LenientHeaderKeysBatch  # the same slots: nothing copied
        return batch


class _LenientPartitionRecords(Fetcher.PartitionRecords):
    """kafka-python's parsed partition data, its batches read by ``_LenientHeaderKeysBatch``."""

    def _unpack_records(self, tp, records, key_deserializer, value_deserializer):
        return super()._unpack_records(tp, _LenientBatches(records), key_deserializer,
                                       value_deserializer)


def _lenient_header_keys(fetcher: Fetcher) -> None:
    """Workaround: header keys that are not UTF-8 stop a partition upstream; on this consumer's
    fetcher only (other consumers keep upstream's parser): see ``_LenientHeaderKeysBatch``."""
    fetcher.PartitionRecords = _LenientPartitionRecords


def any_connection_up(manager) -> bool:
    """Whether one of a kafka-python connection manager's broker connections is up (a copy of
    the table is read: the IO thread changes it)."""
    return any(conn.connected for conn in list(manager._conns.values()))


class GroupConsumer(KafkaConsumer):
    """The worker's consumer: kafka-python's, with the four workarounds, and the connection and
    IO-thread questions the watchdog asks from its own thread.

    The worker calls ``poll(timeout_ms=0)`` only (one pass, never blocking): a rebalance that
    revokes partitions therefore completes inside one ``poll()`` call, and the follow-up
    JoinGroup can only be sent by the next call, after the processor committed the revoked
    partitions' work.
    """

    def __init__(self, **configs) -> None:
        super().__init__(**configs)
        _no_auto_create(self._cluster, self.config)
        _keep_finished_joins(self._coordinator)
        _lenient_header_keys(self._fetcher)

    def connected(self) -> bool:
        """Whether a connection to some broker is up (any thread may ask)."""
        return any_connection_up(self._manager)

    def io_thread_alive(self) -> bool:
        """Whether kafka-python's IO thread (heartbeats, fetches, commits) still runs."""
        thread = self._net._io_thread
        return thread is not None and thread.is_alive()

    def _poll_once(self, timer, max_records, update_offsets=True):
        """Upstream's body, without "return {} while not joined" (the worker has a group).

        Workaround: fetching stops during a rebalance upstream. ``KafkaConsumer.poll()`` returns
        no records at all while a JoinGroup is outstanding (``_poll_once`` returns early when
        ``coordinator.poll()`` says "not joined yet"). The broker holds a JoinGroup until every
        member has rejoined, which after a crash means until the dead member's session timed
        out: every surviving worker then stops for up to ``session_timeout_ms`` although, with
        the cooperative protocol, it keeps its partitions. Java's consumer goes on fetching for
        the partitions it owns (``updateAssignmentMetadataIfNeeded(timer,
        waitForJoinGroup=false)``); so does this. (Partitions being revoked are never fetched:
        kafka-python marks them ``pending_revocation`` first.)
        """
        self._coordinator.poll(timeout_ms=timer.timeout_ms)
        self._refresh_committed_offsets(timeout_ms=timer.timeout_ms)
        self._fetcher.reset_offsets_if_needed()
        self._fetcher.maybe_validate_positions()
        self._fetcher.validate_offsets_if_needed()
        poll_timeout_ms = min(timer.timeout_ms, self._coordinator.time_to_next_poll() * 1000)
        records, idle = self._fetcher.fetch_records(
            max_records, update_offsets=update_offsets, timeout_ms=poll_timeout_ms)
        if not records and idle and poll_timeout_ms > 0:
            time.sleep(min(poll_timeout_ms, self.config["retry_backoff_ms"]) / 1000)
        return records


class Producer(KafkaProducer):
    """The worker's producer: kafka-python's, with ``allow_auto_create_topics`` honoured, and the
    connection question the watchdog asks from its own thread."""

    def __init__(self, **configs) -> None:
        super().__init__(**configs)
        _no_auto_create(self._metadata, self.config)

    def connected(self) -> bool:
        """Whether a connection to some broker is up (any thread may ask)."""
        return any_connection_up(self._sender._client._manager)
