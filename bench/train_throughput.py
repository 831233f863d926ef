"""Training throughput: the original notebook's settings against eurovoc-train's, in one run.

notebook: every batch padded to 300 tokens, random batches, fp32, batch 16.
ours:     the same documents truncated at the same 300 tokens, but dynamic padding (to a multiple
          of 8), length-grouped batches, and bf16 autocast on a GPU (fp32 on CPU).

Both train (forward, backward, AdamW) on the same random sample of the train split: each builds a
whole epoch of batches its own way, and the timed steps are batches drawn at random from it, run
in alternation so that other load on the machine hits both alike. On the CPU always and on the
GPU when there is one. Reports samples/s, real (non-padding) tokens/s, padded tokens/s and the
epoch's padding, and writes ``bench/results/train_throughput.json`` and a PNG chart.

    python bench/train_throughput.py                 # about two minutes on 2 CPU cores
    python bench/train_throughput.py --cpu-steps 4 --gpu-steps 40 --model mpnet
"""

import argparse
import logging
import os
import platform
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import orjson  # noqa: E402
import torch  # noqa: E402
from _common import RESULTS  # noqa: E402

from model_training.base_models import load_for_classification, load_tokenizer, resolve_base_model  # noqa: E402
from model_training.batching import Collator, LengthGroupedBatchSampler  # noqa: E402
from model_training.documents import load_split  # noqa: E402
from model_training.labels import labels_file_for_data, load_label_set  # noqa: E402
from model_training.profiles import default_data_dir  # noqa: E402
from model_training.tokenization import TokenizedSplit, tokenize_split  # noqa: E402

logger = logging.getLogger("train_throughput")

NOTEBOOK_LENGTH = 300
BATCH_SIZE = 16


@dataclass
class Setting:
    """One way of training: its epoch of batches, its model and optimizer, its timings."""

    name: str
    batches: list[dict[str, torch.Tensor]]
    autocast: torch.dtype | None
    model: Any = None
    optimizer: Any = None
    seconds: float = 0.0
    timed: list[dict[str, torch.Tensor]] = field(default_factory=list)

    def step(self, batch: dict[str, torch.Tensor], device: torch.device) -> float:
        """One optimizer step; returns its wall time."""
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        batch = {key: value.to(device) for key, value in batch.items()}
        with torch.autocast(
            device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None
        ):
            loss = self.model(**batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    def report(self) -> dict[str, float]:
        samples = sum(len(b["labels"]) for b in self.timed)
        real = sum(int(b["attention_mask"].sum()) for b in self.timed)
        padded = sum(b["input_ids"].numel() for b in self.timed)
        epoch_real = sum(int(b["attention_mask"].sum()) for b in self.batches)
        epoch_padded = sum(b["input_ids"].numel() for b in self.batches)
        return {
            "steps": len(self.timed),
            "seconds": round(self.seconds, 3),
            "samples_per_s": round(samples / self.seconds, 2),
            "tokens_per_s": round(real / self.seconds, 1),
            "padded_tokens_per_s": round(padded / self.seconds, 1),
            "epoch_padding_share": round(1 - epoch_real / epoch_padded, 3),
            "epoch_padded_tokens": epoch_padded,
        }


def epoch_batches(
    split: TokenizedSplit, tokenizer: Any, *, notebook: bool, seed: int
) -> list[dict[str, torch.Tensor]]:
    """Every batch of one epoch over the sample, as each setting builds them."""
    sampler = LengthGroupedBatchSampler(
        split.lengths, BATCH_SIZE, seed=seed, group_by_length=not notebook
    )
    collate = Collator(tokenizer, pad_to=NOTEBOOK_LENGTH if notebook else None)
    return [collate([split.features(i) for i in indices]) for indices in sampler]


def run_device(
    device: torch.device,
    split: TokenizedSplit,
    tokenizer: Any,
    model_dir: Path,
    label_count: int,
    steps: int,
    warmup: int,
    seed: int,
) -> dict[str, Any]:
    """Time the two settings in alternation (so a change in machine load hits both alike) on
    batches drawn at random from a whole epoch of each (so lengths are representative)."""
    ours_dtype = None
    if device.type == "cuda":
        ours_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    settings = [
        Setting("notebook", epoch_batches(split, tokenizer, notebook=True, seed=seed), None),
        Setting("ours", epoch_batches(split, tokenizer, notebook=False, seed=seed), ours_dtype),
    ]
    rng = random.Random(seed)
    for setting in settings:
        torch.manual_seed(0)
        labels = [f"l{i}" for i in range(label_count)]
        setting.model = load_for_classification(model_dir, labels).to(device).train()
        setting.optimizer = torch.optim.AdamW(setting.model.parameters(), lr=2e-5)
        setting.timed = rng.sample(setting.batches, min(steps + warmup, len(setting.batches)))
    for round_index in range(len(settings[0].timed)):
        order = settings if round_index % 2 == 0 else settings[::-1]
        for setting in order:
            elapsed = setting.step(setting.timed[round_index], device)
            if round_index >= warmup:
                setting.seconds += elapsed
    result: dict[str, Any] = {"ours_precision": str(ours_dtype or "fp32").removeprefix("torch.")}
    for setting in settings:
        setting.timed = setting.timed[warmup:]
        result[setting.name] = setting.report()
        logger.info("%s %s: %s", device, setting.name, result[setting.name])
    result["speedup_samples"] = round(
        result["ours"]["samples_per_s"] / result["notebook"]["samples_per_s"], 2
    )
    result["speedup_tokens"] = round(
        result["ours"]["tokens_per_s"] / result["notebook"]["tokens_per_s"], 2
    )
    result["epoch_padded_tokens_ratio"] = round(
        result["notebook"]["epoch_padded_tokens"] / result["ours"]["epoch_padded_tokens"], 2
    )
    return result


def chart(results: dict[str, Any], path: Path) -> None:
    devices = [key for key in ("cpu", "cuda") if key in results["devices"]]
    figure, axes = plt.subplots(1, len(devices), figsize=(5.5 * len(devices), 4.5), squeeze=False)
    for axis, device in zip(axes[0], devices, strict=True):
        entry = results["devices"][device]
        values = [entry["notebook"]["samples_per_s"], entry["ours"]["samples_per_s"]]
        bars = axis.bar(
            ["notebook\n(pad 300, fp32)", f"ours\n(dynamic, grouped, {entry['ours_precision']})"],
            values,
            color=["#999999", "#1f77b4"],
        )
        axis.bar_label(bars, fmt="%.2f")
        axis.set_ylabel("training samples/s")
        axis.set_title(
            f"{device}: x{entry['speedup_samples']} samples/s, x{entry['speedup_tokens']} tokens/s"
        )
    figure.suptitle(
        f"{results['model']}: training throughput\n"
        f"batch {BATCH_SIZE}, truncated at {NOTEBOOK_LENGTH} tokens, "
        f"{results['share_shorter_than_max_length']:.0%} of documents shorter",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="minilm", help="minilm, mpnet or a local model directory"
    )
    parser.add_argument("--data", help="data directory (default ../shared/data/eurlex57k)")
    parser.add_argument("--documents", type=int, default=512, help="random train documents sampled")
    parser.add_argument(
        "--cpu-steps", type=int, default=8, help="timed steps per setting on the CPU"
    )
    parser.add_argument(
        "--gpu-steps", type=int, default=50, help="timed steps per setting on a GPU"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per setting first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(RESULTS / "train_throughput.json"))
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)

    data = Path(args.data) if args.data else default_data_dir()
    if data is None:
        raise SystemExit("no --data and ../shared/data/eurlex57k does not exist")
    label_set = load_label_set(labels_file_for_data(data))
    sample = load_split(data, "train", label_set).subset(args.documents, seed=args.seed)
    base = resolve_base_model(args.model)
    tokenizer = load_tokenizer(base.path)
    split = tokenize_split(sample, tokenizer, NOTEBOOK_LENGTH, len(label_set))
    load_before = os.getloadavg()
    results: dict[str, Any] = {
        "model": base.name,
        "documents_sampled": len(sample),
        "share_shorter_than_max_length": round(
            sum(length < NOTEBOOK_LENGTH for length in split.lengths) / len(split), 3
        ),
        "batch_size": BATCH_SIZE,
        "max_length": NOTEBOOK_LENGTH,
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "load_average_before": [round(x, 2) for x in load_before],
        },
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "devices": {},
    }
    results["devices"]["cpu"] = run_device(
        torch.device("cpu"),
        split,
        tokenizer,
        base.path,
        len(label_set),
        args.cpu_steps,
        args.warmup,
        args.seed,
    )
    if torch.cuda.is_available():
        results["devices"]["cuda"] = run_device(
            torch.device("cuda"),
            split,
            tokenizer,
            base.path,
            len(label_set),
            args.gpu_steps,
            args.warmup,
            args.seed,
        )
        results["machine"]["gpu"] = torch.cuda.get_device_name()
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    chart(results, output.with_suffix(".png"))
    logger.info("wrote %s and %s", output, output.with_suffix(".png"))


if __name__ == "__main__":
    main()
