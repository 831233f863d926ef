"""Write a randomly initialised BERT checkpoint of a given size, for engine-only speed runs.

    python bench/random_checkpoint.py OUT [--size base] [--max-length 512] [--tokenizer DIR]

Model weights cannot travel to a GPU machine, but a random model of the same shape computes
exactly as much: ``--size base`` is BERT-base (12 layers, 768 hidden, 110M parameters), ``mini``
is MiniLM-L6's shape, ``tiny`` a 2-layer toy for tests. The tokenizer is copied from ``--tokenizer``
(default: the ``cpu-quick`` checkpoint's, the bert-base-uncased vocabulary), so EUR-Lex texts
tokenize to the same lengths as with a real model. Scores are meaningless (micro-F1 near 0):
use it for docs/s, tokens/s, padding and latency only, e.g.

    python bench/inference.py --model OUT --device cuda --rows notebook,engine-bf16
"""

import argparse
import sys
from pathlib import Path

from _common import DEFAULT_MODEL  # noqa: F401 - puts the repository on sys.path

SIZES = {
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072},
    "mini": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
             "intermediate_size": 1536},
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64},
}


def write_random_checkpoint(output: Path, size: str, max_length: int, tokenizer_dir: Path,
                            seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from model_training.export import write_checkpoint
    from model_training.labels import load_label_set

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, use_fast=True)
    label_names = load_label_set().names
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=max(512, max_length),
                        num_labels=len(label_names), problem_type="multi_label_classification",
                        **SIZES[size])
    model = BertForSequenceClassification(config).eval()
    write_checkpoint(model, tokenizer, output, name=f"random-bert-{size}", version="random",
                     label_names=label_names, max_length=max_length,
                     base_model=f"random-bert-{size}")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_MODEL,
                        help="Directory with the tokenizer to copy (default: cpu-quick's).")
    args = parser.parse_args(argv)
    path = write_random_checkpoint(args.output, args.size, args.max_length, args.tokenizer)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
