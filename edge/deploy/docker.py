"""The multi-stage Dockerfile and ``.dockerignore`` of a deployment.

Build stage: a virtualenv with edgetrt, and (from an ONNX model) the engine built on the target
itself, since an engine is tuned to the device that builds it. Runtime stage: only the
virtualenv and the model repository, a non-root user, and a HEALTHCHECK on ``/v2/health/ready``.
The edgetrt package comes from ``EDGETRT_SPEC`` (PyPI by default); wheels put in ``wheels/``
are preferred, so an unreleased build can be shipped.
"""

from __future__ import annotations

import json
import shlex

from edge.version import __version__
from edge.deploy.plan import HTTP_PORT, METRICS_PORT, USER_ID, DeployPlan

__all__ = ["dockerfile", "dockerignore", "REPOSITORY_DIR", "WHEELS_DIR", "serve_command"]

REPOSITORY_DIR = "model_repository"
WHEELS_DIR = "wheels"
_VENV = "/opt/edgetrt"
_MODELS = "/models"
_APT = (
    "apt-get update && apt-get install -y --no-install-recommends {packages} && rm -rf /var/lib/apt/lists/*"
)
_READY_PROBE = (
    "import sys, urllib.request; "
    f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{HTTP_PORT}/v2/health/ready', timeout=3).status == 200 else 1)"
)


def serve_command(plan: DeployPlan) -> list[str]:
    """The server's command line inside the container (exec form)."""
    return [
        "edgetrt", "serve", "--model-repository", _MODELS, "--host", "0.0.0.0",
        "--port", str(HTTP_PORT), "--metrics-port", str(METRICS_PORT), "--telemetry",
    ]  # fmt: skip


def dockerfile(plan: DeployPlan) -> str:
    """The Dockerfile text, one instruction per line from the plan."""
    base = plan.base
    version_dir = f"{_MODELS}/{plan.name}/1"
    spec = f"edgetrt[{base.extras}]=={__version__}"
    lines = [
        "# syntax=docker/dockerfile:1",
        f"# Written by `edgetrt deploy docker` {__version__}: model '{plan.name}', base {base.name}, profile {plan.profile}.",
        f"ARG BUILD_IMAGE={base.build_image}",
        f"ARG RUNTIME_IMAGE={base.runtime_image}",
        "",
        "FROM ${BUILD_IMAGE} AS build",
        "SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]",
        f"ARG EDGETRT_SPEC={json.dumps(spec)}",
    ]
    if base.apt_python:
        lines += ["# hadolint ignore=DL3008", "RUN " + _APT.format(packages="python3 python3-venv python3-pip")]
    lines += [
        f"COPY {WHEELS_DIR}/ /wheels/",
        f"RUN python3 -m venv {_VENV} && {_VENV}/bin/pip install --no-cache-dir --find-links /wheels \"${{EDGETRT_SPEC}}\"",
        f"COPY {REPOSITORY_DIR}/ {_MODELS}/",
    ]
    if plan.builds_on_target:
        build = [f"{_VENV}/bin/edgetrt", "build", f"{version_dir}/model.onnx", "--profile", plan.profile, *plan.build_flags,
                 "-o", f"{version_dir}/model.engine"]  # fmt: skip
        lines.append(f"RUN {shlex.join(build)} && rm {version_dir}/model.onnx")
    else:  # a prebuilt engine: check it loads here before it ships
        lines.append(f"RUN {_VENV}/bin/edgetrt inspect {version_dir}/model.engine")
    lines += ["", "FROM ${RUNTIME_IMAGE} AS runtime"]
    if base.apt_python:
        lines += ["# hadolint ignore=DL3008", "RUN " + _APT.format(packages="python3")]
    lines += [
        f"RUN useradd --system --uid {USER_ID} --user-group --no-create-home --shell /usr/sbin/nologin edgetrt",
        f"COPY --from=build {_VENV} {_VENV}",
        f"COPY --from=build {_MODELS} {_MODELS}",
        # /tmp is the one writable place (a read-only root filesystem in compose and Kubernetes).
        f"ENV PATH={_VENV}/bin:$PATH NUMBA_CACHE_DIR=/tmp/numba-cache PYTHONDONTWRITEBYTECODE=1",
        f"USER {USER_ID}:{USER_ID}",
        f"EXPOSE {HTTP_PORT} {METRICS_PORT}",
        "HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 "
        f"CMD {json.dumps(['python3', '-c', _READY_PROBE])}",
        f"ENTRYPOINT {json.dumps(serve_command(plan))}",
        "",
    ]
    return "\n".join(lines)


def dockerignore() -> str:
    """Send only the model repository and local wheels to the Docker daemon."""
    return "\n".join(["# Written by `edgetrt deploy docker`: the build needs only these.", "*", f"!{REPOSITORY_DIR}/", f"!{WHEELS_DIR}/", ""])
