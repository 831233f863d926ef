"""What the deploy files must agree with, read from the worker's code (never a copied list)."""

from pydantic import AliasChoices, AliasPath, BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from worker.config import CONFIG_ENV, WorkerSettings
from worker.metrics import WorkerMetrics

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
    "gauge": ("",),
}


def _aliases(field: FieldInfo) -> list[str]:
    alias = field.validation_alias or field.alias
    if alias is None:
        return []
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    names = []
    for choice in choices:
        if isinstance(choice, AliasPath):
            choice = choice.path[0]
        if isinstance(choice, str):
            names.append(choice)
    return names


def _env_names(model: type[BaseModel], prefix: str, delimiter: str | None) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        # pydantic-settings: an alias is the whole variable name (no prefix)
        names.update(_aliases(field) or [prefix + name])
        nested = field.annotation
        if delimiter and isinstance(nested, type) and issubclass(nested, BaseModel):
            names |= _env_names(nested, f"{prefix}{name}{delimiter}", delimiter)
    return names


def setting_env_names(model: type[BaseSettings] = WorkerSettings) -> set[str]:
    """Every environment variable the worker's settings model reads (upper case)."""
    config = model.model_config
    names = _env_names(model, config.get("env_prefix", ""), config.get("env_nested_delimiter"))
    return {name.upper() for name in names} | {CONFIG_ENV}


def setting_default(name: str):
    return WorkerSettings.model_fields[name].get_default(call_default_factory=True)


def metric_sample_names() -> set[str]:
    """Every sample name the worker's metric registry can export."""
    names = set()
    for family in WorkerMetrics().registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names
