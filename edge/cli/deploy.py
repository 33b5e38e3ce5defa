"""``edgetrt deploy docker|k8s``: container and cluster files for serving a model."""

from __future__ import annotations

from pathlib import Path

import typer

from edge.cli.app import app, console
from edge.errors import EdgeError

__all__ = ["deploy_app"]

deploy_app = typer.Typer(
    name="deploy",
    help="Write Docker/Compose or Kubernetes files that serve a model.\n\n"
    "Examples:\n\n    edgetrt deploy docker model.onnx -o deploy/ --base cpu\n\n"
    "    edgetrt deploy k8s model.onnx -o k8s/ --base cuda --image registry.local/model:1",
    no_args_is_help=True,
)
app.add_typer(deploy_app)

_MODEL = typer.Argument(..., help="ONNX model (built into an engine on the target) or engine file.", show_default=False)
_OUT = typer.Option(..., "--output", "-o", help="Folder to write the files into.", show_default=False)
_BASE = typer.Option("cpu", "--base", help="Target: l4t (Jetson, JetPack 6), cuda (desktop/server GPU) or cpu.")
_NAME = typer.Option(None, "--name", help="Model name in the server (default: the file's stem).", show_default=False)
_PROFILE = typer.Option(
    None, "--profile", help="Device profile the engine is built for (required for l4t; cuda: desktop-cuda, cpu: cpu).", show_default=False
)
_MAX_BATCH = typer.Option(8, "--max-batch", help="Dynamic batching limit written to config.pbtxt (models with a dynamic batch dim).")
_IMAGE = typer.Option(None, "--image", help="Image name (default: edgetrt-NAME:latest).", show_default=False)


def _plan(model: Path, base: str, name: str | None, profile: str | None, fp16: bool, dla: int | None, max_batch: int, image: str | None):
    from edge.deploy.plan import make_plan

    flags = (("--fp16",) if fp16 else ()) + (("--dla", str(dla), "--gpu-fallback") if dla is not None else ())
    return make_plan(model, base, name, profile, flags, max_batch, image)


def _report(written: list[Path], out: Path) -> None:
    for path in written:
        console.print(f"wrote {path.relative_to(out)}", highlight=False)


@deploy_app.command("docker")
def docker_command(
    model: Path = _MODEL,
    output: Path = _OUT,
    base: str = _BASE,
    name: str = _NAME,
    profile: str = _PROFILE,
    fp16: bool = typer.Option(False, "--fp16", help="Build the engine with FP16 layers allowed."),
    dla: int = typer.Option(None, "--dla", help="Build with eligible layers on this DLA core (GPU fallback on).", show_default=False),
    max_batch: int = _MAX_BATCH,
    image: str = _IMAGE,
) -> None:
    """Write a multi-stage Dockerfile, .dockerignore, model repository and compose.yaml with Prometheus + Grafana.

    Examples:

        edgetrt deploy docker yolo.onnx -o deploy/ --base l4t --profile orin-nx-16gb --fp16

        edgetrt deploy docker resnet50.engine -o deploy/ --base cpu
    """
    from edge.deploy.writer import docker_files, write_files

    plan = _plan(model, base, name, profile, fp16, dla, max_batch, image)
    _report(write_files(output, docker_files(plan)), output)
    console.print(f"next: cd {output} && docker compose up --build  (server :8000, metrics :8002, Grafana :3000)", highlight=False)


@deploy_app.command("k8s")
def k8s_command(
    model: Path = _MODEL,
    output: Path = _OUT,
    base: str = _BASE,
    name: str = _NAME,
    profile: str = _PROFILE,
    image: str = _IMAGE,
    min_replicas: int = typer.Option(1, "--min-replicas", help="Fewest pods the autoscaler keeps."),
    max_replicas: int = typer.Option(4, "--max-replicas", help="Most pods the autoscaler starts."),
    pending_per_pod: int = typer.Option(4, "--pending-per-pod", help="Target mean of nv_inference_pending_request_count per pod."),
    cpu: str = typer.Option("2", "--cpu", help="CPU limit per pod."),
    memory: str = typer.Option("2Gi", "--memory", help="Memory limit per pod."),
    node_selector: list[str] = typer.Option(None, "--node-selector", help="Extra node label KEY=VALUE (repeatable).", show_default=False),
) -> None:
    """Write a Deployment, Service and HorizontalPodAutoscaler (on the pending-request gauge) for the image.

    Build and push the image from `edgetrt deploy docker` first; the autoscaler needs a custom
    metrics adapter (e.g. prometheus-adapter) serving nv_inference_pending_request_count.

    Examples:

        edgetrt deploy k8s yolo.onnx -o k8s/ --base l4t --profile orin-nx-16gb --image registry.local/yolo:1
    """
    from edge.deploy.k8s import K8sOptions
    from edge.deploy.writer import k8s_files, write_files

    if not 1 <= min_replicas <= max_replicas or pending_per_pod < 1:
        raise EdgeError("need 1 <= --min-replicas <= --max-replicas and --pending-per-pod >= 1")
    selector = {}
    for item in node_selector or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EdgeError(f"--node-selector '{item}' is not KEY=VALUE")
        selector[key] = value
    plan = _plan(model, base, name, profile, False, None, 8, image)
    options = K8sOptions(min_replicas, max_replicas, pending_per_pod, cpu, memory, selector)
    _report(write_files(output, k8s_files(plan, options)), output)
    console.print(f"next: kubectl apply -f {output}", highlight=False)
