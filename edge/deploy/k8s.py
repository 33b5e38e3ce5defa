"""Kubernetes manifests: Deployment, Service, and an HPA on ``nv_inference_pending_request_count``.

The HPA reads a per-pod custom metric, so the cluster needs a metrics adapter that serves the
Prometheus series through ``custom.metrics.k8s.io`` (e.g. prometheus-adapter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge.deploy.plan import HTTP_PORT, METRICS_PORT, USER_ID, DeployPlan

__all__ = ["K8sOptions", "deployment", "service", "autoscaler", "QUEUE_METRIC"]

QUEUE_METRIC = "nv_inference_pending_request_count"



@dataclass(frozen=True)
class K8sOptions:
    """Cluster-side knobs: scaling range and target queue, resources, extra node labels."""

    min_replicas: int = 1
    max_replicas: int = 4
    pending_per_pod: int = 4
    cpu: str = "2"
    memory: str = "2Gi"
    node_selector: dict[str, str] = field(default_factory=dict)


def _labels(plan: DeployPlan) -> dict[str, str]:
    return {"app.kubernetes.io/name": "edgetrt", "app.kubernetes.io/instance": plan.slug}


def deployment(plan: DeployPlan, options: K8sOptions) -> dict[str, Any]:
    """apps/v1 Deployment of the server image with probes, limits and a read-only root filesystem."""
    limits: dict[str, Any] = {"cpu": options.cpu, "memory": options.memory}
    if plan.base.gpu == "cuda":
        limits["nvidia.com/gpu"] = 1
    probe_get = {"port": "http"}
    container = {
        "name": "edgetrt",
        "image": plan.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": HTTP_PORT}, {"name": "metrics", "containerPort": METRICS_PORT}],
        # Engine load and the first compiled-kernel run can take a while: the startup probe waits.
        "startupProbe": {"httpGet": {"path": "/v2/health/ready", **probe_get}, "periodSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", **probe_get}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", **probe_get}, "periodSeconds": 10, "failureThreshold": 3},
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": limits},
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": 40,  # the server drains in-flight requests for up to 30 s
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    }
    selector = dict(options.node_selector)
    if plan.base.gpu == "jetson":
        pod["runtimeClassName"] = "nvidia"
        selector = {"kubernetes.io/arch": "arm64", **selector}
    if selector:
        pod["nodeSelector"] = selector
    labels = _labels(plan)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": plan.slug, "labels": labels},
        "spec": {
            "replicas": options.min_replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT), "prometheus.io/path": "/metrics"},
                },
                "spec": pod,
            },
        },
    }


def service(plan: DeployPlan) -> dict[str, Any]:
    """v1 Service exposing the HTTP and metrics ports."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": plan.slug, "labels": _labels(plan)},
        "spec": {
            "selector": _labels(plan),
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }


def autoscaler(plan: DeployPlan, options: K8sOptions) -> dict[str, Any]:
    """autoscaling/v2 HPA keeping the mean queue per pod at ``pending_per_pod`` requests."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": plan.slug, "labels": _labels(plan)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": plan.slug},
            "minReplicas": options.min_replicas,
            "maxReplicas": options.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": QUEUE_METRIC},
                        "target": {"type": "AverageValue", "averageValue": str(options.pending_per_pod)},
                    },
                }
            ],
        },
    }
