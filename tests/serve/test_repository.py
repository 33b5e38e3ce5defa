"""Triton's model repository, driven by the official tritonclient against `edgetrt serve --model-repository`.

Also: config.pbtxt errors name file and line, configs that contradict the engine are refused,
and a model whose batch dim is fixed is announced as not batched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

import edge
from edge.serve.batcher import BatchingConfig
from edge.serve.model import ServedModel
from edge.serve.protocol import ServeError
from edge.serve.repository import Repository
from tests.serve.conftest import mlp_model, mlp_oracle

_CLI = "import sys; from edge.cli import main; sys.exit(main(sys.argv[1:]))"
_MLP_CONFIG = """
name: "mlp"
max_batch_size: 8
version_policy: { all { } }
input [ { name: "x", data_type: TYPE_FP32, dims: [ 16 ] } ]
output [ { name: "y", data_type: TYPE_FP32, dims: [ 8 ] } ]
dynamic_batching { max_queue_delay_microseconds: 500 }
instance_group [ { count: 2, kind: KIND_CPU } ]
"""


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("repo-engines")
    files = {"mlp": folder / "mlp.engine", "fixed": folder / "fixed.engine"}
    edge.build(mlp_model()).save(files["mlp"])
    edge.build(mlp_model(batch=1)).save(files["fixed"])
    return files


def _repository(root: Path, engines: dict[str, Path], config: str = _MLP_CONFIG) -> Path:
    for version in ("1", "2"):
        (root / "mlp" / version).mkdir(parents=True)
        shutil.copy(engines["mlp"], root / "mlp" / version / "model.engine")
    (root / "mlp" / "config.pbtxt").write_text(config)
    (root / "fixed" / "1").mkdir(parents=True)  # no config.pbtxt: everything comes from the engine
    shutil.copy(engines["fixed"], root / "fixed" / "1" / "model.engine")
    return root


@pytest.fixture(scope="module")
def served(engines, tmp_path_factory) -> Iterator[tuple[str, int, subprocess.Popen]]:
    """`edgetrt serve --model-repository` as a process, with a metrics port and the request log."""
    root = _repository(tmp_path_factory.mktemp("repo"), engines)
    argv = ["serve", "--model-repository", str(root), "--port", "0", "--metrics-port", "0", "--log-verbose", "1"]
    proc = subprocess.Popen([sys.executable, "-c", _CLI, *argv], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "serving fixed, mlp on http://127.0.0.1:" in line, line
        port = int(line.split("http://127.0.0.1:")[1].split(";")[0])
        metrics_port = int(line.split("metrics also on :")[1].split(";")[0])
        yield f"127.0.0.1:{port}", metrics_port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def test_official_client_uses_index_config_infer_statistics_load_unload_and_metrics(served):
    url, metrics_port, proc = served
    client = triton.InferenceServerClient(url)
    try:
        assert "model_repository" in client.get_server_metadata()["extensions"]
        index = client.get_model_repository_index()
        assert {(m["name"], m.get("version"), m["state"]) for m in index} == {
            ("fixed", "1", "READY"), ("mlp", "1", "READY"), ("mlp", "2", "READY")
        }
        config = client.get_model_config("mlp")
        assert config["max_batch_size"] == 8 and config["dynamic_batching"]["max_queue_delay_microseconds"] == 500
        assert [(g["count"], g["kind"]) for g in config["instance_group"]] == [(2, "KIND_CPU")]
        assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [("x", "TYPE_FP32", [16])]
        fixed = client.get_model_config("fixed")
        assert fixed["max_batch_size"] == 0 and "dynamic_batching" not in fixed
        assert [(t["name"], t["dims"]) for t in fixed["input"]] == [("x", [1, 16])]

        x = np.random.default_rng(4).standard_normal((3, 16)).astype(np.float32)
        tensor = triton.InferInput("x", [3, 16], "FP32")
        tensor.set_data_from_numpy(x)
        for version in ("1", "2", ""):  # "" = no version: the highest
            result = client.infer("mlp", [tensor], model_version=version)
            np.testing.assert_allclose(result.as_numpy("y"), mlp_oracle(x), rtol=1e-5, atol=1e-5)
            assert result.get_response()["model_version"] == (version or "2")
        big = triton.InferInput("x", [9, 16], "FP32")
        big.set_data_from_numpy(np.zeros((9, 16), np.float32))
        with pytest.raises(InferenceServerException, match="exceeds max_batch_size 8"):
            client.infer("mlp", [big])

        stats = client.get_inference_statistics("mlp", "2")["model_stats"]
        assert [(s["version"], s["inference_count"]) for s in stats] == [("2", 6)]

        client.unload_model("mlp")
        assert not client.is_model_ready("mlp")
        assert {"name": "mlp", "state": "UNAVAILABLE", "reason": "unloaded"} in client.get_model_repository_index()
        with pytest.raises(InferenceServerException, match="unknown model 'mlp'"):
            client.infer("mlp", [tensor])
        override = {"name": "mlp", "max_batch_size": 4, "version_policy": {"specific": {"versions": [1]}}}
        client.load_model("mlp", config=json.dumps(override))
        assert client.get_model_config("mlp")["max_batch_size"] == 4
        assert client.get_model_metadata("mlp")["versions"] == ["1"]
        np.testing.assert_allclose(client.infer("mlp", [tensor]).as_numpy("y"), mlp_oracle(x), rtol=1e-5, atol=1e-5)
        with pytest.raises(InferenceServerException, match="not in the model repository"):
            client.load_model("nope")
    finally:
        client.close()

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=60) as reply:
        families = {f.name: f for f in text_string_to_metric_families(reply.read().decode())}
    success = {(s.labels["model"], s.labels["version"]): s.value for s in families["nv_inference_request_success"].samples}
    assert success[("mlp", "1")] == 1  # the reloaded version 1 has served one request since its load
    latency = families["edgetrt_inference_request_duration_seconds"]
    assert any(s.name.endswith("_count") and s.labels["model"] == "mlp" and s.value == 1 for s in latency.samples)
    proc.terminate()
    log = proc.stderr.read()
    assert "POST /v2/repository/models/mlp/unload 200" in log
    assert "POST /v2/models/mlp/infer 400" in log  # the batch of 9, logged with its status


def test_a_fixed_batch_engine_is_announced_as_not_batched(engines):
    model = ServedModel.from_engine(edge.load(engines["fixed"]), "fixed", BatchingConfig(8, 0.001, 1, 16))
    assert model.config.max_batch_size == 0 and model.batching.max_batch == 1
    assert "no batching: the engine's leading dim is fixed (x: float32[1x16])" in model.describe_batching()
    dynamic = ServedModel.from_engine(edge.load(engines["mlp"]), "mlp", BatchingConfig(8, 0.001, 1, 16))
    assert dynamic.describe_batching().startswith("dynamic batching up to 8, 1 ms delay")


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ('name: "mlp"\noptimization { }\n', "config.pbtxt:2:1: Message type \"inference.ModelConfig\" has no field named \"optimization\""),
        ('name: "other"\n', "name 'other' differs from its folder name 'mlp'"),
        ('max_batch_size: 8\ninput [ { name: "x", data_type: TYPE_FP16, dims: [16] } ]\n', "input 'x' has data_type TYPE_FP16, the engine has TYPE_FP32"),
        ('max_batch_size: 8\noutput [ { name: "y", data_type: TYPE_FP32, dims: [1, 8] } ]\n', "output 'y' has dims [1, 8], the engine has [8]"),
        ('version_policy: { specific { versions: [7] } }\n', "asks for versions [7]"),
    ],
)
def test_bad_configs_are_refused_naming_file_and_field(engines, tmp_path, config, fragment):
    root = _repository(tmp_path, engines, config)
    with pytest.raises(ServeError) as info:
        Repository(root, 16).load("mlp")
    assert fragment in str(info.value) and info.value.status == 400


def test_batching_a_fixed_batch_engine_in_config_is_refused(engines, tmp_path):
    root = _repository(tmp_path, engines)
    (root / "fixed" / "config.pbtxt").write_text("max_batch_size: 8\ndynamic_batching { }\n")
    with pytest.raises(ServeError, match=r"max_batch_size 8 needs a dynamic leading \(batch\) dim, the engine has x: float32\[1x16\]"):
        Repository(root, 16).load("fixed")
