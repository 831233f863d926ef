"""``eurovoc-train``: train, evaluate, predict, tune thresholds, run the baseline, export fp16.

``evaluate`` and ``tune-thresholds`` score through the worker's engine with the worker's engine
flags; ``predict`` is ``eurovoc-worker classify``.

Every subcommand reads and writes local files only; nothing is downloaded from a model hub.
Every subcommand but ``predict`` needs the ``[train]`` extra (``model_training.extras``).
``train`` runs in one process or under ``torchrun`` / ``accelerate launch`` (data-parallel).
"""

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from pydantic import ValidationError
from pydantic_settings import CliSettingsSource

from model_training import commands
from model_training.extras import INSTALL_HINT, missing_train_packages
from model_training.profiles import ENV_PREFIX, TrainConfig, default_output_dir
from worker.settings.engine_flags import add_engine_arguments
from worker.settings.flags import add_settings_flags

logger = logging.getLogger("eurovoc-train")

TRAIN_DESCRIPTION = f"""Fine-tune a model, tune thresholds on dev and export a checkpoint.

Every setting below is a flag, an {ENV_PREFIX}<NAME> environment variable ({ENV_PREFIX}EPOCHS=3)
or a value of --profile's preset; flags win over the environment, which wins over the profile.
Data-parallel on N GPUs (or CPU processes):
  torchrun --nproc_per_node N -m model_training.cli train --profile gpu --output DIR"""


def cmd_train(args: argparse.Namespace, source: CliSettingsSource) -> int:
    from model_training.trainer import run_training, saved_config  # noqa: PLC0415 - heavy import

    given = {name: value for name, value in vars(args).items() if name in TrainConfig.model_fields}
    if args.resume:
        if args.output is None:
            logger.error("--resume needs the --output of the interrupted run")
            return 2
        config = saved_config(args.output).model_copy(
            update={"stop_after_steps": given.get("stop_after_steps")}
        )
    else:
        config = TrainConfig(_cli_settings_source=source(parsed_args=given))
    output = args.output or str(default_output_dir(config.profile))
    result = run_training(config, output, resume=args.resume)
    if result.status == "interrupted":
        logger.info(
            "interrupted at step %d; continue with: eurovoc-train train --output %s --resume",
            result.summary.steps,
            output,
        )
    elif result.manifest is not None:
        for line in commands.metrics_lines(result.manifest.metrics):
            logger.info(line)
    return 0


def _train_parser(subcommands: argparse._SubParsersAction) -> None:
    train = subcommands.add_parser(
        "train",
        help="fine-tune a model and export a checkpoint",
        description=TRAIN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    source = add_settings_flags(train, TrainConfig)
    train.set_defaults(handler=lambda args: cmd_train(args, source))


def _scoring_flags(parser: argparse.ArgumentParser, *, split: str) -> None:
    """The data flags, and the worker's engine flags (``--model``, ``--dtype``, ``--max-length``,
    ``--long-documents``, ...: the same as ``eurovoc-worker classify``'s): the documents are
    scored by the worker's engine in-process, exactly as the worker with those settings would."""
    parser.add_argument(
        "--data", help="data directory or JSONL(.gz) file (default ../shared/data/eurlex57k)"
    )
    parser.add_argument(
        "--split", default=split, help=f"split of a data directory (default {split})"
    )
    parser.add_argument("--labels", help="labels file; must match the checkpoint's labels")
    add_engine_arguments(parser)


WORKER_SCRIPT = "eurovoc-worker"


def worker_command_line() -> Callable[[list[str]], int]:
    """``eurovoc-worker``'s ``main``, looked up through its installed entry point (the training
    package runs the worker's commands as a user does, without importing their modules)."""
    found = entry_points(group="console_scripts", name=WORKER_SCRIPT)
    if not found:
        raise ValueError(f"predict runs {WORKER_SCRIPT} classify, which is not installed "
                         "(pip install -e . in the checkout)")
    return next(iter(found)).load()


def cmd_predict(args: argparse.Namespace) -> int:
    """``eurovoc-worker classify`` with the same arguments, in this process."""
    return worker_command_line()(["classify", *args.classify_arguments])


def _predict_parser(subcommands: argparse._SubParsersAction) -> None:
    """``predict`` is ``eurovoc-worker classify``: every argument is passed on, ``--help``
    included, so the flags, the help text and the output are classify's own."""
    predict = subcommands.add_parser(
        "predict",
        help=f"label a JSON-lines file (the same command as {WORKER_SCRIPT} classify)",
        add_help=False,
        prefix_chars="+",  # no option of its own: "--model" and "--help" are classify's
    )
    predict.add_argument("classify_arguments", nargs=argparse.REMAINDER)
    predict.set_defaults(handler=cmd_predict, needs_train_extra=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eurovoc-train", description=__doc__)
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.set_defaults(needs_train_extra=True)
    subcommands = parser.add_subparsers(dest="command", required=True)
    _train_parser(subcommands)

    evaluate = subcommands.add_parser(
        "evaluate", help="all metrics of a checkpoint on labelled data"
    )
    _scoring_flags(evaluate, split="test")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument(
        "--report", help="also write metrics.json, per_label.csv and a PNG chart here"
    )
    evaluate.set_defaults(handler=commands.cmd_evaluate)

    _predict_parser(subcommands)

    tune = subcommands.add_parser(
        "tune-thresholds",
        help="tune thresholds on dev (never the test split), store them and refresh the metrics",
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
    tune.set_defaults(handler=commands.cmd_tune_thresholds)

    baseline = subcommands.add_parser(
        "baseline", help="TF-IDF + logistic regression on title + text, same metrics"
    )
    baseline.add_argument("--data", help="data directory (default ../shared/data/eurlex57k)")
    baseline.add_argument("--labels", help="labels file")
    baseline.add_argument("--output", help="write the result JSON here")
    baseline.add_argument("--json", action="store_true")
    baseline.add_argument("--train-subset", type=int)
    baseline.add_argument("--max-features", type=int, default=200_000)
    baseline.add_argument("--c", type=float, default=10.0, help="inverse regularisation strength")
    baseline.add_argument("--jobs", type=int, default=2)
    baseline.set_defaults(handler=commands.cmd_baseline)

    half = subcommands.add_parser(
        "export-half", help="half-precision copy of a checkpoint, measured"
    )
    half.add_argument("--model", required=True)
    half.add_argument("--output", required=True)
    half.add_argument("--dtype", choices=["float16", "bfloat16"], default="float16")
    half.add_argument("--data", help="measure both on this data (directory or file)")
    half.add_argument("--split", default="test")
    half.add_argument("--threads", type=int, help="torch CPU threads (default: usable cores)")
    half.add_argument("--max-change", type=float, default=0.002, help="allowed micro-F1 change")
    half.set_defaults(handler=commands.cmd_export_half)

    labels = subcommands.add_parser("make-labels", help="a labels file for EuroVoc level 1 or 2")
    labels.add_argument("--concepts", required=True, help="eurovoc_concepts.json.gz")
    labels.add_argument("--level", type=int, choices=[1, 2], default=2)
    labels.add_argument("-o", "--output", required=True)
    labels.set_defaults(handler=commands.cmd_make_labels)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Under torchrun only the first process logs progress; the others say only what goes wrong.
    quiet = os.environ.get("RANK", "0") != "0"
    logging.basicConfig(
        level="WARNING" if quiet else args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    missing = missing_train_packages() if args.needs_train_extra else []
    if missing:
        logger.error("eurovoc-train %s needs the training extra (%s not installed): %s",
                     args.command, ", ".join(missing), INSTALL_HINT)
        return 2
    try:
        return args.handler(args)
    except ValidationError as exc:
        problems = (
            f"{'.'.join(str(part) for part in error['loc']) or 'profile'}: {error['msg']}"
            for error in exc.errors()
        )
        logger.error("invalid settings: %s", "; ".join(problems))
        return 2
    except ValueError as exc:  # DataError and CheckpointError are ValueErrors
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
