"""Which dead letters replay-dlq replays, and its settings."""

import os
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.dead_letter import DeadLetterHeaders, ErrorType, dead_letter_bytes
from worker.kafka.clients import producer_config
from worker.settings.replay import ReplaySettings, Skip
from worker.settings.worker_settings import load_settings

BASE = {"bootstrap_servers": "127.0.0.1:9092", "dlq_topic": "docs.dlq", "input_topic": "docs"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in [name for name in os.environ if name.startswith("EUROVOC_")]:
        monkeypatch.delenv(name)


def letter(**overrides) -> DeadLetterHeaders:
    fields = {"error_type": ErrorType.NOT_JSON, "error_message": "bad", "source_topic": "docs",
              "source_partition": 1, "source_offset": 10, "worker_id": "w",
              "failed_at": datetime(2026, 11, 20, 12, 0, tzinfo=UTC), **overrides}
    return DeadLetterHeaders(**fields)


def settings(**overrides) -> ReplaySettings:
    return ReplaySettings(**{**BASE, **overrides})


def test_by_default_every_dead_letter_of_the_input_topic_is_replayed():
    assert settings().skip_reason(letter()) is None
    assert settings().skip_reason(letter(source_topic="elsewhere")) is Skip.OTHER_TOPIC


def test_values_cut_to_fit_are_never_replayed():
    assert settings().skip_reason(letter(error_truncated_from=5_000_000)) is Skip.TRUNCATED
    assert settings().skip_reason(letter(error_key_truncated_from=2_000_000)) is Skip.TRUNCATED


def test_a_record_replayed_max_replays_times_is_not_replayed_again():
    assert settings(max_replays=3).skip_reason(letter(replay_count=2)) is None
    assert settings(max_replays=3).skip_reason(letter(replay_count=3)) is Skip.EXHAUSTED


@pytest.mark.parametrize(
    ("filters", "headers", "replayed"),
    [
        ({"error_types": ["inference_failed"]}, {}, False),
        ({"error_types": ["inference_failed", "not_json"]}, {}, True),
        ({"source_partition": 2}, {}, False),
        ({"source_partition": 1, "from_offset": 10, "to_offset": 10}, {}, True),
        ({"source_partition": 1, "from_offset": 11}, {}, False),
        ({"source_partition": 1, "to_offset": 9}, {}, False),
        ({"since": "2026-11-20T12:00:00Z"}, {}, True),
        ({"since": "2026-11-20T12:00:01"}, {}, False),  # no zone: UTC
        ({"until": "2026-11-20T12:00:00+00:00"}, {}, False),
        ({"since": "2026-11-01", "until": "2026-12-01"}, {}, True),
    ],
)
def test_filters(filters, headers, replayed):
    reason = settings(**filters).skip_reason(letter(**headers))
    assert (reason is None) == replayed
    if not replayed:
        assert reason is Skip.FILTERED


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"input_topic": "docs.dlq"}, "different topics"),
        ({"from_offset": 3}, "source_partition"),
        ({"source_partition": 0, "from_offset": 5, "to_offset": 4}, "from_offset"),
        ({"since": "2026-12-01", "until": "2026-11-01"}, "since"),
        ({"error_types": ["no_such_reason"]}, "error_types"),
        ({"max_replays": 0}, "max_replays"),
    ],
)
def test_invalid_settings_name_the_problem(overrides, named):
    with pytest.raises(ValidationError, match=named):
        settings(**overrides)


def test_the_group_is_one_cursor_per_dead_letter_topic_and_filters():
    plain, again = settings(), settings(limit=5, dry_run=True)
    assert plain.group_id == again.group_id  # a limit or a dry run is the same replay
    assert plain.group_id.startswith("eurovoc-replay.docs.dlq.")
    assert settings(error_types=["not_json"]).group_id != plain.group_id
    assert settings(replay_group_id="mine").group_id == "mine"


def test_workers_variables_do_not_disturb_a_replay(monkeypatch):
    monkeypatch.setenv("EUROVOC_GROUP_ID", "workers")  # a worker setting, not a replay one
    monkeypatch.setenv("EUROVOC_MAX_IN_FLIGHT", "64")
    monkeypatch.setenv("EUROVOC_DLQ_TOPIC", "from-env.dlq")
    replay = ReplaySettings(bootstrap_servers="b:1", input_topic="docs")
    assert replay.dlq_topic == "from-env.dlq"


WORKER_REQUIRED = {"bootstrap_servers": "127.0.0.1:9092", "input_topic": "docs",
                   "output_topic": "labels", "dlq_topic": "docs.dlq", "group_id": "workers",
                   "model": "/models/m"}


@pytest.mark.parametrize("environment", [
    {},
    {"EUROVOC_DLQ_MAX_VALUE_BYTES": "3000000"},
    {"EUROVOC_MAX_REQUEST_SIZE": "5000000"},
    {"EUROVOC_DLQ_MAX_VALUE_BYTES": "2000000", "EUROVOC_MAX_REQUEST_SIZE": "2048"},
])
def test_the_replay_sends_the_largest_dead_letter_a_worker_with_the_same_settings_writes(
        monkeypatch, environment):
    """From the workers' ConfigMap: the replay producer's limit is at least the worker
    producer's, which bounds every dead letter it sends (a replayed record is smaller)."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    worker = load_settings(**WORKER_REQUIRED)
    replay_limit = settings().producer_max_request_size
    assert replay_limit >= producer_config(worker)["max_request_size"]
    assert replay_limit >= dead_letter_bytes(worker.dead_letters.dlq_max_value_bytes)


def test_the_replay_producer_limit_defaults_above_the_default_dead_letter_limit():
    assert settings().producer_max_request_size == max(1_048_576, dead_letter_bytes(1_000_000))
    assert (settings(dlq_max_value_bytes=4_000_000).producer_max_request_size
            == dead_letter_bytes(4_000_000))
