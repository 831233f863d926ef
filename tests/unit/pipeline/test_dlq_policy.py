"""The dead-letter limit (worker.pipeline.dlq_policy)."""

from worker.pipeline.dlq_policy import DlqPolicy


def test_consecutive_limit():
    policy = DlqPolicy(max_consecutive=3, max_ratio=1.0)
    for _ in range(2):
        assert policy.check("not_json") is None
        policy.record_dead_letter("not_json")
    cause = policy.check("not_json")
    assert cause is not None and "3 consecutive" in cause and "not_json" in cause
    policy.record_ok()
    assert policy.check("not_json") is None  # a good record resets the run


def test_ratio_limit_over_a_window():
    policy = DlqPolicy(max_consecutive=0, max_ratio=0.5, window=10, min_samples=10)
    for _ in range(5):
        policy.record_ok()
    for _ in range(3):
        assert policy.check("schema_violation") is None
        policy.record_dead_letter("schema_violation")
    policy.record_ok()
    # 10th record: 4 bad of 10 is below 50 %
    assert policy.check("schema_violation") is None
    policy.record_dead_letter("schema_violation")
    # window slides: the oldest (good) falls out -> 5 bad of 10
    cause = policy.check("schema_violation")
    assert cause is not None and "of the last 10" in cause


def test_ratio_needs_enough_samples_first():
    policy = DlqPolicy(max_consecutive=100, max_ratio=0.5, window=1000, min_samples=100)
    assert policy.check("not_json") is None  # 1 of 1 is not yet "50 % of the last 1000"
    policy.record_dead_letter("not_json")
    policy.record_ok()
    assert policy.check("not_json") is None


def test_defaults_trip_on_a_wrong_topic():
    policy = DlqPolicy()
    tripped_at = None
    for index in range(1, 500):
        if policy.check("not_json"):
            tripped_at = index
            break
        policy.record_dead_letter("not_json")
    assert tripped_at == 100


def test_defaults_tolerate_sparse_poison():
    policy = DlqPolicy()
    for index in range(5000):
        if index % 3 == 0:
            assert policy.check("schema_violation") is None
            policy.record_dead_letter("schema_violation")
        else:
            policy.record_ok()
