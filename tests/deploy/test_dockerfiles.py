"""deploy/docker: the images cannot be built here (no registry), so their Dockerfiles are parsed and
checked against the worker's code: entrypoint, settings, health check, user, layer order."""

import io
import json
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from model_training.extras import TRAIN_PACKAGES
from tests.deploy.tools import DEPLOY, REPO
from tests.deploy.worker_facts import setting_default, setting_env_names
from worker.commands.cli import main as worker_cli

DOCKERFILES = {"cpu": DEPLOY / "docker" / "Dockerfile.cpu", "gpu": DEPLOY / "docker" / "Dockerfile.gpu"}
IMAGE_UID = 10001  # deploy/k8s runs the pods as this user too


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for name, value in self.instructions if name == instruction]


def structure(path: Path) -> list[dict]:
    """The parsed instructions (dockerfile-parse reads a named Dockerfile from a file object)."""
    return DockerfileParser(fileobj=io.BytesIO(path.read_bytes())).structure


def stages(path: Path) -> list[Stage]:
    result: list[Stage] = []
    for entry in structure(path):
        instruction, value = entry["instruction"], entry["value"]
        if instruction == "FROM":
            base, _, name = value.partition(" AS ")
            result.append(Stage(base.strip(), name.strip() or None))
        elif result:
            result[-1].instructions.append((instruction, value))
    return result


def stage(all_stages: list[Stage], name: str) -> Stage:
    [found] = [s for s in all_stages if s.name == name]
    return found


def env_of(stage_: Stage) -> dict[str, str]:
    """The ``ENV KEY=value ...`` pairs a stage sets (values unexpanded)."""
    pairs = [pair for value in stage_.values("ENV") for pair in shlex.split(value)]
    return dict(pair.split("=", 1) for pair in pairs)


@pytest.fixture(params=sorted(DOCKERFILES))
def image(request) -> tuple[str, list[Stage]]:
    return request.param, stages(DOCKERFILES[request.param])


def test_the_default_image_is_the_runtime_stage_with_a_mounted_model(image):
    _, all_stages = image
    assert all_stages[-1].base == "runtime" and all_stages[-1].name is None
    model_path = env_of(stage(all_stages, "runtime"))["EUROVOC_MODEL"]
    [baked] = stage(all_stages, "baked").values("COPY")
    assert baked.split()[-2:] == ["${MODEL_DIR}", model_path]
    assert "MODEL_DIR" in stage(all_stages, "baked").values("ARG")


def test_entrypoint_is_eurovoc_worker_run(image):
    _, all_stages = image
    [entrypoint] = stage(all_stages, "runtime").values("ENTRYPOINT")
    assert json.loads(entrypoint) == ["eurovoc-worker", "run"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["eurovoc-worker"] == "worker.commands.cli:main"
    with pytest.raises(SystemExit) as exited:  # `run` is a real sub-command
        worker_cli(["run", "--help"])
    assert exited.value.code == 0


def test_every_eurovoc_variable_is_a_real_setting(image):
    _, all_stages = image
    env = env_of(stage(all_stages, "runtime"))
    names = {name for name in env if name.startswith("EUROVOC_")}
    assert {"EUROVOC_MODEL", "EUROVOC_DEVICE", "EUROVOC_METRICS_PORT"} <= names
    assert names <= setting_env_names()
    assert int(env["EUROVOC_METRICS_PORT"]) == setting_default("metrics_port")


def test_healthcheck_asks_healthz_on_the_metrics_port(image):
    _, all_stages = image
    runtime = stage(all_stages, "runtime")
    [check] = runtime.values("HEALTHCHECK")
    assert "/healthz" in check and "EUROVOC_METRICS_PORT" in check
    assert f"'{setting_default('metrics_port')}'" in check
    assert runtime.values("EXPOSE") == [str(setting_default("metrics_port"))]


def test_runs_as_a_non_root_user(image):
    _, all_stages = image
    [user] = stage(all_stages, "runtime").values("USER")
    assert user == f"{IMAGE_UID}:{IMAGE_UID}"
    assert any(f"--uid {IMAGE_UID}" in run for run in stage(all_stages, "runtime").values("RUN"))


def test_dependencies_are_installed_before_the_code_is_copied(image):
    _, all_stages = image
    build = stage(all_stages, "build")
    steps = [f"{name} {value}" for name, value in build.instructions]

    def first(prefix: str) -> int:
        return next(i for i, step in enumerate(steps) if step.startswith(prefix))

    torch = first("RUN pip install --index-url")
    pyproject = first("COPY pyproject.toml")
    requirements = first("RUN python -c")
    code = first("COPY worker")
    install = first("RUN pip install --no-deps .")
    assert torch < pyproject < requirements < code < install
    # the dependency layer depends on pyproject.toml alone
    assert not any(step.startswith("COPY") for step in steps[pyproject + 1:requirements])


def test_images_install_only_what_the_worker_needs(image):
    """The project's base dependencies and the project without its extras: no [train]."""
    _, all_stages = image
    installs = [run for run in stage(all_stages, "build").values("RUN") if "pip install" in run]
    assert any("['project']['dependencies']" in run for run in installs)
    assert installs[-1].endswith("pip install --no-deps .")
    for run in installs:
        assert "optional-dependencies" not in run and "[train" not in run
        assert not any(package in run for package in TRAIN_PACKAGES.values())
    base = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not any(line.startswith(tuple(TRAIN_PACKAGES.values())) for line in base)


def test_cpu_image_takes_torchs_cpu_build_and_gpu_image_a_cuda_runtime(image):
    kind, all_stages = image
    torch_index = [v for v in stage(all_stages, "build").values("ARG") if v.startswith("TORCH_INDEX_URL=")]
    if kind == "cpu":
        assert torch_index == ["TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"]
        assert env_of(stage(all_stages, "runtime"))["EUROVOC_DEVICE"] == "cpu"
    else:
        [cuda_arg] = [e["value"] for e in structure(DOCKERFILES[kind]) if e["instruction"] == "ARG" and e["value"].startswith("CUDA_IMAGE=")]
        assert cuda_arg.startswith("CUDA_IMAGE=nvidia/cuda:") and "-runtime-" in cuda_arg
        assert env_of(stage(all_stages, "runtime"))["EUROVOC_DEVICE"] == "cuda"


def test_dockerignore_lets_in_exactly_what_the_images_copy():
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[0] == "**"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for path in DOCKERFILES.values():
        for entry in structure(path):
            if entry["instruction"] == "COPY" and "--from" not in entry["value"]:
                sources = [s for s in entry["value"].split()[:-1] if not s.startswith("--")]
                copied |= {s.rstrip("/") for s in sources if not s.startswith("$")}
    assert copied <= allowed and ".venv" not in allowed
    assert "models" in allowed  # where a baked MODEL_DIR lies
