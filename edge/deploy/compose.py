"""``compose.yaml``: the server, Prometheus scraping its metrics port, Grafana with the dashboard."""

from __future__ import annotations

from typing import Any

from edge.deploy.plan import HTTP_PORT, METRICS_PORT, DeployPlan

__all__ = ["compose", "PROMETHEUS_CONFIG", "GRAFANA_PROVISIONING", "GRAFANA_DASHBOARDS", "SERVER_SERVICE"]

PROMETHEUS_CONFIG = "prometheus/prometheus.yml"
GRAFANA_PROVISIONING = "grafana/provisioning"
GRAFANA_DASHBOARDS = "grafana/dashboards"
SERVER_SERVICE = "edgetrt"
_PROMETHEUS_IMAGE = "prom/prometheus:v2.54.1"
_GRAFANA_IMAGE = "grafana/grafana:11.2.2"
_JTOP_SOCKET = "/run/jtop.sock"


def compose(plan: DeployPlan) -> dict[str, Any]:
    """The Compose document (compose-spec) for ``plan``."""
    server: dict[str, Any] = {
        "build": {"context": "."},
        "image": plan.image,
        "ports": [f"{HTTP_PORT}:{HTTP_PORT}", f"{METRICS_PORT}:{METRICS_PORT}"],
        "read_only": True,
        "tmpfs": ["/tmp"],
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        "restart": "unless-stopped",
        "stop_grace_period": "40s",  # the server drains in-flight requests for up to 30 s
    }
    if plan.base.gpu == "jetson":
        server["runtime"] = "nvidia"
        # jtop's service socket: power and temperatures from the host's jetson-stats.
        server["volumes"] = [f"{_JTOP_SOCKET}:{_JTOP_SOCKET}"]
    elif plan.base.gpu == "cuda":
        server["deploy"] = {"resources": {"reservations": {"devices": [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]}}}
    return {
        "name": plan.slug,
        "services": {
            SERVER_SERVICE: server,
            "prometheus": {
                "image": _PROMETHEUS_IMAGE,
                "ports": ["9090:9090"],
                "volumes": [f"./{PROMETHEUS_CONFIG}:/etc/prometheus/prometheus.yml:ro"],
                "depends_on": {SERVER_SERVICE: {"condition": "service_healthy"}},
                "restart": "unless-stopped",
            },
            "grafana": {
                "image": _GRAFANA_IMAGE,
                "ports": ["3000:3000"],
                "environment": {"GF_AUTH_ANONYMOUS_ENABLED": "true", "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer"},
                "volumes": [
                    f"./{GRAFANA_PROVISIONING}:/etc/grafana/provisioning:ro",
                    f"./{GRAFANA_DASHBOARDS}:/var/lib/grafana/dashboards:ro",
                ],
                "depends_on": ["prometheus"],
                "restart": "unless-stopped",
            },
        },
    }
