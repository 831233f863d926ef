"""``eurovoc-worker replay-dlq``: the command line of :mod:`worker.commands.dlq_replayer`."""

import argparse
import logging
import sys

import orjson
from kafka.errors import KafkaError
from pydantic import ValidationError
from pydantic_settings import CliSettingsSource, SettingsError

from schemas.validation import describe_validation_error
from worker.commands.dlq_replayer import CLIENT_ID, ReplayError, replay
from worker.exit_codes import ExitCode, signal_exit_code
from worker.kafka.access import KafkaAccessDenied, KafkaUnreachable, connect_admin
from worker.runtime.signals import StopSignals
from worker.settings.flags import add_settings_flags, flag_values
from worker.settings.replay import ReplaySettings

logger = logging.getLogger(__name__)

DESCRIPTION = """Republish dead letters to the input topic, keys and values unchanged, with a
replay.count header (the worker carries it into any new dead letter; dead letters replayed
--max-replays times are skipped). Dead letters whose value was cut to fit the dead-letter topic are
never replayed. Progress is committed to the replay's own consumer group, so a run that was
interrupted resumes where it stopped. Stops at the end offsets seen at its start; prints a JSON
summary. Settings are flags or EUROVOC_<NAME> variables (as for `run`).

Exit codes: 0 done (or --limit reached), 1 Kafka error or failed delivery, 2 invalid settings or
credentials refused, 128+N stopped by signal N after committing the work before it."""


def register(subparsers: argparse._SubParsersAction) -> CliSettingsSource:
    parser = subparsers.add_parser(
        "replay-dlq", help="Republish dead letters to the input topic.", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = add_settings_flags(parser, ReplaySettings)
    parser.set_defaults(func=lambda args: run_command(args, source))
    return source


def _invalid(message: str) -> int:
    print(f"eurovoc-worker replay-dlq: {message}", file=sys.stderr)
    return ExitCode.CONFIG


def run_command(args: argparse.Namespace, source: CliSettingsSource, out=sys.stdout) -> int:
    try:
        settings = ReplaySettings(_cli_settings_source=flag_values(source, args))
    except ValidationError as exc:
        return _invalid("invalid configuration: " + describe_validation_error(exc, whole="settings"))
    except (SettingsError, ValueError) as exc:
        return _invalid(f"invalid configuration: {exc}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        connect_admin(settings, CLIENT_ID).close()
    except KafkaAccessDenied as exc:
        return _invalid(f"Kafka at {settings.bootstrap_servers}: {exc}")
    except KafkaUnreachable as exc:
        logger.error("%s", exc)
        return ExitCode.FATAL
    logger.info("replaying %s -> %s (group %s)%s", settings.dlq_topic, settings.input_topic,
                settings.group_id, " as a dry run" if settings.dry_run else "")
    with StopSignals() as stop:
        try:
            report = replay(settings, out, stop)
        except (ReplayError, KafkaError) as exc:
            logger.error("replay failed: %s", exc)
            return ExitCode.FATAL
    out.write(orjson.dumps({"summary": report.as_dict()}).decode() + "\n")
    out.flush()
    return signal_exit_code(stop.signum) if stop.signum is not None else ExitCode.OK
