"""Average pooling moved after the 1x1 convolution that follows it, when that conv narrows.

Inception's pool-projection branches run AveragePool on a wide tensor (576 channels) and then
a 1x1 conv down to a few (64-128). Averaging is one weighted sum of pixels, the same for every
channel, and a 1x1 stride-1 conv mixes channels pixel by pixel, so the two commute::

    Conv1x1(AveragePool(x), W, B) == AveragePool(Conv1x1(x, W, B))

exactly in real arithmetic, the bias included when every window's weights sum to 1 (padding
left out of the divisor, or no padding). Pooling the narrow output instead of the wide input
costs C_out / C_in as much. The conv's activation, if it had one, stays after the pool: the
rule runs before epilogue fusion, on plain Conv nodes.
"""

from __future__ import annotations

from edge.ir import Graph, Value, standard_domain
from edge.passes.common import is_float
from edge.passes.rewrite import Builder, Match, Op, Rule, RuleSet

__all__ = ["move_pools_after_pointwise_convs", "POOL_ORDER_RULES"]


def _check(graph: Graph, match: Match) -> str | None:
    pool, conv = match.node("pool"), match.node("conv")
    if standard_domain(pool.domain) != "" or standard_domain(conv.domain) != "":
        return "not standard ONNX ops"
    weight = conv.input(1)
    if weight is None or weight.shape is None or len(weight.shape) < 3 or not all(isinstance(d, int) for d in weight.shape):
        return "the conv's weight shape is unknown"
    rank = len(weight.shape) - 2
    kernel = list(conv.attrs.get("kernel_shape") or weight.shape[2:])
    if kernel != [1] * rank or list(conv.attrs.get("strides") or [1] * rank) != [1] * rank:
        return "the conv is not 1x1 with stride 1"
    if any(conv.attrs.get("pads") or [0]) or conv.attrs.get("group", 1) != 1:
        return "the conv pads or is grouped"
    if weight.shape[0] >= weight.shape[1]:
        return f"the conv does not narrow ({weight.shape[1]} -> {weight.shape[0]} channels)"
    padded = pool.attrs.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER") or any(pool.attrs.get("pads") or [0])
    if padded and pool.attrs.get("count_include_pad", 0):
        return "padding counts in the pool's divisor: border windows' weights do not sum to 1"
    if not is_float(conv.outputs[0]):
        return "not a floating-point conv"
    return None


def _rewrite(b: Builder, m: Match) -> Value:
    pool, conv = m.node("pool"), m.node("conv")
    x = pool.inputs[0]
    narrow = None if x.shape is None else (x.shape[0], conv.input(1).shape[0], *x.shape[2:])  # type: ignore[union-attr]
    moved = b.op("Conv", [x, *conv.inputs[1:]], dict(conv.attrs), dtype=conv.outputs[0].dtype, shape=narrow)
    return b.op("AveragePool", [moved], dict(pool.attrs), like=m.root.outputs[0])


POOL_ORDER_RULES = RuleSet(
    [Rule("average_pool_after_pointwise_conv", Op("Conv", Op("AveragePool", name="pool"), name="conv"), _rewrite, _check)]
)


def move_pools_after_pointwise_convs(graph: Graph) -> int:
    """Swap AveragePool -> narrowing 1x1 Conv into Conv -> AveragePool; returns how many."""
    return POOL_ORDER_RULES.apply(graph)
