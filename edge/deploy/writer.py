"""Render a deployment's files from their data structures and write them atomically into a folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import text_format

from edge.deploy import compose as compose_files
from edge.deploy import docker, k8s, monitoring
from edge.deploy.plan import DeployPlan
from edge.errors import EdgeError
from edge.fileio import atomic_path, write_atomic

__all__ = ["docker_files", "k8s_files", "write_files", "model_config_text"]


def model_config_text(plan: DeployPlan) -> str:
    """The model's ``config.pbtxt``, serialized by protobuf from a ModelConfig message."""
    from edge.serve.modelconfig import ModelConfig

    config = ModelConfig(name=plan.name)
    if plan.batchable and plan.max_batch > 1:
        config.max_batch_size = plan.max_batch
        config.dynamic_batching.max_queue_delay_microseconds = 1000
    config.instance_group.add(count=1)
    header = "# Written by `edgetrt deploy`; see Triton's model configuration docs for the fields.\n"
    return header + text_format.MessageToString(config)


def _yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def docker_files(plan: DeployPlan) -> dict[str, str | Path]:
    """Relative path -> text (or a file to copy) of ``deploy docker``'s output."""
    model_dir = f"{docker.REPOSITORY_DIR}/{plan.name}"
    prometheus_url = "http://prometheus:9090"
    return {
        "Dockerfile": docker.dockerfile(plan),
        ".dockerignore": docker.dockerignore(),
        f"{docker.WHEELS_DIR}/README.md": "Put edgetrt wheels here (`pip wheel . -w wheels/`); the image build prefers them to PyPI.\n",
        f"{model_dir}/config.pbtxt": model_config_text(plan),
        f"{model_dir}/1/{plan.model_file}": plan.source,
        "compose.yaml": _yaml(compose_files.compose(plan)),
        compose_files.PROMETHEUS_CONFIG: _yaml(monitoring.prometheus_config(compose_files.SERVER_SERVICE)),
        f"{compose_files.GRAFANA_PROVISIONING}/datasources/prometheus.yaml": _yaml(monitoring.grafana_datasource(prometheus_url)),
        f"{compose_files.GRAFANA_PROVISIONING}/dashboards/edgetrt.yaml": _yaml(
            monitoring.grafana_dashboard_provider("/var/lib/grafana/dashboards")
        ),
        f"{compose_files.GRAFANA_DASHBOARDS}/edgetrt.json": json.dumps(monitoring.dashboard(f"edgetrt: {plan.name}"), indent=2) + "\n",
    }


def k8s_files(plan: DeployPlan, options: k8s.K8sOptions) -> dict[str, str | Path]:
    """Relative path -> text of ``deploy k8s``'s output."""
    return {
        "deployment.yaml": _yaml(k8s.deployment(plan, options)),
        "service.yaml": _yaml(k8s.service(plan)),
        "hpa.yaml": _yaml(k8s.autoscaler(plan, options)),
    }


def write_files(out: Path, files: dict[str, str | Path]) -> list[Path]:
    """Write every file under ``out`` (each atomically); a Path value is copied. Returns the paths written."""
    if out.exists() and not out.is_dir():
        raise EdgeError(f"output '{out}' exists and is not a folder")
    written = []
    try:
        for relative, content in files.items():
            path = out / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                with atomic_path(path) as temp:
                    shutil.copyfile(content, temp)
            else:
                write_atomic(path, content)
            written.append(path)
    except OSError as exc:
        raise EdgeError(f"cannot write into '{out}': {exc.strerror or exc}") from None
    return written
