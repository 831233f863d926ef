"""The header-key workaround: a fetched record whose header keys are not UTF-8 is read (its keys
as ``RawHeaderKey``, their bytes kept), where kafka-python 3.0.x's own parser raises, and only on
the worker's consumer. Batches are built by kafka-python's record builder, byte for byte (a
``RawHeaderKey`` encodes to its bytes: the builder writes them as a producer in any language may,
and upstream's parser refuses them)."""

import pytest
from kafka import KafkaConsumer
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.record import MemoryRecords
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.structs import TopicPartition

from worker.kafka.workarounds import GroupConsumer, RawHeaderKey

BAD_KEY = b"\xff\xfeorigin"  # not UTF-8


def _batch(records: list[tuple[bytes | None, bytes | None, list]], compression: int = 0) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=compression,
                                        is_transactional=False, producer_id=-1, producer_epoch=-1,
                                        base_sequence=-1, batch_size=1 << 20)
    for offset, (key, value, headers) in enumerate(records):
        assert builder.append(offset, timestamp=None, key=key, value=value, headers=headers)
    return bytes(builder.build())


RECORDS = [
    (b"k0", b"first", [("trace", b"1")]),
    (b"k1", b"second", [(RawHeaderKey.from_bytes(BAD_KEY), b"x"), ("trace", None), ("replay.count", b"1")]),
    (None, b"third", []),
]


def _take(partition_records_class, data: bytes) -> list:
    return partition_records_class(0, TopicPartition("documents", 0), MemoryRecords(data)).take()


def test_upstream_stops_at_the_record_with_the_undecodable_key():
    # the pin: if kafka-python reads such keys itself, this workaround is to be removed
    first = _take(Fetcher.PartitionRecords, _batch(RECORDS))
    assert [record.offset for record in first] == [0]
    with pytest.raises(CorruptRecordError, match="utf-8"):
        _take(Fetcher.PartitionRecords, _batch(RECORDS[1:]))


def _partition_records_of(consumer_class, **configs) -> type:
    consumer = consumer_class(bootstrap_servers="127.0.0.1:1", api_version=(3, 7), **configs)
    try:
        return consumer._fetcher.PartitionRecords
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def workers_partition_records() -> type:
    return _partition_records_of(GroupConsumer, group_id="g", enable_auto_commit=False)


@pytest.mark.parametrize("compression", [0, DefaultRecordBatchBuilder.CODEC_GZIP])
def test_every_record_is_read_and_the_key_keeps_its_bytes(workers_partition_records, compression):
    records = _take(workers_partition_records, _batch(RECORDS, compression))
    assert [(r.offset, r.key, r.value) for r in records] == [
        (0, b"k0", b"first"), (1, b"k1", b"second"), (2, None, b"third")]
    (raw, value), *others = records[1].headers
    assert isinstance(raw, RawHeaderKey) and raw.encode() == raw.encode("utf-8") == BAD_KEY
    assert raw != "origin" and value == b"x"
    assert others == [("trace", None), ("replay.count", b"1")]
    assert all(type(name) is str for name, _ in records[0].headers + others)
    assert records[1].serialized_header_size == len(BAD_KEY) + 1 + len("trace") + len(
        "replay.count") + 1


def test_other_consumers_keep_upstreams_parser(workers_partition_records):
    assert _partition_records_of(KafkaConsumer) is Fetcher.PartitionRecords
    assert workers_partition_records is not Fetcher.PartitionRecords
