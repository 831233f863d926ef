"""Rendered Kubernetes manifests (``kustomize build``) and the worker container's view of them."""

from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.deploy.tools import DEPLOY, run_tool

K8S = DEPLOY / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())


@dataclass
class Rendered:
    overlay: str
    objects: list[dict]

    @classmethod
    def build(cls, overlay: str) -> "Rendered":
        result = run_tool("kustomize", "build", str(K8S / "overlays" / overlay))
        assert result.returncode == 0, f"kustomize build {overlay} failed:\n{result.stderr}"
        return cls(overlay, [doc for doc in yaml.safe_load_all(result.stdout) if doc])

    def all(self, kind: str) -> list[dict]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str) -> dict:
        [obj] = self.all(kind)
        return obj

    @property
    def workload(self) -> dict:
        return self.one("StatefulSet")

    @property
    def pod(self) -> dict:
        return self.workload["spec"]["template"]

    @property
    def container(self) -> dict:
        [container] = [c for c in self.pod["spec"]["containers"] if c["name"] == "worker"]
        return container

    def config_map(self, name: str) -> dict:
        [obj] = [cm for cm in self.all("ConfigMap") if cm["metadata"]["name"] == name]
        return obj

    def env(self) -> dict[str, dict]:
        """Every variable of the worker container: ``{name: {"value": ...} or {"valueFrom": ...}}``
        (envFrom ConfigMaps first, then env, which wins, as in Kubernetes)."""
        variables: dict[str, dict] = {}
        for source in self.container.get("envFrom", []):
            data = self.config_map(source["configMapRef"]["name"])["data"]
            variables.update({name: {"value": value} for name, value in data.items()})
        for entry in self.container.get("env", []):
            variables[entry["name"]] = {k: v for k, v in entry.items() if k != "name"}
        return variables

    def env_values(self) -> dict[str, str]:
        return {name: spec["value"] for name, spec in self.env().items() if "value" in spec}

    def mount_of(self, volume: str) -> str:
        [mount] = [m for m in self.container["volumeMounts"] if m["name"] == volume]
        return mount["mountPath"]

    def volume(self, name: str) -> dict:
        [volume] = [v for v in self.pod["spec"]["volumes"] if v["name"] == name]
        return volume

    def secret_file(self, path: str) -> tuple[str, str] | None:
        """``(secret name, key)`` of a file path inside a mounted Secret volume, else None."""
        for mount in self.container.get("volumeMounts", []):
            root = mount["mountPath"].rstrip("/") + "/"
            secret = self.volume(mount["name"]).get("secret")
            if secret and path.startswith(root):
                relative = path[len(root):]
                items = secret.get("items")
                if items is None:
                    return secret["secretName"], relative
                for item in items:
                    if item["path"] == relative:
                        return secret["secretName"], item["key"]
        return None


def matches(selector: dict, labels: dict) -> bool:
    """A label selector's matchLabels against labels (matchExpressions are not used here)."""
    assert set(selector) <= {"matchLabels"}, selector
    wanted = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(key) == value for key, value in wanted.items())


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())
