"""``eurovoc-worker``: the console script.

    eurovoc-worker run --bootstrap-servers HOST:PORT --input-topic T --output-topic T \\
        --dlq-topic T --group-id G --model DIR          # the Kafka worker (worker.app)
    eurovoc-worker classify ...                         # files in, labels out (worker.classify)
    eurovoc-worker produce ... / tail ...               # demo I/O (worker.demo_io)

``run`` takes every ``WorkerSettings`` field as a flag (``run --help`` lists them with defaults
and their ``EUROVOC_*`` variables); flags beat environment variables, which beat ``--config
FILE`` (JSON or TOML), which beats the defaults.
"""

import argparse
import sys

from pydantic import ValidationError
from pydantic_settings import CliSettingsSource, SettingsError

from worker import __version__, classify, demo_io
from worker.config import ConfigFileError, WorkerSettings, load_settings

EXIT_CONFIG = 2

RUN_DESCRIPTION = """Consume documents from a Kafka topic, classify them in micro-batches and
publish one label message per document (at-least-once; bad records go to the dead-letter topic).

Every setting is a flag below, an EUROVOC_<NAME> environment variable (EUROVOC_GROUP_ID,
EUROVOC_MAX_IN_FLIGHT, ...) or a key of the --config file; flags win over the environment, which
wins over the file. Exit codes: 0 stopped cleanly, 1 fatal error, 2 invalid configuration,
3 dead-letter limit tripped."""


def _config_error(message: str) -> int:
    print(f"eurovoc-worker run: invalid configuration: {message}", file=sys.stderr)
    return EXIT_CONFIG


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        parts.append(f"{name}: {error['msg']}")
    return "; ".join(parts)


def add_run_parser(subparsers: argparse._SubParsersAction) -> CliSettingsSource:
    parser = subparsers.add_parser(
        "run",
        help="Run the Kafka worker.",
        description=RUN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="JSON or TOML file of settings (default: $EUROVOC_CONFIG).",
    )
    source = CliSettingsSource(
        WorkerSettings,
        root_parser=parser,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_hide_none_type=True,
        cli_avoid_json=True,
    )
    parser.set_defaults(func=lambda args: run_command(args, source))
    return source


def run_command(args: argparse.Namespace, source: CliSettingsSource) -> int:
    from worker.app import run_worker
    from worker.checkpoint import CheckpointError

    namespace = {key: value for key, value in vars(args).items()
                 if key not in ("command", "func", "config")}
    try:
        settings = load_settings(
            config_file=args.config, _cli_settings_source=source(parsed_args=namespace)
        )
    except ValidationError as exc:
        return _config_error(_format_validation_error(exc))
    except (ConfigFileError, SettingsError, ValueError) as exc:
        return _config_error(str(exc))
    try:
        return run_worker(settings)
    except CheckpointError as exc:
        return _config_error(f"model: {exc}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eurovoc-worker",
        description="Streaming EuroVoc document classifier.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_parser(subparsers)
    classify.register(subparsers)
    demo_io.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
