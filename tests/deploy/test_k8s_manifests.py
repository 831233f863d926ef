"""deploy/k8s: every overlay renders with kustomize and agrees with the worker's own code."""

import os
import urllib.error
import urllib.request

import kubernetes_validate
import pytest

from tests.deploy.manifests import OVERLAYS, Rendered, matches
from tests.deploy.worker_facts import setting_default, setting_env_names
from worker.runtime.http_endpoints import HealthServer, HealthState
from worker.runtime.metrics import WorkerMetrics
from worker.runtime.watchdog import EXIT_GRACE_S
from worker.settings.worker_settings import load_settings

KUBERNETES_VERSION = "1.30"  # the oldest Kubernetes the manifests promise to fit
BUILTIN_GROUPS = ("v1", "apps/v1", "policy/v1", "networking.k8s.io/v1")
EXPECTED_KINDS = {
    "ServiceAccount", "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget",
    "NetworkPolicy", "PodMonitor", "ScaledObject", "TriggerAuthentication",
}
GRACE_MARGIN_S = 5  # on top of drain_timeout_s + the worker's own 5 s to exit
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> Rendered:
    return Rendered.build(request.param)


def test_there_is_a_cpu_and_a_gpu_overlay():
    assert {"cpu", "gpu"} <= set(OVERLAYS)


def test_every_object_an_operator_needs_is_rendered(rendered):
    assert {obj["kind"] for obj in rendered.objects} == EXPECTED_KINDS
    assert all(obj["metadata"].get("namespace") == "eurovoc" for obj in rendered.objects)


def test_builtin_objects_fit_the_kubernetes_schema(rendered):
    builtin = [obj for obj in rendered.objects if obj["apiVersion"] in BUILTIN_GROUPS]
    assert len(builtin) == 6
    for obj in builtin:
        # strict: an unknown (misspelt) field is an error too
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_a_misspelt_field_is_caught_by_the_schema_check(rendered):
    broken = {**rendered.workload, "spec": {**rendered.workload["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_workload_is_a_statefulset_whose_pod_names_are_the_static_member_ids(rendered):
    env = rendered.env()
    for name in ("EUROVOC_GROUP_INSTANCE_ID", "EUROVOC_WORKER_ID"):
        assert env[name] == {"valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, name
    spec = rendered.workload["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == rendered.one("Service")["metadata"]["name"]
    assert rendered.one("Service")["spec"]["clusterIP"] == "None"


def test_every_eurovoc_variable_is_a_real_setting(rendered):
    unknown = {name for name in rendered.env() if name.startswith("EUROVOC_")} - setting_env_names()
    assert not unknown, f"{rendered.overlay}: not worker settings: {sorted(unknown)}"


def test_the_settings_they_set_are_valid_worker_settings(rendered, tmp_path, monkeypatch):
    for name in [name for name in os.environ if name.startswith("EUROVOC_")]:
        monkeypatch.delenv(name)
    for name, spec in rendered.env().items():
        if not name.startswith("EUROVOC_"):
            continue
        value = spec.get("value")
        if value is None:  # from the pod (fieldRef) or a Secret (secretKeyRef)
            value = "eurovoc-worker-0" if "fieldRef" in spec["valueFrom"] else "from-a-secret"
        elif rendered.secret_file(value):  # a file in a mounted Secret: make a stand-in
            stand_in = tmp_path / value.lstrip("/")
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("stand-in\n")
            value = str(stand_in)
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.consumer.group_instance_id == "eurovoc-worker-0"


def test_probes_hit_the_worker_endpoints_on_its_metrics_port(rendered):
    container = rendered.container
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    metrics_port = int(rendered.env_values().get("EUROVOC_METRICS_PORT", setting_default("metrics_port")))
    assert ports["metrics"] == metrics_port == setting_default("metrics_port")
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {probe["port"] for probe in probes.values()} == {"metrics"}

    state = HealthState(stall_after_s=60)
    server = HealthServer("127.0.0.1", 0, WorkerMetrics().registry, state).start()
    try:
        def status(path: str) -> int:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        def statuses() -> tuple[int, int, int]:
            return tuple(status(probes[kind]["path"])
                         for kind in ("startupProbe", "livenessProbe", "readinessProbe"))

        assert statuses() == (200, 200, 503)  # loading the model: alive, not ready
        state.model_loaded = True
        state.tick()
        assert statuses() == (200, 200, 503)  # joining the group: not ready yet
        state.member = True
        assert statuses() == (200, 200, 200)  # holds partitions
        state.failure = "stalled: work to do and no progress"  # the watchdog's verdict
        assert statuses()[:2] == (503, 503)
        state.failure, state.stopping = None, True  # SIGTERM: draining
        assert statuses() == (200, 200, 503)
    finally:
        server.stop()


def test_probe_timings_fit_the_workers_own_stall_and_exit_timings(rendered):
    """/healthz turns 503 only once the worker's watchdog found it stalled (after
    stall_timeout_s), and the watchdog then exits 1 within EXIT_GRACE_S with a diagnosis: the
    liveness probe is a backstop that must not kill the worker before it explains itself."""
    container = rendered.container
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > EXIT_GRACE_S
    assert liveness["timeoutSeconds"] >= 2  # the HTTP thread shares the GIL with tokenizing
    stall_s = float(rendered.env_values().get("EUROVOC_STALL_TIMEOUT_S",
                                              setting_default("stall_timeout_s")))
    assert stall_s >= 60  # above the slowest model batch of either overlay, with a margin


def test_grace_period_covers_the_drain_timeout_with_a_margin(rendered):
    drain_s = float(rendered.env_values().get("EUROVOC_DRAIN_TIMEOUT_S", setting_default("drain_timeout_s")))
    grace_s = rendered.pod["spec"]["terminationGracePeriodSeconds"]
    assert grace_s >= drain_s + EXIT_GRACE_S + GRACE_MARGIN_S


def test_keda_scales_the_workers_group_on_its_input_lag_within_the_partitions(rendered):
    scaled = rendered.one("ScaledObject")
    spec = scaled["spec"]
    workload = rendered.workload
    assert spec["scaleTargetRef"] == {
        "apiVersion": workload["apiVersion"], "kind": workload["kind"],
        "name": workload["metadata"]["name"],
    }
    [trigger] = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    env = rendered.env_values()
    assert meta["bootstrapServers"] == env["EUROVOC_BOOTSTRAP_SERVERS"]
    assert meta["consumerGroup"] == env["EUROVOC_GROUP_ID"]
    assert meta["topic"] == env["EUROVOC_INPUT_TOPIC"]
    assert 0 <= int(meta["activationLagThreshold"]) < int(meta["lagThreshold"])
    assert meta["allowIdleConsumers"] == "false"
    partitions = int(scaled["metadata"]["annotations"]["eurovoc-stream/input-partitions"])
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    assert 1 <= workload["spec"]["replicas"] <= spec["maxReplicaCount"]


def test_selectors_pick_the_worker_pods(rendered):
    labels = rendered.pod["metadata"]["labels"]
    assert matches(rendered.workload["spec"]["selector"], labels)
    for kind in ("PodDisruptionBudget", "PodMonitor"):
        assert matches(rendered.one(kind)["spec"]["selector"], labels), kind
    assert matches(rendered.one("NetworkPolicy")["spec"]["podSelector"], labels)
    service_selector = rendered.one("Service")["spec"]["selector"]
    assert all(labels.get(key) == value for key, value in service_selector.items())
    assert rendered.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_prometheus_scrapes_the_metrics_port_and_may_reach_it(rendered):
    [endpoint] = rendered.one("PodMonitor")["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    policy = rendered.one("NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    [ingress] = policy["ingress"]
    assert [port["port"] for port in ingress["ports"]] == ["metrics"]
    egress_ports = {port["port"] for rule in policy["egress"] for port in rule["ports"]}
    broker_ports = {int(server.rsplit(":", 1)[1])
                    for server in rendered.env_values()["EUROVOC_BOOTSTRAP_SERVERS"].split(",")}
    assert broker_ports <= egress_ports and 53 in egress_ports


def test_kafka_credentials_come_from_a_secret_never_from_the_manifests(rendered):
    env = rendered.env()
    values = rendered.env_values()
    assert values["EUROVOC_SECURITY_PROTOCOL"] == "SASL_SSL"
    for name, spec in env.items():
        if "PASSWORD" in name and not name.endswith("_FILE"):
            assert "value" not in spec, f"{name} is written into the manifest"
    password = rendered.secret_file(values["EUROVOC_SASL_PASSWORD_FILE"])
    ca = rendered.secret_file(values["EUROVOC_SSL_CAFILE"])
    assert password and ca and password[0] == ca[0]
    secret = password[0]
    username = env["EUROVOC_SASL_USERNAME"]["valueFrom"]["secretKeyRef"]
    assert username["name"] == secret
    # KEDA reads the lag with the same credentials
    [trigger] = rendered.one("ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["sasl"] == KEDA_SASL[values["EUROVOC_SASL_MECHANISM"]]
    assert trigger["metadata"]["tls"] == "enable"
    auth = rendered.one("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    refs = {ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
    assert refs == {"username": (secret, username["key"]), "password": password, "ca": ca}


def test_pods_run_as_the_images_non_root_user_on_a_read_only_root(rendered):
    pod_security = rendered.pod["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] == 10001
    container_security = rendered.container["securityContext"]
    assert container_security["readOnlyRootFilesystem"] is True
    assert container_security["allowPrivilegeEscalation"] is False
    assert rendered.pod["spec"]["automountServiceAccountToken"] is False


def test_only_the_gpu_overlay_asks_for_a_gpu(rendered):
    resources = rendered.container["resources"]
    device = rendered.env_values()["EUROVOC_DEVICE"]
    gpus = resources.get("limits", {}).get("nvidia.com/gpu")
    if rendered.overlay == "gpu":
        assert device == "cuda" and gpus == 1
        assert any(t["key"] == "nvidia.com/gpu" for t in rendered.pod["spec"]["tolerations"])
    else:
        assert device == "cpu" and gpus is None
        assert int(rendered.env_values()["EUROVOC_TORCH_THREADS"]) == int(resources["requests"]["cpu"])
