"""Fixtures shared by the integration tests."""

from pathlib import Path

import pytest

from tests.tiny_checkpoint import make_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random checkpoint the worker loads in a second."""
    path = tmp_path_factory.mktemp("tiny-checkpoint")
    make_tiny_checkpoint(path)
    return path
