"""`edgetrt deploy`: generated files checked by kept validators and against a live server's /metrics.

compose.yaml against the compose-spec JSON schema (vendored by check-jsonschema), Kubernetes
manifests against the Kubernetes schemas (kubernetes-validate, strict), the Dockerfile with
hadolint, and the Grafana dashboard's PromQL (parsed by promql-parser) against the metric names
a live `serve --telemetry` exports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import jsonschema
import kubernetes_validate
import numpy as np
import onnx
import promql_parser
import pytest
import tritonclient.http as triton
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

import edge
from edge.cli import main
from edge.serve.app import create_app
from edge.serve.batcher import BatchingConfig
from edge.serve.model import ServedModel
from edge.serve.telemetry import TelemetryCollector
from tests.serve.conftest import _config, mlp_model, start_uvicorn
from tests.serve.test_telemetry import LineSampler, agx_orin_line

_HADOLINT = Path(sys.executable).with_name("hadolint")
_K8S_VERSION = "1.31.0"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("deploy-src")
    onnx_path, engine_path = folder / "detector.onnx", folder / "fixed.engine"
    onnx.save(mlp_model(), onnx_path)
    edge.build(mlp_model(batch=1)).save(engine_path)
    return {"onnx": onnx_path, "engine": engine_path}


def _deploy(tmp_path: Path, *argv: str) -> Path:
    out = tmp_path / "out"
    assert main(["deploy", *argv, "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    return jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize(
    ("source", "argv"),
    [
        ("onnx", ["--base", "l4t", "--profile", "orin-nx-16gb", "--fp16"]),
        ("onnx", ["--base", "cuda"]),
        ("engine", ["--base", "cpu"]),
    ],
)
def test_docker_files_pass_hadolint_and_the_compose_schema(sources, tmp_path, compose_validator, source, argv):
    out = _deploy(tmp_path, "docker", str(sources[source]), *argv)
    lint = subprocess.run([str(_HADOLINT), "--failure-threshold", "style", str(out / "Dockerfile")], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    text = (out / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert stages == ["FROM ${BUILD_IMAGE} AS build", "FROM ${RUNTIME_IMAGE} AS runtime"]
    runtime = text.split("AS runtime", 1)[1]
    assert "USER 10001:10001" in runtime and "/v2/health/ready" in runtime.split("HEALTHCHECK", 1)[1]
    assert "model.onnx" not in runtime  # only what serving needs
    if source == "onnx":
        assert "edgetrt build /models/" in text.split("AS runtime")[0]

    compose = yaml.safe_load((out / "compose.yaml").read_text())
    errors = [e.message for e in compose_validator.iter_errors(compose)]
    assert errors == []
    assert not compose_validator.is_valid({**compose, "services": {"edgetrt": {"ports": "8000"}}})  # the schema bites
    server = compose["services"]["edgetrt"]
    assert server["read_only"] is True
    if "l4t" in argv:
        assert server["runtime"] == "nvidia"
    if "cuda" in argv:
        assert server["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    prometheus = yaml.safe_load((out / "prometheus/prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["edgetrt:8002"]
    assert (out / ".dockerignore").read_text().splitlines()[1:] == ["*", "!model_repository/", "!wheels/"]
    name = sources[source].stem
    assert (out / "model_repository" / name / "1" / ("model.onnx" if source == "onnx" else "model.engine")).is_file()


def test_model_config_is_real_protobuf_text_the_server_reads(sources, tmp_path):
    from edge.serve.modelconfig import parse_config_text

    out = _deploy(tmp_path, "docker", str(sources["engine"]), "--base", "cpu")
    fixed = parse_config_text(out / "model_repository/fixed/config.pbtxt")
    assert fixed.name == "fixed" and fixed.max_batch_size == 0  # batch dim fixed to 1: not batched
    out2 = _deploy(tmp_path / "b", "docker", str(sources["onnx"]), "--max-batch", "16")
    batched = parse_config_text(out2 / "model_repository/detector/config.pbtxt")
    assert batched.max_batch_size == 16 and batched.HasField("dynamic_batching")


@pytest.mark.parametrize("base", ["l4t", "cuda", "cpu"])
def test_k8s_manifests_validate_against_the_kubernetes_schemas(sources, tmp_path, base):
    argv = ["--profile", "orin-nx-16gb"] if base == "l4t" else []
    out = _deploy(tmp_path, "k8s", str(sources["onnx"]), "--base", base, *argv, "--node-selector", "pool=inference")
    docs = {name: yaml.safe_load((out / f"{name}.yaml").read_text()) for name in ("deployment", "service", "hpa")}
    for doc in docs.values():
        kubernetes_validate.validate(doc, _K8S_VERSION, strict=True)
    broken = json.loads(json.dumps(docs["deployment"]))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, _K8S_VERSION, strict=True)

    pod = docs["deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert ("nvidia.com/gpu" in container["resources"]["limits"]) == (base == "cuda")
    assert (pod.get("runtimeClassName") == "nvidia") == (base == "l4t")
    assert pod["nodeSelector"]["pool"] == "inference"
    assert [p["port"] for p in docs["service"]["spec"]["ports"]] == [8000, 8002]
    assert docs["hpa"]["spec"]["metrics"][0]["pods"]["metric"]["name"] == "nv_inference_pending_request_count"


def test_deploy_refuses_bad_input_in_one_line(sources, tmp_path, capsys):
    assert main(["deploy", "docker", str(sources["onnx"]), "-o", str(tmp_path / "o"), "--base", "l4t"]) == 1
    assert "--base l4t needs --profile" in capsys.readouterr().err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert main(["deploy", "k8s", str(junk), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "is not a readable ONNX model" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.fixture
def live_metrics(sources) -> Iterator[set[str]]:
    """Sample names on a live server's /metrics, with telemetry replayed from a tegrastats line."""

    sampler = LineSampler([agx_orin_line()]).start()
    sampler.fed.wait()
    model = ServedModel.from_engine(edge.build(mlp_model()), "detector", BatchingConfig(8, 0.001, 1, 16))
    config = _config()
    servers: list = []
    port = start_uvicorn(create_app([model], config, extra_metrics=[TelemetryCollector(sampler)]), config, servers)
    try:
        # the first request compiles the CPU kernels it runs on a fresh machine: minutes, not the client's default 60 s
        with triton.InferenceServerClient(f"127.0.0.1:{port}", connection_timeout=300, network_timeout=300) as client:  # one success, one failure
            tensor = triton.InferInput("x", [1, 16], "FP32")
            tensor.set_data_from_numpy(np.zeros((1, 16), np.float32))
            client.infer("detector", [tensor])
            with pytest.raises(InferenceServerException):
                client.infer("detector", [triton.InferInput("z", [1], "FP32")])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as reply:
            text = reply.read().decode()
        # prometheus-client's parser reports counter samples as NAME_total; Triton's counters
        # (and so Prometheus' series) carry the family name itself.
        yield {
            name
            for family in text_string_to_metric_families(text)
            for name in ([family.name] if family.type == "counter" else [s.name for s in family.samples])
        }
    finally:
        sampler.stop()
        for server, thread in servers:
            server.should_exit = True
            thread.join()


def test_dashboard_queries_name_only_metrics_a_live_server_exports(sources, tmp_path, live_metrics):
    out = _deploy(tmp_path, "docker", str(sources["onnx"]), "--base", "cpu")
    dashboard = json.loads((out / "grafana/dashboards/edgetrt.json").read_text())
    datasource = yaml.safe_load((out / "grafana/provisioning/datasources/prometheus.yaml").read_text())["datasources"][0]
    provider = yaml.safe_load((out / "grafana/provisioning/dashboards/edgetrt.yaml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    titles = [panel["title"] for panel in dashboard["panels"]]
    for wanted in ("Requests per second", "Request latency p50 / p99", "Queue time", "Batch size", "Errors", "Power", "Temperature"):
        assert any(t.startswith(wanted) for t in titles), wanted
    used = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"]
        for target in panel["targets"]:
            promql_parser.walk(
                promql_parser.parse(target["expr"]),
                lambda node: used.add(node.name) if isinstance(node, promql_parser.VectorSelector) else None,
            )
    assert used - live_metrics == set()
    assert {"edgetrt_power_watts", "edgetrt_temperature_celsius", "nv_inference_pending_request_count"} <= used
    assert "nv_inference_pending_request_count" in live_metrics  # the HPA's metric
