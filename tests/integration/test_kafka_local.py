"""The local Kafka broker (deploy/local/kafka.sh) and the fixtures and helpers around it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from tests.kafka_fixtures import (
    CONSUMER_TIMEOUTS,
    LocalBroker,
    admin_client,
    committed_offsets,
    consume_all,
    end_offsets,
    produce_messages,
)

pytestmark = pytest.mark.integration


def test_new_topic_has_three_partitions_with_leaders(kafka_bootstrap, new_topic):
    with admin_client(kafka_bootstrap) as admin:
        [topic] = admin.describe_topics([new_topic])
    assert sorted(p["partition_index"] for p in topic["partitions"]) == [0, 1, 2]
    assert all(p["leader_id"] >= 0 for p in topic["partitions"])


def test_thousand_messages_round_trip(kafka_bootstrap, new_topic):
    sent = [(f"key-{i}".encode(), f"value-{i}".encode()) for i in range(1000)]
    produce_messages(kafka_bootstrap, new_topic, sent)

    records = consume_all(kafka_bootstrap, new_topic, expected_count=1000, timeout_s=60)

    assert len(records) == 1000
    assert sorted((r.key, r.value) for r in records) == sorted(sent)
    offsets = end_offsets(kafka_bootstrap, new_topic)
    assert sum(offsets.values()) == 1000
    assert len(offsets) == 3 and all(offsets.values()), "the default partitioner spreads keys"


def test_committed_offsets_follow_a_group_commit(kafka_bootstrap, new_topic, group_id):
    produce_messages(kafka_bootstrap, new_topic, [(f"k{i}".encode(), b"v") for i in range(30)])
    assert committed_offsets(kafka_bootstrap, group_id, new_topic) == {}

    consumer = KafkaConsumer(
        new_topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **CONSUMER_TIMEOUTS,
    )
    try:
        received, deadline = 0, time.monotonic() + 60
        while received < 30 and time.monotonic() < deadline:
            received += sum(len(batch) for batch in consumer.poll(timeout_ms=500).values())
        assert received == 30
        consumer.commit()
    finally:
        consumer.close()

    assert committed_offsets(kafka_bootstrap, group_id, new_topic) == end_offsets(kafka_bootstrap, new_topic)


# kafka.sh's own lifecycle, on a second broker with its own ports and data dir (one extra
# JVM start for the whole module). test_stop_* stops it, so it must stay the last test.


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory) -> Iterator[LocalBroker]:
    # A cluster id starting with '-' once broke formatting (read as an option): keep one here.
    broker = LocalBroker(
        tmp_path_factory.mktemp("own-kafka"), extra_env={"KAFKA_CLUSTER_ID": "-ziEqM2VQq_MvDN5oO7ybQ"}
    )
    broker.start()
    yield broker
    broker.stop()


def test_status_is_zero_while_running(own_broker):
    result = own_broker.kafka_sh("status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert own_broker.bootstrap in result.stdout


def test_second_start_is_idempotent(own_broker):
    pid = own_broker.pid()
    result = own_broker.kafka_sh("start")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"KAFKA_BOOTSTRAP={own_broker.bootstrap}\n"
    assert own_broker.pid() == pid


def test_start_on_a_taken_port_fails_clearly(own_broker, tmp_path):
    intruder = LocalBroker(tmp_path / "other", port=own_broker.port)
    result = intruder.kafka_sh("start")
    assert result.returncode != 0
    assert f"port {own_broker.port}" in result.stderr
    assert result.stdout == ""


def is_running(pid: int) -> bool:
    """False once the process is gone or a zombie (exited, not yet reaped by init)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_stop_leaves_no_process(own_broker):
    pid = own_broker.pid()
    assert is_running(pid)

    result = own_broker.kafka_sh("stop")

    assert result.returncode == 0, result.stderr
    assert not is_running(pid)
    assert own_broker.kafka_sh("status").returncode == 3
