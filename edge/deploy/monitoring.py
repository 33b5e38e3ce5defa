"""Prometheus scrape config and Grafana provisioning (datasource, dashboard provider, dashboard).

The dashboard's queries use only metric families ``edgetrt serve --telemetry`` exports (the
tests scrape a live server to check): Triton's ``nv_inference_*`` counters and pending gauge,
edgetrt's latency and batch histograms, and the telemetry gauges (power and temperature come
from tegrastats or jtop on a Jetson, NVML on a desktop GPU, psutil elsewhere).
"""

from __future__ import annotations

from typing import Any

from edge.deploy.plan import METRICS_PORT

__all__ = ["prometheus_config", "grafana_datasource", "grafana_dashboard_provider", "dashboard", "PANELS", "DATASOURCE_UID"]

DATASOURCE_UID = "edgetrt-prometheus"
SCRAPE_JOB = "edgetrt"
_BY_MODEL = "sum by (model)"
_WINDOW = "[1m]"


def _quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, sum by (le, model) (rate({histogram}_bucket{_WINDOW})))"


# (title, unit, [(query, legend)])
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("Requests per second", "reqps", [(f"{_BY_MODEL} (rate(nv_inference_request_success{_WINDOW}))", "{{model}}")]),
    (
        "Request latency p50 / p99",
        "s",
        [
            (_quantile(0.5, "edgetrt_inference_request_duration_seconds"), "p50 {{model}}"),
            (_quantile(0.99, "edgetrt_inference_request_duration_seconds"), "p99 {{model}}"),
        ],
    ),
    (
        "Queue time",
        "s",
        [
            (_quantile(0.99, "edgetrt_inference_queue_duration_seconds"), "p99 {{model}}"),
            (
                f"{_BY_MODEL} (rate(nv_inference_queue_duration_us{_WINDOW})) / 1e6 / "
                f"{_BY_MODEL} (rate(nv_inference_exec_count{_WINDOW}))",
                "mean per execution {{model}}",
            ),
        ],
    ),
    (
        "Batch size (inferences per execution)",
        "short",
        [(f"{_BY_MODEL} (rate(nv_inference_count{_WINDOW})) / {_BY_MODEL} (rate(nv_inference_exec_count{_WINDOW}))", "{{model}}")],
    ),
    ("Pending requests", "short", [(f"{_BY_MODEL} (nv_inference_pending_request_count)", "{{model}}")]),
    ("Errors per second", "reqps", [(f"sum by (model, reason) (rate(nv_inference_request_failure{_WINDOW}))", "{{model}} {{reason}}")]),
    (
        "Power",
        "watt",
        [("edgetrt_module_power_watts", "module"), ("edgetrt_power_watts", "{{rail}}")],
    ),
    ("Temperature", "celsius", [("edgetrt_temperature_celsius", "{{sensor}}")]),
    ("GPU / DLA / CPU load", "percentunit", [("edgetrt_utilization_ratio", "{{unit}}")]),
    ("Clocks", "MHz", [("edgetrt_clock_mhz", "{{unit}}")]),
]


def prometheus_config(target: str) -> dict[str, Any]:
    """prometheus.yml scraping the server's metrics port every 5 s."""
    return {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "scrape_configs": [{"job_name": SCRAPE_JOB, "metrics_path": "/metrics", "static_configs": [{"targets": [f"{target}:{METRICS_PORT}"]}]}],
    }


def grafana_datasource(prometheus_url: str) -> dict[str, Any]:
    """Grafana's datasource provisioning file for the compose Prometheus."""
    return {
        "apiVersion": 1,
        "datasources": [
            {"name": "Prometheus", "type": "prometheus", "uid": DATASOURCE_UID, "access": "proxy", "url": prometheus_url, "isDefault": True}
        ],
    }


def grafana_dashboard_provider(path: str) -> dict[str, Any]:
    """Grafana's dashboard provisioning file: load every JSON dashboard in ``path``."""
    return {
        "apiVersion": 1,
        "providers": [{"name": "edgetrt", "folder": "edgetrt", "type": "file", "disableDeletion": True, "options": {"path": path}}],
    }


def dashboard(title: str) -> dict[str, Any]:
    """The Grafana dashboard: one time-series panel per entry of :data:`PANELS`, two per row."""
    datasource = {"type": "prometheus", "uid": DATASOURCE_UID}
    panels = []
    for index, (panel_title, unit, queries) in enumerate(PANELS):
        panels.append(
            {
                "id": index + 1,
                "type": "timeseries",
                "title": panel_title,
                "datasource": datasource,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {"refId": chr(ord("A") + n), "datasource": datasource, "expr": expr, "legendFormat": legend}
                    for n, (expr, legend) in enumerate(queries)
                ],
            }
        )
    return {
        "uid": "edgetrt-serving",
        "title": title,
        "tags": ["edgetrt", "triton"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5s",
        "time": {"from": "now-15m", "to": "now"},
        "panels": panels,
    }
