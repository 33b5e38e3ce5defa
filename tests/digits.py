"""A small CNN trained with numpy on scikit-learn's 8x8 digits, exported to ONNX: a real model
with a measured accuracy for the INT8 tests and the calibrator benchmark (trains in ~1 s)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits

__all__ = ["BATCH", "Digits", "digits_cnn", "top1"]

BATCH = 120
"""The exported model's fixed batch; the test split is 3 such batches."""
_FILTERS, _CLASSES = 8, 10


@dataclass
class Digits:
    """The trained model and its data: train images (calibration) and the held-out test split."""

    model: onnx.ModelProto
    train: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray


def _patches(images: np.ndarray) -> np.ndarray:
    """(B, 1, 8, 8) -> (B, 64, 9): each pixel's 3x3 neighbourhood (zero padded), row-major."""
    padded = np.pad(images[:, 0], ((0, 0), (1, 1), (1, 1)))
    return np.stack([padded[:, y:y + 8, x:x + 8] for y in range(3) for x in range(3)], axis=-1).reshape(len(images), 64, 9)


def _forward(params: dict[str, np.ndarray], images: np.ndarray) -> tuple[np.ndarray, ...]:
    """Conv 3x3 (8 filters) -> ReLU -> 2x2 average pool -> flatten in NCHW order -> dense."""
    cols = _patches(images)
    pre = cols @ params["conv"] + params["conv_bias"]  # (B, 64, 8), pixels y*8+x
    act = np.maximum(pre, 0).reshape(len(images), 4, 2, 4, 2, _FILTERS)
    pooled = act.mean(axis=(2, 4))  # (B, 4, 4, 8)
    flat = pooled.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return cols, pre, flat, flat @ params["dense"] + params["dense_bias"]


def _gradients(params: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    cols, pre, flat, logits = _forward(params, images)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(len(labels)), labels] -= 1
    d_logits = probs / len(labels)
    d_pooled = (d_logits @ params["dense"].T).reshape(len(images), _FILTERS, 4, 4).transpose(0, 2, 3, 1)
    d_act = np.repeat(np.repeat(d_pooled, 2, axis=1), 2, axis=2).reshape(len(images), 64, _FILTERS) / 4
    d_pre = d_act * (pre > 0)
    return {
        "conv": np.einsum("bpk,bpf->kf", cols, d_pre),
        "conv_bias": d_pre.sum(axis=(0, 1)),
        "dense": flat.T @ d_logits,
        "dense_bias": d_logits.sum(axis=0),
    }


def _train(images: np.ndarray, labels: np.ndarray, seed: int, epochs: int = 20, lr: float = 0.01) -> dict[str, np.ndarray]:
    """Adam on softmax cross-entropy, minibatches of 64."""
    rng = np.random.default_rng(seed)
    params = {
        "conv": rng.standard_normal((9, _FILTERS)) * np.sqrt(2 / 9),
        "conv_bias": np.zeros(_FILTERS),
        "dense": rng.standard_normal((_FILTERS * 16, _CLASSES)) * np.sqrt(1 / (_FILTERS * 16)),
        "dense_bias": np.zeros(_CLASSES),
    }
    first = {k: np.zeros_like(v) for k, v in params.items()}
    second = {k: np.zeros_like(v) for k, v in params.items()}
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(images))
        for start in range(0, len(order), 64):
            chosen = order[start:start + 64]
            step += 1
            for key, grad in _gradients(params, images[chosen], labels[chosen]).items():
                first[key] = 0.9 * first[key] + 0.1 * grad
                second[key] = 0.999 * second[key] + 0.001 * grad**2
                unbiased = first[key] / (1 - 0.9**step)
                params[key] -= lr * unbiased / (np.sqrt(second[key] / (1 - 0.999**step)) + 1e-8)
    return params


def _to_onnx(params: dict[str, np.ndarray]) -> onnx.ModelProto:
    weight = params["conv"].T.reshape(_FILTERS, 1, 3, 3)
    inits = [
        numpy_helper.from_array(weight.astype(np.float32), "conv_w"),
        numpy_helper.from_array(params["conv_bias"].astype(np.float32), "conv_b"),
        numpy_helper.from_array(params["dense"].astype(np.float32), "dense_w"),
        numpy_helper.from_array(params["dense_bias"].astype(np.float32), "dense_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("AveragePool", ["relu"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "dense_w", "dense_b"], ["logits"], name="dense"),
    ]
    graph = helper.make_graph(
        nodes, "digits_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [BATCH, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [BATCH, _CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgetrt-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def digits_cnn(seed: int = 0) -> Digits:
    """Train on 1437 digits, keep 360 for testing (pixels scaled to [0, 1])."""
    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None]
    order = np.random.default_rng(seed).permutation(len(images))
    test, train = order[:3 * BATCH], order[3 * BATCH:]
    params = _train(images[train], data.target[train], seed)
    return Digits(_to_onnx(params), images[train], images[test], data.target[test])


def top1(run: callable, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``run(batch) -> logits`` over ``images`` in batches of BATCH."""
    predicted = np.concatenate([run(images[i:i + BATCH]).argmax(axis=1) for i in range(0, len(images), BATCH)])
    return float((predicted == labels).mean())
