"""Fixtures of the worker's integration tests: a tiny checkpoint, fresh topics, worker processes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.integration.worker_harness import WorkerProcess
from tests.kafka_fixtures import admin_client, create_topic
from tests.tiny_checkpoint import make_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-checkpoint")
    make_tiny_checkpoint(path)
    return path


@pytest.fixture
def topics(kafka_bootstrap: str, request: pytest.FixtureRequest):
    """An input topic and its ``-out`` / ``-dlq`` topics, 3 partitions each (or as many as an
    indirect parametrization says: ``@pytest.mark.parametrize("topics", [1], indirect=True)``).
    """
    name = f"worker-{uuid.uuid4().hex}"
    names = [name, f"{name}-out", f"{name}-dlq"]
    for topic in names:
        create_topic(kafka_bootstrap, topic, getattr(request, "param", 3))
    yield name
    try:
        with admin_client(kafka_bootstrap) as admin:
            admin.delete_topics(names)
    except Exception:  # noqa: BLE001 - uuid-named leftovers harm nobody
        pass


@pytest.fixture
def workers():
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


def start_worker(workers: list[WorkerProcess], **kwargs) -> WorkerProcess:
    worker = WorkerProcess(**kwargs).start()
    workers.append(worker)
    return worker
