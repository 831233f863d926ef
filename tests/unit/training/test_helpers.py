"""Tiny, learnable data sets and base models for the training tests (no test functions here)."""

import gzip
import json
import random
from pathlib import Path

from tests.tiny_checkpoint import WORDS, tiny_model, tiny_tokenizer

# Each label is signalled by its own words; documents mix them with filler.
LABEL_WORDS = {
    "agriculture": ["agriculture", "milk", "wine"],
    "fisheries": ["fisheries", "fish", "water"],
    "trade": ["trade", "customs", "import", "export", "duty"],
    "finance": ["finance", "bank", "tax", "aid"],
}
LABEL_NAMES = list(LABEL_WORDS)
FILLER = [word for word in WORDS if all(word not in group for group in LABEL_WORDS.values())]


def make_documents(count: int, seed: int, *, prefix: str = "doc") -> list[dict]:
    rng = random.Random(seed)
    documents = []
    for index in range(count):
        labels = sorted(rng.sample(range(len(LABEL_NAMES)), rng.choice([1, 1, 2, 3])))
        words = [rng.choice(FILLER) for _ in range(rng.randint(10, 60))]
        for label in labels:
            words += rng.choices(LABEL_WORDS[LABEL_NAMES[label]], k=rng.randint(2, 5))
        rng.shuffle(words)
        documents.append(
            {
                "celex_id": f"{prefix}{index:04d}",
                "year": 2000 + index % 10,
                "text": " ".join(words),
                "labels": labels,
            }
        )
    return documents


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def make_data_dir(root: Path, *, train: int = 64, dev: int = 48, test: int = 48) -> Path:
    """A directory laid out like ../shared/data/eurlex57k, with 4 labels."""
    root.mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "train.jsonl.gz", make_documents(train, 1, prefix="train"))
    write_jsonl(root / "dev.jsonl.gz", make_documents(dev, 2, prefix="dev"))
    write_jsonl(root / "test.jsonl", make_documents(test, 3, prefix="test"))
    labels = [{"id": index, "name": name} for index, name in enumerate(LABEL_NAMES)]
    (root / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    return root


def make_base_model(root: Path, *, max_length: int = 64) -> Path:
    """A tiny random BERT encoder (no classification head) with its tokenizer."""
    tokenizer = tiny_tokenizer()
    model = tiny_model(len(LABEL_NAMES), max_length, len(tokenizer))
    model.bert.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


def tiny_settings(base: Path, data: Path, **overrides) -> dict:
    """TrainConfig settings that train the tiny model in a few seconds."""
    return {
        "base_model": str(base),
        "data": str(data),
        "max_length": 64,
        "batch_size": 8,
        "eval_batch_size": 16,
        "learning_rate": 5e-3,
        "epochs": 3,
        "warmup_ratio": 0.0,
        "device": "cpu",
        "precision": "fp32",
        "threads": 1,
        "min_positives": 5,
        "seed": 7,
        **overrides,
    }
