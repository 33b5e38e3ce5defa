"""Classic-ML kernels (TreeEnsemble, LabelEncoder, TfIdfVectorizer, Binarizer) against
onnxruntime on inputs ONNX's node cases do not cover: a random forest over every branch mode
with NaN features, float keys with NaN, string n-grams with skips and TF-IDF weights."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.frontend import load_onnx
from edge.runtime.interpreter import run_graph

RNG = np.random.default_rng(5)
ML = "ai.onnx.ml"


def _compare(node, feeds: dict[str, np.ndarray], out_type: int, rank: int, ml_opset: int = 5, opset: int = 21) -> None:
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in feeds.items()],
        [helper.make_tensor_value_info("y", out_type, [None] * rank)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(ML, ml_opset)])
    (want,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = run_graph(load_onnx(model), feeds)["y"]
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)


def _random_forest(trees: int, depth: int, features: int, targets: int) -> dict:
    """Full binary trees of ``depth`` levels; interior nodes take a random mode (set
    membership included) and NaN direction, leaves a random target and weight. Features
    are whole numbers (categories), as onnxruntime's membership test truncates to one."""
    modes, feature_ids, splits, true_ids, false_ids, roots, members, missing = [], [], [], [], [], [], [], []
    leaf_targets, leaf_weights = [], []
    for _ in range(trees):
        roots.append(len(modes))
        level_start = len(modes)
        for level in range(depth):
            width = 2**level
            for i in range(width):
                mode = int(RNG.integers(0, 7))
                modes.append(mode)
                feature_ids.append(int(RNG.integers(0, features)))
                splits.append(float(RNG.choice([-1.0, 0.0, 1.0, 2.0])))
                missing.append(int(RNG.integers(0, 2)))
                if mode == 6:
                    members.extend([float(v) for v in RNG.choice([0.0, 1.0, 2.0, 3.0], 2, replace=False)] + [np.nan])
                if level == depth - 1:
                    for ids in (true_ids, false_ids):
                        ids.append(len(leaf_targets))
                        leaf_targets.append(int(RNG.integers(0, targets)))
                        leaf_weights.append(float(RNG.standard_normal()))
                else:
                    child = level_start + width + 2 * i
                    true_ids.append(child)
                    false_ids.append(child + 1)
            level_start += width
    interior_last = [1 if d == depth - 1 else 0 for t in range(trees) for d in range(depth) for _ in range(2**d)]
    return {
        "nodes_modes": numpy_helper.from_array(np.array(modes, np.uint8)),
        "nodes_featureids": feature_ids,
        "nodes_splits": numpy_helper.from_array(np.array(splits, np.float32)),
        "nodes_truenodeids": true_ids,
        "nodes_falsenodeids": false_ids,
        "nodes_trueleafs": interior_last,
        "nodes_falseleafs": interior_last,
        "nodes_missing_value_tracks_true": missing,
        "membership_values": numpy_helper.from_array(np.array(members, np.float32)),
        "tree_roots": roots,
        "leaf_targetids": leaf_targets,
        "leaf_weights": numpy_helper.from_array(np.array(leaf_weights, np.float32)),
    }


@pytest.mark.parametrize("aggregate", [0, 1, 2, 3])
def test_tree_ensemble_matches_onnxruntime(aggregate: int) -> None:
    x = RNG.choice([-1.0, 0.0, 1.0, 2.0, 3.0, np.nan], (60, 4)).astype(np.float32)
    node = helper.make_node("TreeEnsemble", ["x"], ["y"], domain=ML, n_targets=3, aggregate_function=aggregate,
                            **_random_forest(trees=4, depth=3, features=4, targets=3))
    _compare(node, {"x": x}, TensorProto.FLOAT, 2)


def test_label_encoder_float_keys_with_nan_match_onnxruntime() -> None:
    x = np.array([[0.5, np.nan, 2.0], [7.0, 0.5, -1.0]], np.float32)
    node = helper.make_node("LabelEncoder", ["x"], ["y"], domain=ML, keys_floats=[0.5, np.nan, 2.0],
                            values_int64s=[1, 2, 3], default_int64=-9)
    _compare(node, {"x": x}, TensorProto.INT64, 2, ml_opset=4)


def test_label_encoder_repeated_key_takes_its_last_value() -> None:
    """The spec's rule (onnxruntime keeps the first one)."""
    node = helper.make_node("LabelEncoder", ["x"], ["y"], domain=ML, keys_int64s=[3, 5, 3], values_strings=["a", "b", "c"])
    x = np.array([3, 5, 4], np.int64)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.INT64, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.STRING, [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(ML, 4)])
    assert run_graph(load_onnx(model), {"x": x})["y"].tolist() == ["c", "b", "_Unused"]


def test_label_encoder_strings_to_floats_match_onnxruntime() -> None:
    x = np.array(["cat", "dog", "emu", "cat"], dtype=object)
    node = helper.make_node("LabelEncoder", ["x"], ["y"], domain=ML, keys_strings=["cat", "dog"],
                            values_floats=[0.25, -3.0], default_float=7.5)
    _compare(node, {"x": x}, TensorProto.FLOAT, 1, ml_opset=4)


@pytest.mark.parametrize("mode", ["TF", "IDF", "TFIDF"])
def test_tfidf_vectorizer_strings_with_skips_match_onnxruntime(mode: str) -> None:
    words = np.array(["a", "b", "c", "d"], dtype=object)
    x = RNG.choice(words, (3, 9))
    node = helper.make_node(
        "TfIdfVectorizer", ["x"], ["y"], mode=mode, min_gram_length=1, max_gram_length=3, max_skip_count=2,
        pool_strings=["a", "c", "a", "b", "b", "d", "c", "c", "a", "b", "c"], ngram_counts=[0, 2, 8],
        ngram_indexes=[5, 0, 1, 2, 3, 4, 6], weights=[0.5, 2.0, 1.5, 1.0, 3.0, 0.25, 4.0],
    )
    _compare(node, {"x": x}, TensorProto.FLOAT, 2)


def test_binarizer_matches_onnxruntime() -> None:
    x = RNG.standard_normal((4, 5)).astype(np.float32)
    _compare(helper.make_node("Binarizer", ["x"], ["y"], domain=ML, threshold=0.3), {"x": x}, TensorProto.FLOAT, 2, ml_opset=1)
