"""The engine group as command-line flags (``--model``, ``--engine.model``...), for the commands
that run the engine on files: ``eurovoc-worker classify``, ``eurovoc-train evaluate`` and
``tune-thresholds``, and the benchmarks."""

import argparse

from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.inference.engine_settings import EngineSettings
from worker.settings.flags import add_settings_flags, flag_values

_FLAGS_SOURCE = "_engine_flags"  # where add_engine_arguments leaves its source in the namespace


class ClassifySettings(BaseSettings):
    """The engine settings of a file command: the engine group, from command-line flags only
    (no environment, no file: ``EUROVOC_*`` configures the Kafka worker)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    engine: EngineSettings

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **_environment_and_files):
        return (init_settings,)  # the CLI source is put in front by pydantic-settings


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per engine setting (``--model``, ``--engine.model``...), generated as for
    ``eurovoc-worker run``; read the parsed flags with :func:`settings_from_args`."""
    parser.set_defaults(**{_FLAGS_SOURCE: add_settings_flags(parser, ClassifySettings)})


def settings_from_args(args: argparse.Namespace) -> EngineSettings:
    """The engine settings of a namespace parsed by a parser with ``add_engine_arguments``."""
    source = flag_values(getattr(args, _FLAGS_SOURCE), args)
    return ClassifySettings(_cli_settings_source=source).engine
