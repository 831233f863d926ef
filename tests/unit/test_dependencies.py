"""Every base dependency in pyproject.toml is imported by the project's code (or, where the
comment beside it says so, by another dependency), and none is training-only."""

import ast
import importlib.util
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

from model_training.extras import TRAIN_PACKAGES

REPO = Path(__file__).resolve().parents[2]
CODE = ("worker", "schemas", "model_training")
IMPORTED_BY = {"crc32c": "kafka.record.util"}
"""Dependency -> the module of another dependency that imports it."""
def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def base_dependencies() -> set[str]:
    return {normalized(Requirement(line).name) for line in project()["dependencies"]}


def imported_distributions() -> set[str]:
    """The distributions of every module the project's code imports."""
    modules = set()
    for package in CODE:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules.add(node.module.split(".")[0])
    owners = packages_distributions()
    return {normalized(dist) for module in modules for dist in owners.get(module, ())}


def test_every_base_dependency_is_imported():
    unused = base_dependencies() - imported_distributions() - set(IMPORTED_BY)
    assert not unused, f"listed but never imported: {sorted(unused)}"


def test_dependencies_said_to_be_imported_by_another_are():
    for dependency, module in IMPORTED_BY.items():
        assert dependency in base_dependencies()
        source = Path(importlib.util.find_spec(module).origin).read_text()
        assert f"from {dependency} import" in source


def test_training_packages_are_only_in_the_train_extra():
    assert not base_dependencies() & {normalized(name) for name in TRAIN_PACKAGES.values()}
