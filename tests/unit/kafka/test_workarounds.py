"""The header-key workaround: a fetched record whose header keys are not UTF-8 is read (its keys
as ``RawHeaderKey``, their bytes kept), where kafka-python 3.0.x's own parser raises, and only on
the worker's consumer. Batches are built by kafka-python's record builder, byte for byte (a
``RawHeaderKey`` encodes to its bytes: the builder writes them as a producer in any language may,
and upstream's parser refuses them)."""

import pytest
from kafka import KafkaConsumer
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.structs import TopicPartition

from tests.unit.kafka.record_batches import fetch, partition_records_of, write_batch
from worker.kafka.workarounds import GroupConsumer, RawHeaderKey

BAD_KEY = b"\xff\xfeorigin"  # not UTF-8


RECORDS = [
    (b"k0", b"first", [("trace", b"1")]),
    (b"k1", b"second",
     [(RawHeaderKey.from_bytes(BAD_KEY), b"x"), ("trace", None), ("replay.count", b"1")]),
    (None, b"third", []),
]


TP = TopicPartition("documents", 0)


def test_upstream_stops_at_the_record_with_the_undecodable_key():
    # the pin: if kafka-python reads such keys itself, this workaround is to be removed
    first = fetch(Fetcher.PartitionRecords, write_batch(RECORDS), TP)
    assert [record.offset for record in first] == [0]
    with pytest.raises(CorruptRecordError, match="utf-8"):
        fetch(Fetcher.PartitionRecords, write_batch(RECORDS[1:]), TP)


@pytest.fixture(scope="module")
def workers_partition_records() -> type:
    return partition_records_of(GroupConsumer, group_id="g", enable_auto_commit=False)


@pytest.mark.parametrize("compression", [0, DefaultRecordBatchBuilder.CODEC_GZIP])
def test_every_record_is_read_and_the_key_keeps_its_bytes(workers_partition_records, compression):
    records = fetch(workers_partition_records, write_batch(RECORDS, compression), TP)
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
    assert partition_records_of(KafkaConsumer) is Fetcher.PartitionRecords
    assert workers_partition_records is not Fetcher.PartitionRecords
