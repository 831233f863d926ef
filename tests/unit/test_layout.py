"""The architecture's boundaries, read from the import graph of the source (no module imported).

Each rule names a package and the first-party packages it may not (or may only) import. A
violation fails with the importing module, the line and the imported module, so the message says
what to move. Imports inside functions count too: a deferred import is still a dependency.
"""

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("worker", "model_training", "schemas")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    line: int
    target: str  # the imported module, dotted (``from a import b``: ``a.b`` when b is a module)


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    base = REPO.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path, root: Path = REPO) -> Iterator[Import]:
    """The first-party imports of one source file below ``root`` (relative imports resolved
    against its package; ``from package import name`` counts as importing the module
    ``package.name`` when the repository has one)."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] in FIRST_PARTY:
                yield Import(module, node.lineno, target)


def source_imports(*packages: str) -> list[Import]:
    found = []
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            found.extend(imports_of(path))
    return found


def within(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


@dataclass(frozen=True)
class Rule:
    package: str
    forbidden: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None  # first-party packages it may import (besides itself)

    def violations(self, imports: list[Import]) -> list[str]:
        bad = []
        for imp in imports:
            if not within(imp.module, self.package) or within(imp.target, self.package):
                continue
            refused = any(within(imp.target, name) for name in self.forbidden)
            if self.only is not None:
                refused |= not any(within(imp.target, name) for name in self.only)
            if refused:
                bad.append(f"{imp.module}:{imp.line} imports {imp.target}")
        return bad


RULES = [
    # What scores text knows nothing of Kafka, the pipeline, the process or the commands.
    Rule("worker.inference", forbidden=("worker.pipeline", "worker.kafka", "worker.runtime",
                                        "worker.commands", "worker.app", "model_training")),
    # The chain of steps is composed by worker.app and never reaches into the commands.
    Rule("worker.pipeline", forbidden=("worker.commands", "worker.app", "model_training")),
    Rule("worker.kafka", forbidden=("worker.inference", "worker.pipeline", "worker.commands",
                                    "worker.app", "model_training")),
    Rule("worker.runtime", forbidden=("worker.commands", "worker.app", "model_training")),
    Rule("worker.settings", forbidden=("worker.pipeline", "worker.kafka", "worker.runtime",
                                       "worker.commands", "worker.app", "model_training")),
    # The message formats depend on nothing of ours.
    Rule("schemas", only=()),
    # Training reuses the worker's inference and flag generation, nothing of its Kafka side.
    Rule("model_training", only=("worker.inference", "worker.settings", "schemas")),
    # The worker never needs the training package.
    Rule("worker", forbidden=("model_training",)),
]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.package)
def test_each_package_imports_only_what_its_boundary_allows(rule):
    assert rule.violations(source_imports("worker", "model_training", "schemas")) == []


def test_the_composition_root_and_the_commands_are_imported_only_from_the_command_line():
    # worker.app composes a worker; only the run command (and tests, benchmarks) start one.
    users = {imp.module for imp in source_imports("worker", "model_training", "schemas")
             if within(imp.target, "worker.app") or within(imp.target, "worker.commands")}
    assert {user for user in users if not within(user, "worker.commands")
            and user != "worker.__main__"} == set()


def test_the_rules_see_a_violation_when_there_is_one():
    imports = [Import("worker.inference.engine", 3, "worker.pipeline.work_items"),
               Import("model_training.cli", 7, "worker.commands.classify"),
               Import("model_training.cli", 8, "worker.settings.flags")]
    assert RULES[0].violations(imports) == [
        "worker.inference.engine:3 imports worker.pipeline.work_items"]
    training = next(rule for rule in RULES if rule.package == "model_training")
    assert training.violations(imports) == ["model_training.cli:7 imports worker.commands.classify"]


def test_relative_and_deferred_imports_are_read(tmp_path):
    source = tmp_path / "worker" / "inference" / "probe.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f():\n    from ..pipeline import work_items\n    import schemas.labels\n")
    found = list(imports_of(source, root=tmp_path))
    assert [(imp.line, imp.target) for imp in found] == [
        (2, "worker.pipeline.work_items"), (3, "schemas.labels")]
