"""``eurovoc-worker run``: the Kafka worker's command line (the worker itself: ``worker.app``).

    eurovoc-worker run --bootstrap-servers HOST:PORT --input-topic T --output-topic T \\
        --dlq-topic T --group-id G --model DIR

Every setting is a flag, flat (``--max-in-flight``) or grouped (``--engine.max-in-flight``),
generated from ``WorkerSettings`` by pydantic-settings (``run --help`` lists them by group with
their defaults); flags beat ``EUROVOC_*`` environment variables, which beat ``--config FILE``
(JSON or TOML), which beats the defaults (``worker.settings.worker_settings``).
"""

import argparse
import sys

from pydantic import ValidationError
from pydantic_settings import CliSettingsSource, SettingsError

from schemas.validation import describe_validation_error
from worker.exit_codes import ExitCode
from worker.settings.flags import add_settings_flags, flag_values
from worker.settings.worker_settings import (
    ConfigFileError,
    WorkerSettings,
    load_settings,
)

DESCRIPTION = """Consume documents from a Kafka topic, classify them in micro-batches and
publish one label message per document (at-least-once, or --delivery exactly-once; bad records
go to the dead-letter topic).

Every setting is a flag below (flat --max-in-flight or grouped --engine.max-in-flight), an
EUROVOC_<NAME> environment variable (EUROVOC_GROUP_ID, EUROVOC_MAX_IN_FLIGHT, or grouped
EUROVOC_ENGINE__MAX_IN_FLIGHT) or a key of the --config file (flat or in [group] tables); flags
win over the environment, which wins over the file. Exit codes: 0 stopped cleanly, 1 fatal
error, 2 invalid configuration or a missing topic, 3 dead-letter limit tripped."""


def _config_error(message: str) -> int:
    print(f"eurovoc-worker run: invalid configuration: {message}", file=sys.stderr)
    return ExitCode.CONFIG


def register(subparsers: argparse._SubParsersAction) -> CliSettingsSource:
    parser = subparsers.add_parser(
        "run",
        help="Run the Kafka worker.",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="JSON or TOML file of settings (default: $EUROVOC_CONFIG).",
    )
    source = add_settings_flags(parser, WorkerSettings)
    parser.set_defaults(func=lambda args: run_command(args, source))
    return source


def run_command(args: argparse.Namespace, source: CliSettingsSource) -> int:
    try:
        settings = load_settings(config_file=args.config, cli=flag_values(source, args))
    except ValidationError as exc:
        return _config_error(describe_validation_error(exc, whole="settings"))
    except (ConfigFileError, SettingsError, ValueError) as exc:
        return _config_error(str(exc))
    # torch and transformers are imported by the engine, once the worker has checked the
    # checkpoint's manifest, its Kafka credentials and its topics (worker.app).
    from worker.app import run_worker

    return run_worker(settings)
