"""What a deployment ships: the model, its name and source, the base images and the build settings."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import onnx

import edge
from edge.errors import EdgeError

__all__ = ["Base", "BASES", "DeployPlan", "make_plan", "HTTP_PORT", "METRICS_PORT", "USER_ID"]

HTTP_PORT = 8000
METRICS_PORT = 8002  # Triton's metrics port
USER_ID = 10001


@dataclass(frozen=True)
class Base:
    """Base images of one target and how the container reaches its accelerator."""

    name: str
    build_image: str
    runtime_image: str
    apt_python: bool  # the image has no Python: install python3 (+ venv for the build stage)
    extras: str  # edgetrt extras the server needs there
    default_profile: str | None  # None: the user must name the Jetson module
    gpu: str  # "jetson" (nvidia runtime class), "cuda" (GPU resource), "none"


BASES = {
    "l4t": Base(
        "l4t", "nvcr.io/nvidia/l4t-jetpack:r36.4.0", "nvcr.io/nvidia/l4t-jetpack:r36.4.0", True,
        "serve,telemetry,jetson,fast", None, "jetson",
    ),
    "cuda": Base(
        "cuda", "nvidia/cuda:12.6.3-devel-ubuntu22.04", "nvidia/cuda:12.6.3-runtime-ubuntu22.04", True,
        "serve,telemetry,cuda,fast", "desktop-cuda", "cuda",
    ),
    "cpu": Base("cpu", "python:3.12-slim", "python:3.12-slim", False, "serve,telemetry,fast", "cpu", "none"),
}


@dataclass(frozen=True)
class DeployPlan:
    """One model deployed on one base; ``source`` is an ONNX model (built on the target) or an engine."""

    name: str
    source: Path
    base: Base
    profile: str
    build_flags: tuple[str, ...]
    max_batch: int
    batchable: bool
    image: str

    @property
    def slug(self) -> str:
        """The model name as a DNS label, for compose project and Kubernetes resource names."""
        return "edgetrt-" + self.name.lower().replace("_", "-").replace(".", "-")

    @property
    def builds_on_target(self) -> bool:
        return self.source.suffix.lower() == ".onnx"

    @property
    def model_file(self) -> str:
        """The file name the source has inside the model repository's version folder."""
        return "model.onnx" if self.builds_on_target else "model.engine"


def make_plan(
    source: Path,
    base_name: str,
    name: str | None,
    profile: str | None,
    build_flags: tuple[str, ...],
    max_batch: int,
    image: str | None,
) -> DeployPlan:
    """Check the inputs and decide what to deploy.

    Raises:
        EdgeError: unknown base, missing file, a Jetson base without a profile, a bad name.
    """
    if base_name not in BASES:
        raise EdgeError(f"unknown base '{base_name}'; choose one of {', '.join(BASES)}")
    base = BASES[base_name]
    if not source.is_file():
        raise EdgeError(f"model file '{source}' does not exist")
    if source.suffix.lower() not in (".onnx", ".engine"):
        raise EdgeError(f"'{source}' is neither an ONNX model (.onnx) nor an engine (.engine)")
    from edge.serve.model import MODEL_NAME_PATTERN, batchable

    name = name or source.stem
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise EdgeError(f"model name '{name}' may hold only letters, digits, '_', '.', '-'")
    if max_batch < 1:
        raise EdgeError(f"--max-batch must be >= 1, got {max_batch}")
    profile = profile or base.default_profile
    if source.suffix.lower() == ".engine":
        engine = edge.load(source, check_machine=False)  # deployed elsewhere: the target runs the check
        if profile is not None and profile != engine.profile:
            raise EdgeError(f"engine '{source}' was built for profile '{engine.profile}', not '{profile}'; pass the ONNX to rebuild")
        profile, can_batch = engine.profile, batchable(engine)
    else:
        can_batch = _onnx_batchable(source)
    if profile is None:
        raise EdgeError(f"--base {base_name} needs --profile naming the Jetson module (see `edgetrt profiles list`)")
    plan = DeployPlan(name, source, base, profile, build_flags, max_batch, can_batch, image or "")
    return plan if image else replace(plan, image=f"{plan.slug}:latest")


def _onnx_batchable(path: Path) -> bool:
    """True when every graph input and output has a symbolic leading dim (the same one on the inputs)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends for a file that is not a model
        raise EdgeError(f"'{path}' is not a readable ONNX model: {exc}") from None
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]

    def leading(value: onnx.ValueInfoProto) -> str:
        dims = value.type.tensor_type.shape.dim
        return dims[0].dim_param if dims else ""

    symbols = {leading(v) for v in inputs}
    return len(symbols) == 1 and "" not in symbols and all(leading(v) for v in model.graph.output)
