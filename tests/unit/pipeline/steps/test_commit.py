"""The time a commit_now may take (worker.pipeline.steps.commit), for both last steps."""

import pytest

from worker.pipeline.steps.commit import commit_now_timeout


@pytest.mark.parametrize("asked, expected", [(None, 10.0), (2.0, 2.0), (30.0, 10.0), (0.0, 0.1)])
def test_commit_now_takes_the_commit_timeout_or_less_but_never_under_a_tenth(asked, expected):
    assert commit_now_timeout(10.0, asked) == expected
