"""Classic machine-learning ops, as scikit-learn / LightGBM exports carry them: the
ai.onnx.ml Binarizer, ArrayFeatureExtractor, LabelEncoder and TreeEnsemble, and the
standard n-gram TfIdfVectorizer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special

from edge.errors import KernelError
from edge.kernels.registry import OpContext, register

__all__: list[str] = []

ML = "ai.onnx.ml"


@register("Binarizer", domain=ML)
def binarizer(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """1 where ``x`` exceeds ``threshold``, else 0, in ``x``'s dtype."""
    return (x > ctx.attr("threshold", 0.0)).astype(x.dtype)


@register("ArrayFeatureExtractor", domain=ML)
def array_feature_extractor(ctx: OpContext, x: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The elements of the last axis that ``indices`` names."""
    picks = indices.astype(np.int64).reshape(-1)
    if picks.size and (picks.min() < 0 or picks.max() >= x.shape[-1]):
        raise KernelError(f"node '{ctx.node.name}' (ArrayFeatureExtractor): index outside [0, {x.shape[-1] - 1}]: {picks.tolist()}")
    return np.take(x, picks, axis=-1)


def _label_table(ctx: OpContext, side: str) -> np.ndarray | None:
    """The keys or values, from whichever of ``<side>_tensor``/``_int64s``/``_floats``/``_strings`` is set."""
    tensor = ctx.attr(f"{side}_tensor")
    if tensor is not None:
        return np.asarray(tensor).reshape(-1)
    for suffix, dtype in (("int64s", np.int64), ("floats", np.float32), ("strings", object)):
        listed = ctx.attr(f"{side}_{suffix}")
        if listed is not None:
            return np.array(listed, dtype=dtype)
    return None


@register("LabelEncoder", domain=ML)
def label_encoder(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """Map each element through the parallel keys/values (a repeated key: its last value);
    an unknown element maps to the default (-1, -0.0 or "_Unused" unless given). Float
    NaN keys match NaN elements."""
    keys, values = _label_table(ctx, "keys"), _label_table(ctx, "values")
    if keys is None or values is None or len(keys) != len(values):
        raise KernelError(f"node '{ctx.node.name}' (LabelEncoder): needs keys_* and values_* of one length")
    default = ctx.attr("default_tensor")
    if default is None:
        kind = values.dtype.kind
        default = ctx.attr("default_string", "_Unused") if kind == "O" else ctx.attr("default_float", -0.0) if kind == "f" else ctx.attr("default_int64", -1)
    fallback = np.asarray(default, dtype=values.dtype).reshape(-1)[0]
    nan_key = keys.dtype.kind == "f" and bool(np.isnan(keys).any())
    table = {k: v for k, v in zip(keys.tolist(), values.tolist()) if not (nan_key and k != k)}
    nan_value = values[np.flatnonzero(np.isnan(keys))[-1]] if nan_key else fallback
    flat = [nan_value if (nan_key and e != e) else table.get(e, fallback) for e in x.reshape(-1).tolist()]
    return np.array(flat, dtype=values.dtype).reshape(x.shape)


# nodes_modes codes of TreeEnsemble
_LEQ, _LT, _GTE, _GT, _EQ, _NEQ, _MEMBER = range(7)
_AVERAGE, _SUM, _MIN, _MAX = range(4)


def _member_sets(modes: np.ndarray, members: np.ndarray | None) -> dict[int, np.ndarray]:
    """Node index -> its members: ``membership_values`` lists one NaN-delimited set per
    BRANCH_MEMBER node, in the order those nodes appear."""
    member_nodes = np.flatnonzero(modes == _MEMBER)
    if not len(member_nodes):
        return {}
    values = np.asarray(members if members is not None else [], np.float64)
    groups = np.split(values, np.flatnonzero(np.isnan(values)) + 1)
    groups = [g[~np.isnan(g)] for g in groups]
    if len(groups) < len(member_nodes):
        raise KernelError(f"TreeEnsemble: {len(member_nodes)} set-membership nodes but {len(groups)} sets in membership_values")
    return dict(zip(member_nodes.tolist(), groups))


def _goes_true(mode: int, value: np.ndarray, split: float, members: np.ndarray | None) -> np.ndarray:
    if mode == _LEQ:
        return value <= split
    if mode == _LT:
        return value < split
    if mode == _GTE:
        return value >= split
    if mode == _GT:
        return value > split
    if mode == _EQ:
        return value == split
    if mode == _NEQ:
        return value != split
    return np.isin(value, members)


def _post_transform(scores: np.ndarray, code: int) -> np.ndarray:
    """NONE, SOFTMAX, LOGISTIC, SOFTMAX_ZERO (zeros stay zero) or PROBIT."""
    if code == 1:
        return special.softmax(scores, axis=1)
    if code == 2:
        return special.expit(scores)
    if code == 3:
        exp = np.where(scores != 0, np.exp(scores - scores.max(axis=1, keepdims=True)), 0.0)
        total = exp.sum(axis=1, keepdims=True)
        return exp / np.where(total == 0, 1, total)
    if code == 4:
        return np.sqrt(2) * special.erfinv(2 * scores - 1)
    return scores


class _Forest:
    """TreeEnsemble's node and leaf tables, parsed once from the attributes."""

    def __init__(self, ctx: OpContext) -> None:
        self.modes = np.asarray(ctx.attr("nodes_modes")).astype(np.int64).reshape(-1)
        self.features = np.asarray(ctx.attr("nodes_featureids"), np.int64)
        self.splits = np.asarray(ctx.attr("nodes_splits"), np.float64).reshape(-1)
        self.true_ids = np.asarray(ctx.attr("nodes_truenodeids"), np.int64)
        self.false_ids = np.asarray(ctx.attr("nodes_falsenodeids"), np.int64)
        self.true_leaf = np.asarray(ctx.attr("nodes_trueleafs"), bool)
        self.false_leaf = np.asarray(ctx.attr("nodes_falseleafs"), bool)
        missing = ctx.attr("nodes_missing_value_tracks_true")
        self.missing_true = np.asarray(missing if missing is not None else np.zeros(len(self.modes)), bool)
        self.sets = _member_sets(self.modes, ctx.attr("membership_values"))
        self.weights = np.asarray(ctx.attr("leaf_weights"), np.float64).reshape(-1)
        self.targets = np.asarray(ctx.attr("leaf_targetids"), np.int64)

    def leaves(self, ctx: OpContext, x: np.ndarray, root: int) -> np.ndarray:
        """The leaf index every sample of ``x`` [N, F] reaches from ``root``: all samples
        step down together, one level per pass. A NaN feature takes the true branch when
        its comparison holds (only BRANCH_NEQ's does) or the node tracks missing values to
        true, as onnxruntime and ONNX's reference decide."""
        current = np.full(len(x), root, np.int64)
        leaf = np.full(len(x), -1, np.int64)
        active = np.ones(len(x), bool)
        for _ in range(len(self.modes) + 1):
            if not active.any():
                return leaf
            for node in np.unique(current[active]).tolist():
                rows = np.flatnonzero(active & (current == node))
                value = x[rows, self.features[node]].astype(np.float64)
                test = _goes_true(int(self.modes[node]), value, self.splits[node], self.sets.get(node))
                branch = test | (np.isnan(value) & self.missing_true[node])
                target = np.where(branch, self.true_ids[node], self.false_ids[node])
                to_leaf = np.where(branch, self.true_leaf[node], self.false_leaf[node])
                leaf[rows[to_leaf]] = target[to_leaf]
                active[rows[to_leaf]] = False
                current[rows] = target
        raise KernelError(f"node '{ctx.node.name}' (TreeEnsemble): the tree at root {root} has a cycle")


@register("TreeEnsemble", domain=ML, since=5)
def tree_ensemble(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """[N, n_targets]: each tree's reached leaf adds its weight to its target, aggregated by
    ``aggregate_function`` (SUM, AVERAGE over trees, MIN, MAX), then ``post_transform``."""
    forest = ctx.from_constants("forest", (), lambda: _Forest(ctx))
    roots: Sequence[int] = ctx.attr("tree_roots")
    aggregate = ctx.attr("aggregate_function", _SUM)
    start = {_MIN: np.inf, _MAX: -np.inf}.get(aggregate, 0.0)
    scores = np.full((len(x), ctx.attr("n_targets")), start)
    touched = np.zeros(scores.shape, bool)
    rows = np.arange(len(x))
    for root in roots:
        leaves = forest.leaves(ctx, x, int(root))
        where = (rows, forest.targets[leaves])
        if aggregate == _MIN:
            np.minimum.at(scores, where, forest.weights[leaves])
        elif aggregate == _MAX:
            np.maximum.at(scores, where, forest.weights[leaves])
        else:
            np.add.at(scores, where, forest.weights[leaves])
        touched[where] = True
    if aggregate == _AVERAGE:
        scores /= len(roots)
    scores = np.where(touched, scores, 0.0)
    return _post_transform(scores, ctx.attr("post_transform", 0)).astype(x.dtype)


def _ngram_pool(ctx: OpContext) -> tuple[dict[tuple, int], int]:
    """{n-gram tuple: output column} from the pool (``ngram_counts`` gives where each length
    starts), and the output width."""
    pool = ctx.attr("pool_int64s")
    if pool is None:
        pool = ctx.attr("pool_strings")
    indexes = list(ctx.attr("ngram_indexes"))
    starts = list(ctx.attr("ngram_counts")) + [len(pool)]
    table: dict[tuple, int] = {}
    slot = 0
    for length, (begin, end) in enumerate(zip(starts, starts[1:]), 1):
        for offset in range(begin, end, length):
            table[tuple(pool[offset : offset + length])] = indexes[slot]
            slot += 1
    return table, max(indexes) + 1


@register("TfIdfVectorizer", since=9)
def tfidf_vectorizer(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """Count the pool's n-grams (lengths min..max_gram_length, items up to max_skip_count
    apart, a unigram once) in each row of ``x``; "IDF" clips counts to 1, and "IDF"/"TFIDF"
    scale them by ``weights``."""
    table, width = ctx.from_constants("pool", (), lambda: _ngram_pool(ctx))
    low, high = ctx.attr("min_gram_length"), ctx.attr("max_gram_length")
    max_skip = ctx.attr("max_skip_count", 0)
    rows = x.reshape(-1, x.shape[-1])
    counts = np.zeros((len(rows), width), np.float32)
    for r, row in enumerate(rows.tolist()):
        for length in range(low, high + 1):
            for skip in range(max_skip + 1 if length > 1 else 1):
                step = skip + 1
                for start in range(len(row) - (length - 1) * step):
                    column = table.get(tuple(row[start : start + (length - 1) * step + 1 : step]))
                    if column is not None:
                        counts[r, column] += 1
    mode = ctx.attr("mode", "TF")
    if mode != "TF":
        if mode == "IDF":
            counts = np.minimum(counts, 1)
        weights = ctx.attr("weights")
        if weights is not None:
            scale = np.zeros(width, np.float32)
            scale[list(ctx.attr("ngram_indexes"))] = weights
            counts *= scale
    return counts.reshape(width) if x.ndim == 1 else counts
