"""The dead-letter limit (worker.pipeline.dlq_policy): per partition, each record judged once."""

from kafka import TopicPartition

from worker.pipeline.dlq_policy import DlqPolicy

P0, P1 = TopicPartition("docs", 0), TopicPartition("docs", 1)


def first_refused(policy: DlqPolicy, outcomes, partition: TopicPartition = P0) -> int | None:
    """Judge ``outcomes`` (a reason, or None: labelled) in order; the index of the first dead
    letter refused, else None."""
    for index, reason in enumerate(outcomes):
        if policy.judge(partition, reason) is not None:
            return index
    return None


def test_the_dead_letter_that_would_be_the_limit_th_in_a_row_is_refused():
    policy = DlqPolicy(max_consecutive=3, max_ratio=1.0)
    assert policy.judge(P0, "not_json") is None
    assert policy.judge(P0, "not_json") is None
    cause = policy.judge(P0, "not_json")
    assert cause is not None and "3 consecutive" in cause and "not_json" in cause
    assert "docs/0" in cause
    assert policy.judge(P0, "not_json") is not None  # refused: not counted, still the third
    assert policy.judge(P0, None) is None  # a labelled record resets the run
    assert policy.judge(P0, "not_json") is None


def test_partitions_are_counted_apart():
    policy = DlqPolicy(max_consecutive=3, max_ratio=1.0)
    for partition in (P0, P1, P0, P1):
        assert policy.judge(partition, "not_json") is None
    assert policy.judge(P1, "not_json") is not None
    policy.forget([P1])  # revoked: its counts start afresh when it comes back
    assert policy.judge(P1, "not_json") is None
    assert policy.judge(P0, "not_json") is not None


def test_ratio_limit_over_a_window():
    policy = DlqPolicy(max_consecutive=0, max_ratio=0.5, window=10, min_samples=10)
    outcomes = [None] * 5 + ["schema_violation"] * 3 + [None] + ["schema_violation"]
    assert first_refused(policy, outcomes) is None  # 4 of 10
    # the window slides: the oldest (labelled) falls out -> 5 of the last 10
    cause = policy.judge(P0, "schema_violation")
    assert cause is not None and "5 of the last 10" in cause


def test_ratio_needs_enough_samples_first():
    policy = DlqPolicy(max_consecutive=100, max_ratio=0.5, window=1000, min_samples=100)
    assert policy.judge(P0, "not_json") is None  # 1 of 1 is not yet "50 % of the last 1000"
    # 49 of 99 seen: the 100th record, a dead letter, makes 50 of 100
    policy = DlqPolicy(max_consecutive=0, max_ratio=0.5, window=1000, min_samples=100)
    outcomes = ["not_json", None] * 49 + [None]
    assert first_refused(policy, outcomes) is None
    assert "50 of the last 100" in policy.judge(P0, "not_json")


def test_defaults_trip_on_a_wrong_topic_at_the_100th_dead_letter():
    assert first_refused(DlqPolicy(), ["not_json"] * 500) == 99


def test_99_in_a_row_are_tolerated_and_sparse_poison_too():
    policy = DlqPolicy(max_ratio=1.0)
    assert first_refused(policy, (["not_json"] * 99 + [None]) * 5) is None
    policy = DlqPolicy()
    assert first_refused(policy, ["schema_violation" if i % 3 == 2 else None
                                  for i in range(5000)]) is None


def test_defaults_trip_at_half_of_the_last_1000():
    # 499 dead letters among 999 records, then one more: 500 of the last 1000
    policy = DlqPolicy(max_consecutive=0)
    assert first_refused(policy, [None] * 500 + ["not_json"] * 499) is None
    assert "500 of the last 1000" in policy.judge(P0, "not_json")
    policy = DlqPolicy()  # the same records with the defaults: the run of 100 trips first
    assert first_refused(policy, [None] * 500 + ["not_json"] * 499) == 599
