"""``eurovoc-train``: train, evaluate, predict, tune thresholds, run the baseline, export fp16.

Every subcommand reads and writes local files only; nothing is downloaded from a model hub.
"""

import argparse
import logging
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import orjson

from model_training.profiles import (
    PROFILES,
    TrainConfig,
    build_config,
    data_or_default,
    default_output_dir,
)

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


# ----------------------------------------------------------------------------- helpers
def _field_type(annotation: Any) -> tuple[Callable[[str], Any] | None, list[str] | None, bool]:
    """(converter, choices, is_bool) for a TrainConfig field annotation."""
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    if annotation is bool:
        return None, None, True
    if get_origin(annotation) is Literal:
        return str, [str(choice) for choice in get_args(annotation)], False
    return annotation, None, False


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training settings (override the profile)")
    for name, info in TrainConfig.model_fields.items():
        if name == "profile":
            continue
        converter, choices, is_bool = _field_type(info.annotation)
        flag = "--" + name.replace("_", "-")
        help_text = f"{info.description or ''} (without a profile: {info.default})".strip()
        if is_bool:
            group.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            group.add_argument(
                flag, dest=name, type=converter, choices=choices, default=None, help=help_text
            )


def _config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        name: getattr(args, name)
        for name in TrainConfig.model_fields
        if name != "profile" and getattr(args, name, None) is not None
    }


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")


def _write_lines(lines: list[str]) -> None:
    sys.stdout.write("\n".join(lines) + "\n")


def _metrics_lines(metrics: dict[str, dict[str, float]]) -> list[str]:
    columns = list(metrics)
    lines = [f"{'metric':<22}" + "".join(f"{column:>12}" for column in columns)]
    for name in MAIN_METRICS:
        lines.append(
            f"{name:<22}" + "".join(f"{metrics[c].get(name, float('nan')):>12.4f}" for c in columns)
        )
    return lines


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch  # noqa: PLC0415 - keep `--help` fast

        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from model_training.trainer import Trainer  # noqa: PLC0415 - heavy import

    output = Path(args.output) if args.output else default_output_dir(args.profile)
    if args.resume:
        saved = Trainer.saved_config(output)
        config = saved.model_copy(update={"stop_after_steps": args.stop_after_steps})
    else:
        config = build_config(args.profile, _config_overrides(args))
    logger.info("training %s into %s", config.model_dump(exclude_none=True), output)
    result = Trainer(config, output).run(resume=args.resume)
    if result.status == "interrupted":
        logger.info(
            "interrupted at step %d; continue with: eurovoc-train train --output %s --resume",
            result.progress.step,
            output,
        )
        return 0
    assert result.manifest is not None
    for line in _metrics_lines(result.manifest.metrics):
        logger.info(line)
    logger.info("checkpoint written to %s", output)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from model_training.evaluation import score  # noqa: PLC0415

    _set_threads(args.threads)
    data = data_or_default(args.data)
    scored = score(
        Path(args.model),
        data,
        split=args.split,
        labels_file=args.labels,
        batch_size=args.batch_size,
        device=args.device,
    )
    manifest = scored.manifest
    summary = {
        "model": str(args.model),
        "name": manifest.name,
        "version": manifest.version,
        "base_model": manifest.base_model,
        "profile": manifest.training_args.get("profile"),
        "data": scored.split.source,
        "documents": len(scored.split),
        "thresholds": manifest.thresholds.model_dump(by_alias=True),
        "metrics": scored.metrics(),
    }
    if args.report:
        from model_training.report import write_report  # noqa: PLC0415 - matplotlib is slow to import

        for path in write_report(scored, summary, Path(args.report)):
            logger.info("wrote %s", path)
    if args.json:
        _print_json(summary)
    else:
        title = f"{manifest.name} {manifest.version} on {summary['data']}"
        _write_lines(
            [f"{title} ({summary['documents']} documents)", *_metrics_lines(summary["metrics"])]
        )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from model_training.predict import predict_file  # noqa: PLC0415

    _set_threads(args.threads)
    rows = predict_file(
        Path(args.model), Path(args.file), batch_size=args.batch_size, device=args.device
    )
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    try:
        for row in rows:
            out.write(orjson.dumps(row) + b"\n")
    finally:
        if args.output:
            out.close()
    return 0


def cmd_tune_thresholds(args: argparse.Namespace) -> int:
    from model_training.evaluation import score  # noqa: PLC0415
    from model_training.export import save_manifest  # noqa: PLC0415
    from model_training.thresholds import AT_LEAST_ONE_CHOICES, tune_thresholds  # noqa: PLC0415

    _set_threads(args.threads)
    scored = score(
        Path(args.model),
        data_or_default(args.data),
        split=args.split,
        labels_file=args.labels,
        batch_size=args.batch_size,
        device=args.device,
    )
    result = tune_thresholds(
        scored.labels,
        scored.probabilities,
        scored.manifest.label_names,
        min_positives=args.min_positives,
        at_least_one=AT_LEAST_ONE_CHOICES[args.at_least_one],
    )
    summary = {
        "thresholds": result.thresholds.model_dump(by_alias=True),
        "micro_f1": {
            "0.5": result.micro_f1_default,
            "global": result.micro_f1_global,
            "tuned": result.micro_f1_tuned,
        },
        "data": scored.split.source,
        "written": not args.dry_run,
    }
    if not args.dry_run:
        save_manifest(
            Path(args.model), scored.manifest.model_copy(update={"thresholds": result.thresholds})
        )
    if args.json:
        _print_json(summary)
    else:
        _write_lines([orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode()])
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
        _print_json(result)
    else:
        threshold = result["thresholds"]["global"]
        _write_lines(
            [
                f"{result['model']} on {result['data']} (global threshold {threshold:.2f})",
                *_metrics_lines(result["metrics"]),
            ]
        )
    return 0


def cmd_export_half(args: argparse.Namespace) -> int:
    import torch  # noqa: PLC0415

    from model_training.evaluation import score  # noqa: PLC0415
    from model_training.export import export_half_precision, save_manifest  # noqa: PLC0415

    _set_threads(args.threads)
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    manifest = export_half_precision(Path(args.model), Path(args.output), dtype=dtype)
    sizes = {
        name: (Path(path) / "model.safetensors").stat().st_size
        for name, path in (("full", args.model), ("half", args.output))
    }
    summary: dict[str, Any] = {"output": args.output, "dtype": args.dtype, "weights_bytes": sizes}
    status = 0
    if args.data:
        full = score(
            Path(args.model), args.data, split=args.split, batch_size=args.batch_size
        ).metrics()
        half = score(
            Path(args.output), args.data, split=args.split, batch_size=args.batch_size
        ).metrics()
        delta = half["tuned"]["micro_f1"] - full["tuned"]["micro_f1"]
        summary.update(
            micro_f1={
                "full": full["tuned"]["micro_f1"],
                "half": half["tuned"]["micro_f1"],
                "change": delta,
            }
        )
        split = args.split
        save_manifest(
            Path(args.output),
            manifest.model_copy(
                update={"metrics": {split: half["tuned"], f"{split}@0.5": half["0.5"]}}
            ),
        )
        if abs(delta) > args.max_change:
            logger.error(
                "half precision changes %s micro-F1 by %+.4f (limit %.4f)",
                split,
                delta,
                args.max_change,
            )
            status = 1
    _print_json(summary)
    return status


def cmd_make_labels(args: argparse.Namespace) -> int:
    from model_training.labels import build_concept_labels  # noqa: PLC0415

    entries = build_concept_labels(Path(args.concepts), level=args.level)
    Path(args.output).write_bytes(orjson.dumps(entries, option=orjson.OPT_INDENT_2))
    logger.info("wrote %d level-%d labels to %s", len(entries), args.level, args.output)
    return 0


# ----------------------------------------------------------------------------- parser
def _scoring_flags(parser: argparse.ArgumentParser, *, split: str) -> None:
    parser.add_argument("--model", required=True, help="checkpoint directory")
    parser.add_argument(
        "--data", help="data directory or JSONL(.gz) file (default ../shared/data/eurlex57k)"
    )
    parser.add_argument(
        "--split", default=split, help=f"split of a data directory (default {split})"
    )
    parser.add_argument("--labels", help="labels file; must match the checkpoint's labels")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads")


def _profiles_help() -> str:
    described = (
        f"{name}: " + ", ".join(f"{key}={value}" for key, value in settings.items())
        for name, settings in PROFILES.items()
    )
    return "named defaults that flags override. " + "; ".join(described)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eurovoc-train", description=__doc__)
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune a model and export a checkpoint")
    train.add_argument("--profile", choices=sorted(PROFILES), help=_profiles_help())
    train.add_argument(
        "--output",
        help="checkpoint directory (default ${EUROVOC_CACHE:-~/.cache/"
        "eurovoc-stream}/models/<profile>)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --output with its own settings",
    )
    _add_config_flags(train)
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="all metrics of a checkpoint on labelled data")
    _scoring_flags(evaluate, split="test")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument(
        "--report", help="also write metrics.json, per_label.csv and a PNG chart here"
    )
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = commands.add_parser("predict", help="label a JSONL file of {id|celex_id, text}")
    predict.add_argument("--model", required=True, help="checkpoint directory")
    predict.add_argument("file", help="JSONL(.gz) input")
    predict.add_argument("-o", "--output", help="output JSONL (default: stdout)")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--device", default="cpu")
    predict.add_argument("--threads", type=int)
    predict.set_defaults(handler=cmd_predict)

    tune = commands.add_parser(
        "tune-thresholds", help="tune thresholds on dev, store them in the checkpoint"
    )
    _scoring_flags(tune, split="dev")
    tune.add_argument(
        "--min-positives",
        type=int,
        default=20,
        help="positive documents a label needs for its own threshold",
    )
    tune.add_argument("--at-least-one", choices=["auto", "on", "off"], default="auto")
    tune.add_argument("--dry-run", action="store_true", help="print, do not write eurovoc.json")
    tune.add_argument("--json", action="store_true")
    tune.set_defaults(handler=cmd_tune_thresholds)

    baseline = commands.add_parser("baseline", help="TF-IDF + logistic regression, same metrics")
    baseline.add_argument("--data", help="data directory (default ../shared/data/eurlex57k)")
    baseline.add_argument("--labels", help="labels file")
    baseline.add_argument("--output", help="write the result JSON here")
    baseline.add_argument("--json", action="store_true")
    baseline.add_argument("--train-subset", type=int)
    baseline.add_argument("--max-features", type=int, default=200_000)
    baseline.add_argument("--c", type=float, default=10.0, help="inverse regularisation strength")
    baseline.add_argument("--jobs", type=int, default=2)
    baseline.set_defaults(handler=cmd_baseline)

    half = commands.add_parser("export-half", help="half-precision copy of a checkpoint, measured")
    half.add_argument("--model", required=True)
    half.add_argument("--output", required=True)
    half.add_argument("--dtype", choices=["float16", "bfloat16"], default="float16")
    half.add_argument("--data", help="measure both on this data (directory or file)")
    half.add_argument("--split", default="test")
    half.add_argument("--batch-size", type=int, default=64)
    half.add_argument("--threads", type=int)
    half.add_argument("--max-change", type=float, default=0.002, help="allowed micro-F1 change")
    half.set_defaults(handler=cmd_export_half)

    labels = commands.add_parser("make-labels", help="a labels file for EuroVoc level 1 or 2")
    labels.add_argument("--concepts", required=True, help="eurovoc_concepts.json.gz")
    labels.add_argument("--level", type=int, choices=[1, 2], default=2)
    labels.add_argument("-o", "--output", required=True)
    labels.set_defaults(handler=cmd_make_labels)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.handler(args)
    except ValueError as exc:  # DataError and CheckpointError are ValueErrors
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
