"""Training throughput: the original notebook's Trainer settings against eurovoc-train's, both
through the same Hugging Face Trainer (``model_training.hf_trainer``), in one run.

notebook:   every batch padded to 300 tokens, random batches, fp32, batch 16.
ours-fp32:  the same documents truncated at the same length, dynamic padding (to a multiple of
            8) and length-grouped batches, fp32: what padding and grouping alone give.
ours:       the same plus eurovoc-train's precision: bf16 on a GPU, and on a CPU that computes
            bf16 natively (AVX512-BF16 / AMX), else fp32.

Each setting trains (forward, backward, clipping, AdamW) on the same random sample of the train
split for ``rounds`` rounds of one untimed and ``steps`` timed optimizer steps, the settings
alternating so that machine load hits all alike. On the CPU always and on the GPU when there is
one. Reports samples/s, real (non-padding) tokens/s and each setting's padding over a whole epoch,
and writes ``bench/results/train_throughput.json`` and a PNG chart.

    python bench/train_throughput.py                    # about three minutes on 2 CPU cores
    python bench/train_throughput.py --max-length 128 \
        --output bench/results/train_throughput_128.json
"""

import argparse
import dataclasses
import logging
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import orjson  # noqa: E402
import torch  # noqa: E402
from _common import RESULTS  # noqa: E402
from transformers import PrinterCallback, TrainerCallback  # noqa: E402

from model_training.base_models import (  # noqa: E402
    load_for_classification,
    load_tokenizer,
    resolve_base_model,
)
from model_training.batching import TokenizedDataset, padding_collator  # noqa: E402
from model_training.documents import load_split  # noqa: E402
from model_training.hf_trainer import EurovocTrainer, training_arguments  # noqa: E402
from model_training.labels import labels_file_for_data, load_label_set  # noqa: E402
from model_training.precision import plan_device  # noqa: E402
from model_training.profiles import TrainConfig, default_data_dir  # noqa: E402
from model_training.tokenization import TokenizedSplit, tokenize_split  # noqa: E402

logger = logging.getLogger("train_throughput")

NOTEBOOK_LENGTH = 300
BATCH_SIZE = 16
SETTINGS = {
    # name: (fixed padding, length grouping, precision)
    "notebook": (True, False, "fp32"),
    "ours-fp32": (False, True, "fp32"),
    "ours": (False, True, "auto"),
}


class StepTimer(TrainerCallback):
    """Wall time and real tokens of the optimizer steps after the first ``skip``."""

    def __init__(self, device: torch.device, skip: int) -> None:
        self.device, self.skip = device, skip
        self.seconds, self.steps, self.tokens = 0.0, 0, 0
        self._started = self._tokens_before = 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        self._sync()
        self._started, self._tokens_before = time.perf_counter(), state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self._sync()
        if state.global_step > self.skip:
            self.seconds += time.perf_counter() - self._started
            self.steps += 1
            self.tokens += state.num_input_tokens_seen - self._tokens_before


def run_setting(
    name: str, device: str, split: TokenizedSplit, tokenizer: Any, model_dir: Path,
    labels: list[str], steps: int, seed: int, max_length: int,
) -> tuple[StepTimer, dict[str, Any]]:
    """One round of ``1 + steps`` optimizer steps of one setting through the Trainer."""
    fixed, grouped, precision = SETTINGS[name]
    config = TrainConfig(
        batch_size=BATCH_SIZE, seed=seed, group_by_length=grouped, precision=precision,
        device=device, learning_rate=2e-5, warmup_ratio=0.0,
    )
    plan = plan_device(config.device, config.precision)
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as scratch:
        args = dataclasses.replace(
            training_arguments(config, Path(scratch), plan),
            max_steps=steps + 1, eval_strategy="no", save_strategy="no",
            load_best_model_at_end=False, logging_strategy="no",
        )
        torch.manual_seed(0)
        timer = StepTimer(torch.device(plan.device), skip=1)
        trainer = EurovocTrainer(
            model=load_for_classification(model_dir, labels), args=args,
            data_collator=padding_collator(tokenizer, pad_to=max_length if fixed else None),
            train_dataset=TokenizedDataset(split), processing_class=tokenizer, callbacks=[timer],
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        epoch = list(trainer.get_train_dataloader())
    padding = {
        "epoch_padded_tokens": sum(batch["input_ids"].numel() for batch in epoch),
        "epoch_real_tokens": sum(int(batch["attention_mask"].sum()) for batch in epoch),
        "precision": plan.precision,
    }
    return timer, padding


def run_device(device: str, args: argparse.Namespace, split, tokenizer, base, labels) -> dict:
    """Every setting for ``args.rounds`` rounds, alternating their order between rounds."""
    timers: dict[str, list[StepTimer]] = {name: [] for name in SETTINGS}
    padding: dict[str, dict[str, Any]] = {}
    steps = args.gpu_steps if device == "cuda" else args.cpu_steps
    for round_index in range(args.rounds):
        order = list(SETTINGS) if round_index % 2 == 0 else list(SETTINGS)[::-1]
        for name in order:
            timer, padding[name] = run_setting(
                name, device, split, tokenizer, base.path, labels, steps, args.seed, args.max_length
            )
            timers[name].append(timer)
            logger.info("%s %s round %d: %.2f samples/s", device, name, round_index + 1,
                        timer.steps * BATCH_SIZE / timer.seconds)
    result: dict[str, Any] = {}
    for name, runs in timers.items():
        seconds = sum(t.seconds for t in runs)
        timed_steps = sum(t.steps for t in runs)
        tokens = sum(t.tokens for t in runs)
        info = padding[name]
        result[name] = {
            "precision": info["precision"],
            "steps": timed_steps,
            "seconds": round(seconds, 3),
            "samples_per_s": round(timed_steps * BATCH_SIZE / seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1),
            "epoch_padding_share": round(
                1 - info["epoch_real_tokens"] / info["epoch_padded_tokens"], 3
            ),
            "epoch_padded_tokens": info["epoch_padded_tokens"],
        }
    notebook = result["notebook"]
    for name in ("ours-fp32", "ours"):
        result[name]["speedup_samples"] = round(
            result[name]["samples_per_s"] / notebook["samples_per_s"], 2
        )
    result["bf16_speedup"] = round(
        result["ours"]["samples_per_s"] / result["ours-fp32"]["samples_per_s"], 2
    )
    return result


def chart(results: dict[str, Any], path: Path) -> None:
    devices = list(results["devices"])
    figure, axes = plt.subplots(1, len(devices), figsize=(6 * len(devices), 4.5), squeeze=False)
    for axis, device in zip(axes[0], devices, strict=True):
        entry = results["devices"][device]
        names = list(SETTINGS)
        bars = axis.bar(
            [f"{name}\n({entry[name]['precision']})" for name in names],
            [entry[name]["samples_per_s"] for name in names],
            color=["#999999", "#8fb3d9", "#1f77b4"],
        )
        axis.bar_label(bars, fmt="%.2f")
        axis.set_ylabel("training samples/s")
        axis.set_title(f"{device}: ours x{entry['ours']['speedup_samples']} the notebook")
    figure.suptitle(
        f"{results['model']}: training throughput through the Trainer\n"
        f"batch {BATCH_SIZE}, truncated at {results['max_length']} tokens, "
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
    parser.add_argument("--model", default="minilm", help="minilm, mpnet or a model directory")
    parser.add_argument("--data", help="data directory (default ../shared/data/eurlex57k)")
    parser.add_argument("--documents", type=int, default=512, help="random train documents")
    parser.add_argument("--max-length", type=int, default=NOTEBOOK_LENGTH)
    parser.add_argument("--cpu-steps", type=int, default=4, help="timed steps per CPU round")
    parser.add_argument("--gpu-steps", type=int, default=25, help="timed steps per GPU round")
    parser.add_argument("--rounds", type=int, default=2)
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
    split = tokenize_split(sample, tokenizer, args.max_length, len(label_set))
    results: dict[str, Any] = {
        "model": base.name,
        "documents_sampled": len(sample),
        "share_shorter_than_max_length": round(
            sum(length < args.max_length for length in split.lengths) / len(split), 3
        ),
        "batch_size": BATCH_SIZE,
        "max_length": args.max_length,
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
        },
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "devices": {},
    }
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        results["devices"][device] = run_device(
            device, args, split, tokenizer, base, label_set.names
        )
    if torch.cuda.is_available():
        results["machine"]["gpu"] = torch.cuda.get_device_name()
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    chart(results, output.with_suffix(".png"))
    logger.info("wrote %s and %s", output, output.with_suffix(".png"))


if __name__ == "__main__":
    main()
