"""Model forward speed by precision and batch shape: which ``dtype`` (and int8, compile) pays.

    python bench/cpu_precision.py [--model DIR] [--variants fp32,bf16,bf16-autocast,int8]
                                  [--shapes 1x128,16x128,32x128,64x128] [--device cpu]

The forward pass alone (no tokenizer, no engine), on random token ids of each ``BATCHxLENGTH``
shape, after one untimed call per shape; every variant loads the checkpoint afresh:

- ``fp32``; ``bf16``: weights in bfloat16 (what ``dtype=bfloat16`` loads); ``bf16-autocast``:
  fp32 weights under ``torch.autocast``;
- ``int8``: torchao's dynamic int8 activations x int8 weights (``Int8DynamicActivationInt8Weight
  Config``; torch's own ``torch.ao`` dynamic quantization is deprecated) — skipped unless
  ``pip install torchao``;
- ``bf16-compile``: bf16 through ``torch.compile`` (Inductor, dynamic shapes; the first call's
  compile time is reported apart).

Reports sequences/s and tokens/s per shape and the largest probability difference against fp32
on the same inputs. Writes bench/results/cpu_precision.json.
"""

import argparse
import importlib.util
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import DEFAULT_MODEL, RESULTS  # noqa: E402

from worker.inference.cpu_resources import cpu_computes_bf16, usable_cpus  # noqa: E402

VARIANTS = ("fp32", "bf16", "bf16-autocast", "int8", "bf16-compile")


def build(variant: str, model_dir: Path, device: str):
    """``forward(ids, mask) -> probabilities`` for ``variant``, or None when unavailable."""
    import torch

    from worker.inference.checkpoint import load_checkpoint

    model = load_checkpoint(model_dir, device=device, dtype=torch.float32).model.eval()
    autocast = False
    if variant in ("bf16", "bf16-compile"):
        model = model.to(torch.bfloat16)
    elif variant == "bf16-autocast":
        autocast = True
    elif variant == "int8":
        if importlib.util.find_spec("torchao") is None:
            return None
        from torchao.quantization import (
            Int8DynamicActivationInt8WeightConfig,
            quantize_,
        )

        quantize_(model, Int8DynamicActivationInt8WeightConfig())
    if variant == "bf16-compile":
        model = torch.compile(model, dynamic=True)

    def forward(ids, mask):
        with torch.inference_mode(), torch.autocast(device, torch.bfloat16, enabled=autocast):
            return model(input_ids=ids, attention_mask=mask).logits.float().sigmoid().cpu()

    return forward


def measure(forward, inputs: dict, min_seconds: float) -> dict:
    out = {}
    for shape, (ids, mask) in inputs.items():
        started = time.perf_counter()
        forward(ids, mask)
        first = time.perf_counter() - started
        runs, started = 0, time.perf_counter()
        while runs < 2 or time.perf_counter() - started < min_seconds:
            forward(ids, mask)
            runs += 1
        seconds = (time.perf_counter() - started) / runs
        out[shape] = {"ms_per_batch": round(seconds * 1000, 2),
                      "sequences_per_s": round(ids.shape[0] / seconds, 1),
                      "tokens_per_s": round(ids.numel() / seconds),
                      "first_call_s": round(first, 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--variants", default="fp32,bf16,bf16-autocast,int8")
    parser.add_argument("--shapes", default="1x128,16x128,32x128,64x128")
    parser.add_argument("--threads", type=int, default=usable_cpus())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-seconds", type=float, default=3.0,
                        help="Timed seconds per shape (at least two calls).")
    parser.add_argument("--output", type=Path, default=RESULTS / "cpu_precision.json")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    inputs = {}
    for shape in args.shapes.split(","):
        batch, length = (int(value) for value in shape.split("x"))
        ids = torch.randint(1000, 20000, (batch, length), generator=generator)
        inputs[shape] = (ids.to(args.device), torch.ones_like(ids).to(args.device))
    results, reference = {}, {}
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant}; known: {', '.join(VARIANTS)}")
        forward = build(variant, args.model, args.device)
        if forward is None:
            results[variant] = {"skipped": "torchao is not installed"}
            continue
        results[variant] = measure(forward, inputs, args.min_seconds)
        for shape, (ids, mask) in inputs.items():
            probabilities = forward(ids, mask)
            if variant == "fp32":
                reference[shape] = probabilities
            elif shape in reference:
                results[variant][shape]["max_abs_probability_diff_vs_fp32"] = round(
                    float((probabilities - reference[shape]).abs().max()), 4)
        print(variant, json.dumps(results[variant]), file=sys.stderr, flush=True)
    report = {"benchmark": "cpu_precision",
              "finished": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": "python bench/cpu_precision.py " + " ".join(
                  argv if argv is not None else sys.argv[1:]),
              "model": str(args.model), "device": args.device, "threads": args.threads,
              "cpu_native_bf16": cpu_computes_bf16(), "cpus_usable": usable_cpus(),
              "torch": torch.__version__, "load_average": os.getloadavg(), "variants": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
