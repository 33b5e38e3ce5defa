"""``edgetrt calibrate --export-qdq``: the calibrated model as explicit Q/DQ ONNX, at the cache's
scales, that onnxruntime runs and that agrees with edgetrt's INT8 engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

import edge
from edge.cli import main
from edge.compare import TOLERANCES
from edge.quant import read_cache
from tests.models import resnet_block_cnn

INT8_RTOL, INT8_ATOL = TOLERANCES["int8"]


def test_export_qdq_runs_in_onnxruntime_at_the_cache_scales(tmp_path: Path) -> None:
    model = tmp_path / "cnn.onnx"
    model.write_bytes(resnet_block_cnn().SerializeToString())
    rng = np.random.default_rng(4)
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "batch.npy", rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    cache, qdq = tmp_path / "cnn.calib", tmp_path / "cnn.qdq.onnx"
    assert main(["calibrate", str(model), "--calib-data", str(tmp_path / "data"), "-o", str(cache), "--export-qdq", str(qdq)]) == 0
    scales = read_cache(cache).scales
    exported = onnx.load(qdq)
    onnx.checker.check_model(exported, full_check=True)
    inits = {t.name: numpy_helper.to_array(t) for t in exported.graph.initializer}
    quantize = [n for n in exported.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantize) >= 5 and {n.op_type for n in exported.graph.node} >= {"DequantizeLinear", "Conv"}
    named = 0
    for node in quantize:  # every activation Q/DQ pair carries the cache's scale of the tensor it quantizes
        tensor = node.input[0].removesuffix("_prequantized").removesuffix("_dq")
        scale = float(inits[node.input[1]])
        if tensor in scales:
            named += 1
            assert scale == np.float32(scales[tensor]), tensor
        else:  # a tensor the portable passes renamed (folded Sub/Div) stands for one of the cache's
            assert scale in {float(np.float32(s)) for s in scales.values()}, tensor
        assert int(inits[node.input[2]]) == 0
    assert named > len(quantize) // 2
    feeds = {"image": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
    expected = ort.InferenceSession(qdq.read_bytes(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    int8 = edge.build(model, edge.BuilderConfig(precision="int8", calib_cache=cache)).create_context().run(feeds)["probs"]
    fp32 = edge.build(model).create_context().run(feeds)["probs"]
    np.testing.assert_allclose(int8, expected, rtol=INT8_RTOL, atol=INT8_ATOL)
    # closer to onnxruntime's Q/DQ run than to FP32: the export carries the quantization itself
    assert np.abs(int8 - expected).max() < np.abs(int8 - fp32).max()
