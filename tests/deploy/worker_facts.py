"""What the deploy files must agree with, read from the worker's code (never a copied list)."""

from worker.runtime.metrics import WorkerMetrics
from worker.settings.worker_settings import (
    CONFIG_ENV,
    ENV_PREFIX,
    WorkerSettings,
    setting_groups,
)

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
    "gauge": ("",),
}


def setting_env_names() -> set[str]:
    """Every environment variable the worker reads: ``EUROVOC_<NAME>`` for each setting (and
    each old name still accepted) and ``EUROVOC_<GROUP>__<NAME>`` (upper case)."""
    names = {CONFIG_ENV}
    for group, settings in setting_groups(WorkerSettings).items():
        for name, field_name in settings.items():
            names.add(f"{ENV_PREFIX}{name}".upper())
            names.add(f"{ENV_PREFIX}{group}__{field_name}".upper())
    return names


def setting_default(name: str):
    """The default of a setting, by its flat name."""
    for group, settings in setting_groups(WorkerSettings).items():
        if name in settings:
            model = WorkerSettings.model_fields[group].annotation
            return model.model_fields[settings[name]].get_default(call_default_factory=True)
    raise KeyError(f"{name} is not a worker setting")


def metric_sample_names() -> set[str]:
    """Every sample name the worker's metric registry can export."""
    names = set()
    for family in WorkerMetrics().registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names
