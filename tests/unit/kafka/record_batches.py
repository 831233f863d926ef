"""Records as kafka-python's own builder writes them, and as a consumer's fetcher parses them
(no broker: the fetched bytes are handed to the consumer's ``PartitionRecords``)."""

from kafka.record import MemoryRecords
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.structs import TopicPartition

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]  # key, value, headers


def write_batch(records: list[Record], compression: int = 0) -> bytes:
    """One v2 record batch of ``records`` (offsets from 0); keys and values must be exact bytes
    or None, header keys anything whose ``encode("utf-8")`` gives the bytes to write."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=compression,
                                        is_transactional=False, producer_id=-1, producer_epoch=-1,
                                        base_sequence=-1, batch_size=1 << 24)
    for offset, (key, value, headers) in enumerate(records):
        assert builder.append(offset, timestamp=None, key=key, value=value, headers=headers)
    return bytes(builder.build())


def fetch(partition_records: type, data: bytes, tp: TopicPartition) -> list:
    """The records a consumer whose fetcher has these ``PartitionRecords`` hands out for
    ``data`` fetched from ``tp``."""
    return partition_records(0, tp, MemoryRecords(data)).take()


def partition_records_of(consumer_class: type, **configs) -> type:
    """The ``PartitionRecords`` class a consumer of ``consumer_class`` parses fetches with (the
    consumer is closed again: it never reaches a broker)."""
    consumer = consumer_class(bootstrap_servers="127.0.0.1:1", api_version=(3, 7), **configs)
    try:
        return consumer._fetcher.PartitionRecords
    finally:
        consumer.close()
