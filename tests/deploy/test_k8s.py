"""The Kubernetes manifests: valid against the Kubernetes API schemas, and wired together."""

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
VERSION = "1.30.0"  # gRPC probes are GA since 1.27


def documents() -> list[dict]:
    docs = []
    for name in ("storage.yaml", "trainer.yaml", "server.yaml"):
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def find(kind: str, name: str) -> dict:
    (found,) = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid_for_the_kubernetes_api(doc):
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest():
    broken = find("Deployment", "steadyrank-server")
    broken = {**broken, "spec": {**broken["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


def test_server_probes_service_autoscaler_and_scrape_annotations():
    deployment = find("Deployment", "steadyrank-server")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["grpc"]["port"] == ports["grpc"] == 8500
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert int(pod["metadata"]["annotations"]["prometheus.io/port"]) == ports["metrics"]
    service = find("Service", "steadyrank-server")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert all(service["spec"]["selector"][k] == v
               for k, v in pod["metadata"]["labels"].items() if k in service["spec"]["selector"])
    hpa = find("HorizontalPodAutoscaler", "steadyrank-server")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "cpu" in container["resources"]["requests"]  # HPA on CPU needs a request


def test_trainer_and_server_share_the_models_volume():
    claim = find("PersistentVolumeClaim", "steadyrank-models")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # many server pods read it
    job = find("Job", "steadyrank-trainer")["spec"]["template"]["spec"]
    server = find("Deployment", "steadyrank-server")["spec"]["template"]["spec"]
    claims = [{v["name"]: v["persistentVolumeClaim"]["claimName"] for v in s["volumes"]}
              for s in (job, server)]
    assert claims[0]["models"] == claims[1]["models"] == "steadyrank-models"
    mounts = {m["name"]: m for m in server["containers"][0]["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True
    args = job["containers"][0]["args"]
    assert args[0] == "trainer" and "--models=/models" in args
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == ["server.yaml", "storage.yaml",
                                                  "trainer.yaml"]
