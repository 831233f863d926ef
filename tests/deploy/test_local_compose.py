"""deploy/local/docker-compose.yml cannot run here (no Docker): check that its parts fit together
and with the worker's settings, and let promtool validate its Prometheus configuration."""

import os
import posixpath
import re
from pathlib import Path

import pytest

from tests.deploy.manifests import load_yaml
from tests.deploy.tools import DEPLOY, REPO, run_tool
from tests.deploy.worker_facts import setting_default, setting_env_names
from worker.runtime.watchdog import EXIT_GRACE_S
from worker.settings.worker_settings import load_settings

LOCAL = DEPLOY / "local"
COMPOSE = load_yaml(LOCAL / "docker-compose.yml")
SERVICES = COMPOSE["services"]


def binds(service: str) -> dict[str, str]:
    """``{container path: host path}`` of a service's bind mounts (named volumes left out)."""
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        parts = volume.rsplit(":", 2)
        host, target = parts[:2] if parts[-1] in ("ro", "rw") else volume.rsplit(":", 1)
        if host.startswith((".", "/", "$")):
            mounts[target] = host
    return mounts


def host_path(host: str) -> Path:
    return (LOCAL / host).resolve()


def test_the_stack_has_a_broker_a_worker_prometheus_and_grafana():
    assert {"kafka", "topics", "worker", "prometheus", "grafana"} <= set(SERVICES)


def test_every_bind_mount_exists():
    for service in SERVICES:
        for target, host in binds(service).items():
            if host.startswith("$"):  # the checkpoint directory, chosen by the user
                assert target == SERVICES["worker"]["environment"]["EUROVOC_MODEL"]
                continue
            assert host_path(host).exists(), f"{service}: {host}"


def test_the_worker_is_built_from_the_cpu_image_with_real_settings(monkeypatch):
    worker = SERVICES["worker"]
    build = worker["build"]
    assert (host_path(build["context"]) / build["dockerfile"]) == DEPLOY / "docker" / "Dockerfile.cpu"
    env = {name: str(value) for name, value in worker["environment"].items()}
    assert set(env) <= setting_env_names()
    for name in [name for name in os.environ if name.startswith("EUROVOC_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    grace = int(re.fullmatch(r"(\d+)s", worker["stop_grace_period"]).group(1))
    ops = settings.operations
    assert grace >= ops.drain_timeout_s + EXIT_GRACE_S
    assert worker["ports"] == [f"127.0.0.1:{ops.metrics_port}:{ops.metrics_port}"]


def test_the_worker_reaches_the_broker_and_its_topics_exist():
    env = SERVICES["worker"]["environment"]
    kafka_env = SERVICES["kafka"]["environment"]
    advertised = dict(
        listener.split("://") for listener in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    assert env["EUROVOC_BOOTSTRAP_SERVERS"] in advertised.values()
    assert "localhost:9092" in advertised.values()  # clients on the host
    [script] = SERVICES["topics"]["command"]
    for topic in (env["EUROVOC_INPUT_TOPIC"], env["EUROVOC_OUTPUT_TOPIC"], env["EUROVOC_DLQ_TOPIC"]):
        assert re.search(rf"\b{re.escape(topic)}\b", script.split(";")[0]), topic
    assert f"--bootstrap-server {env['EUROVOC_BOOTSTRAP_SERVERS']}" in script


def test_prometheus_config_is_valid_and_loads_the_alert_rules():
    result = run_tool("promtool", "check", "config", str(LOCAL / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_yaml(LOCAL / "prometheus.yml")
    mounts = binds("prometheus")
    [config_file] = [arg.split("=", 1)[1] for arg in SERVICES["prometheus"]["command"]
                     if arg.startswith("--config.file=")]
    assert host_path(mounts[config_file]) == LOCAL / "prometheus.yml"
    for rule_file in config["rule_files"]:
        in_container = posixpath.normpath(posixpath.join(posixpath.dirname(config_file), rule_file))
        directory, name = posixpath.split(in_container)
        assert host_path(mounts[directory]) / name == DEPLOY / "prometheus" / "alerts.yaml"
    [job] = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"worker:{setting_default('metrics_port')}"]


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard():
    mounts = binds("grafana")
    provisioning = host_path(mounts["/etc/grafana/provisioning"])
    [datasource] = load_yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090" and datasource["type"] == "prometheus"
    assert "127.0.0.1:9090:9090" in SERVICES["prometheus"]["ports"]
    [provider] = load_yaml(provisioning / "dashboards" / "eurovoc.yaml")["providers"]
    dashboards = [host_path(host) for target, host in mounts.items()
                  if posixpath.dirname(target) == provider["options"]["path"]]
    assert dashboards == [DEPLOY / "grafana" / "eurovoc-worker.json"]


@pytest.mark.parametrize("path", sorted((REPO / "deploy").rglob("*.y*ml")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_yaml_file_parses(path):
    import yaml

    assert list(yaml.safe_load_all(path.read_text()))
