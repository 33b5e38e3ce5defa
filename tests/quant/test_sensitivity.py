"""``calibrate --sensitivity --keep-fp16 K``: layers ranked by how far quantizing each alone moves
the outputs from FP32, and the worst K kept in FP16 by ``build --layer-precisions @FILE``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import edge
from edge.cli import main
from edge.cli.options import parse_layer_precisions
from tests.models import resnet_block_cnn


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.vdot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _outputs(engine: edge.Engine, samples: np.ndarray) -> np.ndarray:
    """The engine's outputs on every sample (the model's batch is 1), flattened together."""
    context = engine.create_context()
    return np.concatenate([context.run({"image": sample[None]})["probs"].ravel() for sample in samples])


def test_sensitivity_ranks_layers_and_keeps_the_worst_in_fp16(tmp_path: Path, capsys) -> None:
    model = tmp_path / "cnn.onnx"
    model.write_bytes(resnet_block_cnn().SerializeToString())
    (tmp_path / "data").mkdir()
    rng = np.random.default_rng(8)
    np.save(tmp_path / "data" / "x.npy", rng.standard_normal((4, 3, 16, 16)).astype(np.float32))
    cache = tmp_path / "cnn.calib"
    assert main(["calibrate", str(model), "--calib-data", str(tmp_path / "data"), "-o", str(cache), "--sensitivity", "--keep-fp16", "2"]) == 0
    out = capsys.readouterr().out
    assert "INT8 sensitivity" in out
    spec = (tmp_path / "cnn.precisions").read_text().strip()
    kept = [item.rpartition(":")[0] for item in spec.split(",")]
    assert kept and all(item.endswith(":fp16") for item in spec.split(","))
    # the worst layer, found here from each single-layer engine on the same samples, is kept
    int8 = edge.build(model, edge.BuilderConfig(precision="int8", calib_cache=cache))
    int8_layers = [n for n in int8.graph.nodes if n.meta["precision"] == "int8"]
    samples = np.load(tmp_path / "data" / "x.npy")
    fp32 = _outputs(edge.build(model), samples)
    alone = {}
    for layer in int8_layers:
        pins = {"*": "fp32", **dict.fromkeys(layer.origin, "int8")}
        engine = edge.build(model, edge.BuilderConfig(precision="int8", calib_cache=cache, layer_precisions=pins))
        alone[layer.name] = _cosine(_outputs(engine, samples), fp32)
    worst = min(alone, key=alone.get)
    assert set(next(n for n in int8_layers if n.name == worst).origin) <= set(kept)
    # keeping them in FP16 leaves the rest INT8 and moves the outputs less than all-INT8 does
    mixed = edge.build(model, edge.BuilderConfig(precision="int8", calib_cache=cache, layer_precisions=parse_layer_precisions(f"@{tmp_path / 'cnn.precisions'}")))
    assert {n.meta["precision"] for n in mixed.graph.nodes if set(n.origin) & set(kept)} == {"fp16"}
    assert sum(n.meta["precision"] == "int8" for n in mixed.graph.nodes) == len(int8_layers) - 2
    assert _cosine(_outputs(mixed, samples), fp32) >= _cosine(_outputs(int8, samples), fp32)
