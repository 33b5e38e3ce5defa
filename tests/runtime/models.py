"""Small ONNX models for the runtime tests: a dynamic batch x sequence encoder."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["dynamic_encoder"]


def dynamic_encoder(vocab: int = 50, width: int = 16, seed: int = 0) -> onnx.ModelProto:
    """ids int64[batch, seq] + mask float[batch, seq] -> pooled float[batch, width], attn float[batch, seq, seq].

    Embedding lookup, a dense layer with ReLU, masked mean pooling over the sequence, and a
    softmax self-similarity matrix: elementwise, reshaping and reduction ops over two
    symbolic dims.
    """
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((vocab, width)).astype(np.float32), "emb"),
        numpy_helper.from_array((rng.standard_normal((width, width)) / 4).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(width).astype(np.float32), "b"),
        numpy_helper.from_array(np.array([-1], np.int64), "last_axis"),
        numpy_helper.from_array(np.array([1], np.int64), "seq_axis"),
    ]
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["x"]),
        helper.make_node("MatMul", ["x", "w"], ["h0"]),
        helper.make_node("Add", ["h0", "b"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h"]),
        helper.make_node("Unsqueeze", ["mask", "last_axis"], ["m"]),
        helper.make_node("Mul", ["h", "m"], ["hm"]),
        helper.make_node("ReduceSum", ["hm", "seq_axis"], ["s"], keepdims=0),
        helper.make_node("ReduceSum", ["m", "seq_axis"], ["count"], keepdims=0),
        helper.make_node("Div", ["s", "count"], ["pooled"]),
        helper.make_node("Transpose", ["h"], ["ht"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["h", "ht"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["attn"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "dynamic_encoder",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "seq"]),
        ],
        [
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", width]),
            helper.make_tensor_value_info("attn", TensorProto.FLOAT, ["batch", "seq", "seq"]),
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
