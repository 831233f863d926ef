"""Test-wide settings: keep 2-core machines stable and load the real-broker fixtures."""

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402  (after the thread settings above)

torch.set_num_threads(1)

pytest_plugins = ["tests.kafka_fixtures"]
