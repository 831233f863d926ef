"""The ``eurovoc-train`` subcommands besides ``train`` and ``predict`` (``eurovoc-worker
classify``): evaluate, tune-thresholds, baseline, export-half, make-labels. Heavy modules are imported inside
each command. Evaluation and tuning score through the worker's engine with the engine settings
given as the worker's flags (``--dtype``, ``--max-length``, ``--long-documents``...)."""

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import orjson

from model_training.profiles import data_or_default
from schemas.manifest import read_manifest
from worker.settings.engine_flags import settings_from_args

logger = logging.getLogger("eurovoc-train")

MAIN_METRICS = (
    "micro_f1",
    "macro_f1",
    "weighted_f1",
    "micro_precision",
    "micro_recall",
    "roc_auc_micro",
    "roc_auc_macro",
    "subset_accuracy",
    "r_precision",
    "lrap",
    "labels_per_document",
)


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")


def write_lines(lines: list[str]) -> None:
    sys.stdout.write("\n".join(lines) + "\n")


def metrics_lines(metrics: dict[str, dict[str, float]]) -> list[str]:
    columns = [column for column in metrics if "micro_f1" in metrics[column]]
    lines = [f"{'metric':<22}" + "".join(f"{column:>12}" for column in columns)]
    for name in MAIN_METRICS:
        lines.append(
            f"{name:<22}" + "".join(f"{metrics[c].get(name, float('nan')):>12.4f}" for c in columns)
        )
    return lines


def scoring_options(args: argparse.Namespace) -> dict[str, Any]:
    """The data flags' options (``--split``, ``--labels``) for ``score``/``retune``."""
    return {"split": args.split, "labels_file": args.labels}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from model_training.evaluation import score  # noqa: PLC0415

    settings = settings_from_args(args)
    scored = score(settings, data_or_default(args.data), **scoring_options(args))
    manifest = scored.manifest
    summary = {
        "model": str(settings.model),
        "name": manifest.name,
        "version": manifest.version,
        "base_model": manifest.base_model,
        "profile": manifest.training_args.get("profile"),
        "data": scored.split.source,
        "documents": len(scored.split),
        "thresholds": manifest.thresholds.model_dump(by_alias=True),
        "inference": scored.inference.model_dump(),
        "metrics": scored.metrics(),
    }
    if args.report:
        from model_training.report import write_report  # noqa: PLC0415 - slow matplotlib

        for path in write_report(scored, summary, Path(args.report)):
            logger.info("wrote %s", path)
    if args.json:
        print_json(summary)
    else:
        title = f"{manifest.name} {manifest.version} on {summary['data']}"
        write_lines(
            [f"{title} ({summary['documents']} documents)", *metrics_lines(summary["metrics"])]
        )
    return 0


def cmd_tune_thresholds(args: argparse.Namespace) -> int:
    from model_training.export import save_manifest  # noqa: PLC0415
    from model_training.retune import retune  # noqa: PLC0415

    settings = settings_from_args(args)
    result = retune(
        settings,
        data_or_default(args.data),
        **scoring_options(args),
        min_positives=args.min_positives,
        at_least_one=args.at_least_one,
    )
    tuning = result.tuning
    summary = {
        "thresholds": result.manifest.thresholds.model_dump(by_alias=True),
        "micro_f1": {
            "0.5": tuning.micro_f1_default,
            "global": tuning.micro_f1_global,
            "tuned": tuning.micro_f1_tuned,
        },
        "data": result.scored.split.source,
        "metrics_refreshed": result.refreshed,
        "metrics_removed": result.removed,
        "written": not args.dry_run,
    }
    if not args.dry_run:
        save_manifest(Path(settings.model), result.manifest)
    if args.json:
        print_json(summary)
    else:
        write_lines([orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode()])
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from model_training.baseline import BaselineSettings, run_baseline  # noqa: PLC0415
    from model_training.documents import label_set_for_data, load_split  # noqa: PLC0415

    data = data_or_default(args.data)
    label_set = label_set_for_data(data, args.labels)
    train, dev, test = (load_split(data, split, label_set) for split in ("train", "dev", "test"))
    train = train.subset(args.train_subset, seed=0)
    settings = BaselineSettings(max_features=args.max_features, c=args.c, jobs=args.jobs)
    result = run_baseline(train, dev, test, len(label_set), settings)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        logger.info("wrote %s", args.output)
    if args.json:
        print_json(result)
    else:
        threshold = result["thresholds"]["global"]
        write_lines(
            [
                f"{result['model']} on {result['data']} (global threshold {threshold:.2f})",
                *metrics_lines(result["metrics"]),
            ]
        )
    return 0


def cmd_export_half(args: argparse.Namespace) -> int:
    import torch  # noqa: PLC0415

    from model_training.evaluation import score  # noqa: PLC0415
    from model_training.export import (  # noqa: PLC0415
        HALF_PRECISION_CHECK,
        export_half_precision,
        half_precision_metrics,
        save_manifest,
    )
    from worker.inference.engine_settings import EngineSettings  # noqa: PLC0415

    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    manifest = export_half_precision(Path(args.model), Path(args.output), dtype=dtype)
    sizes = {
        name: (Path(path) / "model.safetensors").stat().st_size
        for name, path in (("full", args.model), ("half", args.output))
    }
    summary: dict[str, Any] = {"output": args.output, "dtype": args.dtype, "weights_bytes": sizes}
    status = 0
    if args.data:
        # each in its own dtype (``auto`` would compute both in bf16 on a bf16-native CPU)
        full, half = (
            score(
                EngineSettings(model=path, dtype=scored_dtype, torch_threads=args.threads),
                args.data,
                split=args.split,
            ).metrics()
            for path, scored_dtype in ((args.model, "float32"), (args.output, args.dtype))
        )
        split = args.split
        metrics = half_precision_metrics(read_manifest(Path(args.model)).metrics, split, full, half)
        check = metrics[f"{HALF_PRECISION_CHECK}@{split}"]
        summary["micro_f1"] = {
            "full": check["micro_f1_full"],
            "half": check["micro_f1_half"],
            "change": check["micro_f1_change"],
        }
        save_manifest(Path(args.output), manifest.model_copy(update={"metrics": metrics}))
        if abs(check["micro_f1_change"]) > args.max_change:
            logger.error(
                "half precision changes %s micro-F1 by %+.4f (limit %.4f)",
                split,
                check["micro_f1_change"],
                args.max_change,
            )
            status = 1
    print_json(summary)
    return status


def cmd_make_labels(args: argparse.Namespace) -> int:
    from model_training.labels import build_concept_labels  # noqa: PLC0415

    entries = build_concept_labels(Path(args.concepts), level=args.level)
    Path(args.output).write_bytes(orjson.dumps(entries, option=orjson.OPT_INDENT_2))
    logger.info("wrote %d level-%d labels to %s", len(entries), args.level, args.output)
    return 0
