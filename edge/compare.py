"""``edge.compare``: run a model in an independent reference and in an engine on the same inputs, and diff them.

The reference is onnxruntime (CPU provider) running the original ONNX file; without
onnxruntime it is edgetrt's ``reference`` backend (plain numpy) on the *unoptimized* imported graph, and the
result says which one was used. The engine is given or built from the model.

An element passes when ``|engine - reference| <= atol + rtol * |reference|`` (numpy's
``isclose``; NaN matches NaN). Default tolerances depend on what the engine computes in:

==========  ======  ======  ==========================================================
precision   rtol    atol    why
==========  ======  ======  ==========================================================
fp32        1e-4    1e-5    same math, different summation order / fused kernels
fp16        1e-2    1e-2    FP16 storage (11-bit mantissa); cancellation makes small values
                            carry errors of the inputs' magnitude, so atol is not tiny
dla         2e-2    2e-2    FP16 on the DLA (emulated off-device), whole subgraphs in FP16
int8        1e-1    5e-2    8-bit activations/weights where scales are known
==========  ======  ======  ==========================================================

"dla" applies to an fp16 engine with any layer placed on the DLA; int8 wins over both. An
fp32 engine of an explicitly quantized (Q/DQ) model gets fp32 tolerances (the engine
re-applies every Q/DQ scale exactly); an fp16 one gets int8 tolerances, because FP16
rounding ahead of a quantizer can move a value to the neighbouring INT8 level.

Layerwise mode (Polygraphy's ``--onnx-outputs mark all`` / ``--trt-outputs mark all``) marks
every ONNX tensor as an output of the reference and records every engine layer's output. An
engine layer is matched to the ONNX tensor of the same name, else (fused layers get new
names) to the output of the last of its ``meta["origin"]`` nodes in ONNX order, if the shapes
agree. The first engine layer, in execution order, whose output is outside tolerance is the
first divergence; its origin nodes, device and precision say where to look.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx

from edge.builder import BuilderConfig, build
from edge.engine import Engine, load
from edge.errors import EdgeError, ModelImportError
from edge.frontend import load_model_proto, load_onnx
from edge.ir import Graph, Node
from edge.quant import onnx_tensor
from edge.runtime.context import check_inputs
from edge.runtime.inputs import random_inputs
from edge.runtime.interpreter import Schedule, Step

__all__ = [
    "TOLERANCES",
    "CompareResult",
    "LayerDivergence",
    "LayerwiseResult",
    "OutputComparison",
    "compare",
    "compare_arrays",
    "default_tolerances",
]

TOLERANCES: dict[str, tuple[float, float]] = {
    "fp32": (1e-4, 1e-5),
    "fp16": (1e-2, 1e-2),
    "dla": (2e-2, 2e-2),
    "int8": (1e-1, 5e-2),
}
"""Default (rtol, atol) per numerics class; see the module docstring for the reasons."""

REFERENCES = ("auto", "onnxruntime", "edgetrt")


@dataclass
class OutputComparison:
    """How one tensor of the engine differs from the reference."""

    name: str
    shape: tuple[int, ...]
    reference_shape: tuple[int, ...]
    dtype: str
    max_abs: float | None  # None when the shapes differ
    max_rel: float | None
    mean_abs: float | None
    worst_index: tuple[int, ...] | None
    worst_actual: float | None
    worst_expected: float | None
    mismatches: int
    passed: bool
    note: str = ""


@dataclass
class LayerDivergence:
    """The first engine layer whose output is outside tolerance."""

    layer: str
    op_type: str
    tensor: str
    reference_tensor: str
    origin: list[str]
    device: str
    precision: str
    comparison: OutputComparison


@dataclass
class LayerwiseResult:
    """Layer-by-layer outcome: how many layers had an ONNX counterpart, and the first divergence."""

    compared: int
    unmatched: list[str]
    first_divergence: LayerDivergence | None


@dataclass
class CompareResult:
    """Everything ``edgetrt compare`` prints."""

    reference: str
    engine: str
    numerics: str
    rtol: float
    atol: float
    seed: int
    outputs: list[OutputComparison]
    layerwise: LayerwiseResult | None = None
    inputs: dict[str, list[int]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def failed(self) -> list[str]:
        return [o.name for o in self.outputs if not o.passed]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (non-finite errors become the strings "inf" / "nan")."""
        data = _finite(asdict(self))
        data["passed"] = self.passed
        return data


def _finite(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    if isinstance(data, float) and not np.isfinite(data):
        return str(data)
    return data


def default_tolerances(engine: Engine) -> tuple[str, float, float]:
    """The numerics class of an engine ("fp32", "fp16", "dla", "int8") and its (rtol, atol).

    The class follows the precision its layers actually compute in, not the one requested:
    an ``--int8`` build without scales runs FP16 and gets FP16 (or DLA) tolerances.
    """
    nodes = engine.graph.nodes
    used = {node.meta.get("precision") or "fp32" for node in nodes}
    explicit_int8 = any("int8_scale" in value.meta for node in nodes for value in node.inputs if value is not None)
    if "int8" in used or (explicit_int8 and engine.precision != "fp32"):
        numerics = "int8"
    elif any(node.meta.get("device") == "dla" for node in nodes):
        numerics = "dla"
    else:
        numerics = "fp16" if "fp16" in used else "fp32"
    return (numerics, *TOLERANCES[numerics])


def compare_arrays(name: str, actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> OutputComparison:
    """Elementwise errors of ``actual`` against ``expected`` and the pass/fail verdict.

    The worst element is the one furthest outside its tolerance (or least inside it when all
    pass): ``|a - e| / (atol + rtol * |e|)`` is largest there; NaN/Inf mismatches rank first.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    shape, ref_shape = tuple(actual.shape), tuple(expected.shape)
    if shape != ref_shape:
        note = f"shape {_dims(shape)} != reference {_dims(ref_shape)}"
        return OutputComparison(name, shape, ref_shape, str(actual.dtype), None, None, None, None, None, None, max(actual.size, expected.size), False, note)
    if actual.size == 0:
        return OutputComparison(name, shape, ref_shape, str(actual.dtype), 0.0, 0.0, 0.0, None, None, None, 0, True)
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        same_special = (np.isnan(a) & np.isnan(e)) | (np.isinf(a) & (a == e))
        diff = np.where(same_special, 0.0, np.abs(a - e))
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only
        rel = np.where(diff == 0, 0.0, diff / np.abs(e))
        excess = np.where(diff == 0, 0.0, diff / (atol + rtol * np.abs(e)))
    excess = np.where(np.isnan(excess), np.inf, excess)
    flat = int(np.argmax(excess))
    index = tuple(int(i) for i in np.unravel_index(flat, shape))
    bad = int(np.count_nonzero(excess > 1.0))
    return OutputComparison(
        name=name,
        shape=shape,
        reference_shape=ref_shape,
        dtype=str(actual.dtype),
        max_abs=float(diff.max()),
        max_rel=float(rel.max()),
        mean_abs=float(diff.mean()),
        worst_index=index,
        worst_actual=float(a.reshape(-1)[flat]),
        worst_expected=float(e.reshape(-1)[flat]),
        mismatches=bad,
        passed=bad == 0,
    )


def compare(
    model: str | os.PathLike | bytes | onnx.ModelProto,
    engine: Engine | str | os.PathLike | None = None,
    config: BuilderConfig | None = None,
    inputs: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
    layerwise: bool = False,
    reference: str = "auto",
) -> CompareResult:
    """Run ``model`` in the reference and in ``engine`` on the same inputs and compare every output.

    Args:
        model: the ONNX model (path, serialized bytes or ModelProto) the engine was built from.
        engine: an Engine or engine file; None builds one from ``model`` with ``config``.
        config: build settings when ``engine`` is None (its input_shapes also shape the reference).
        inputs: arrays by input name; inputs not given are seeded random (as ``edgetrt run``).
        seed: seed for the random inputs.
        rtol, atol: tolerances; None takes the engine's defaults from :data:`TOLERANCES`.
        layerwise: also locate the first engine layer whose output diverges.
        reference: "auto" (onnxruntime if installed, else edgetrt), "onnxruntime" or "edgetrt"
            (the reference backend on the unoptimized graph).

    Raises:
        EdgeError: unreadable model or engine, an engine whose inputs/outputs are not the
            model's, a bad input array, an unknown reference, a negative tolerance.
    """
    if reference not in REFERENCES:
        raise EdgeError(f"reference '{reference}' is not one of {list(REFERENCES)}")
    if engine is not None and config is not None:
        raise EdgeError("give either an engine or build settings, not both (the engine is already built)")
    proto = load_model_proto(model)
    if engine is None:
        engine = build(proto.SerializeToString(), config or BuilderConfig())
    elif not isinstance(engine, Engine):
        engine = load(engine)
    numerics, default_rtol, default_atol = default_tolerances(engine)
    rtol = default_rtol if rtol is None else float(rtol)
    atol = default_atol if atol is None else float(atol)
    if rtol < 0 or atol < 0:
        raise EdgeError(f"tolerances must be non-negative (rtol {rtol}, atol {atol})")

    _check_interfaces(proto, engine)
    graph = _reference_graph(proto, engine, config)
    feeds = dict(inputs or {})
    feeds.update(random_inputs([s for s in engine.inputs if s.name not in feeds], seed))
    check_inputs(engine.inputs, feeds)

    use_ort = reference == "onnxruntime" or (reference == "auto" and importlib.util.find_spec("onnxruntime") is not None)
    if use_ort:
        name, expected = _run_onnxruntime(proto, graph, feeds, layerwise)
    else:
        name, expected = _run_interpreter(graph, feeds, layerwise)
        if reference == "auto":
            name += " (onnxruntime is not installed)"

    context = engine.create_context()
    tracker = _LayerTracker(graph, engine.graph, expected, rtol, atol) if layerwise else None
    if tracker is not None:
        context.profiler = tracker.on_step
    actual = context.run(feeds)
    outputs = [compare_arrays(spec.name, actual[spec.name], expected[spec.name], rtol, atol) for spec in engine.outputs]
    return CompareResult(
        reference=name,
        engine=engine.name,
        numerics=numerics,
        rtol=rtol,
        atol=atol,
        seed=seed,
        outputs=outputs,
        layerwise=tracker.result() if tracker is not None else None,
        inputs={k: list(np.shape(v)) for k, v in feeds.items()},
    )


def _reference_graph(proto: onnx.ModelProto, engine: Engine, config: BuilderConfig | None) -> Graph:
    """The unoptimized imported model, with the input shapes the engine was built for."""
    if config is not None:
        return load_onnx(proto, input_shapes=config.input_shapes)
    shapes = {s.name: tuple(s.shape) for s in engine.inputs if all(isinstance(d, int) for d in s.shape)}
    try:
        return load_onnx(proto, input_shapes=shapes or None)
    except ModelImportError as exc:
        raise EdgeError(f"engine '{engine.name}' input shapes do not fit the model ({exc}); was it built from this model?") from None


def _check_interfaces(proto: onnx.ModelProto, engine: Engine) -> None:
    weights = {t.name for t in proto.graph.initializer}
    model_inputs = [v.name for v in proto.graph.input if v.name not in weights]
    model_outputs = [v.name for v in proto.graph.output]
    if sorted(model_inputs) != sorted(s.name for s in engine.inputs):
        raise EdgeError(f"engine '{engine.name}' has inputs {[s.name for s in engine.inputs]}, the model has {model_inputs}; was it built from this model?")
    if sorted(model_outputs) != sorted(s.name for s in engine.outputs):
        raise EdgeError(f"engine '{engine.name}' has outputs {[s.name for s in engine.outputs]}, the model has {model_outputs}; was it built from this model?")


def _run_onnxruntime(
    proto: onnx.ModelProto, graph: Graph, feeds: Mapping[str, np.ndarray], layerwise: bool
) -> tuple[str, dict[str, np.ndarray]]:
    """Outputs (and with ``layerwise`` every top-level tensor) of onnxruntime's CPU provider."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise EdgeError("reference 'onnxruntime' requested but onnxruntime is not installed (pip install onnxruntime)") from None
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    if layerwise:
        marked = {o.name for o in model.graph.output} | {i.name for i in model.graph.input}
        for node in model.graph.node:
            for name in node.output:
                if name and name not in marked:
                    model.graph.output.append(onnx.ValueInfoProto(name=name))  # onnxruntime infers the type
                    marked.add(name)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        arrays = session.run(names, {v.name: feeds[v.name] for v in graph.inputs})
    except Exception as exc:  # onnxruntime raises its own exception types
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeError(f"onnxruntime cannot run the model: {message}") from None
    return f"onnxruntime {ort.__version__} (CPU)", dict(zip(names, arrays))


def _run_interpreter(graph: Graph, feeds: Mapping[str, np.ndarray], layerwise: bool) -> tuple[str, dict[str, np.ndarray]]:
    """Outputs (and every tensor) of edgetrt's ``reference`` backend (plain numpy) on the
    unoptimized graph."""
    values: dict[str, np.ndarray] = {}

    def keep(step: Step, results: list[np.ndarray]) -> None:
        for value, array in zip(step.node.outputs, results):
            values[value.name] = np.array(array, copy=True)

    outputs = Schedule(graph, "reference").run([feeds[v.name] for v in graph.inputs], on_step=keep if layerwise else None)
    values.update({v.name: a for v, a in zip(graph.outputs, outputs)})
    return "edgetrt reference backend (plain numpy, unoptimized graph)", values


class _LayerTracker:
    """Compares each engine layer's outputs with the reference as the engine runs.

    Only the first divergence matters, so arrays are compared as they appear and none is kept.
    """

    def __init__(self, graph: Graph, engine_graph: Graph, expected: Mapping[str, np.ndarray], rtol: float, atol: float) -> None:
        self.expected = expected
        self.rtol, self.atol = rtol, atol
        position = {node.name: (index, [v.name for v in node.outputs]) for index, node in enumerate(graph.nodes)}
        # engine layer id -> [(output index, reference tensor)]; when a rewrite created several
        # layers from one origin, only the last one in execution order produces that tensor
        owner: dict[str, tuple[int, int]] = {}
        for node in engine_graph.nodes:
            for index, value in enumerate(node.outputs):
                name = _counterpart(node, index, position, expected)
                if name is not None and not value.meta.get("omitted"):
                    owner[name] = (id(node), index)
        self.targets: dict[int, list[tuple[int, str]]] = {}
        for name, (node_id, index) in owner.items():
            self.targets.setdefault(node_id, []).append((index, name))
        self.compared = 0
        self.unmatched: list[str] = []
        self.first: LayerDivergence | None = None

    def on_step(self, step: Step, results: list[np.ndarray]) -> None:
        if self.first is not None:
            return
        matched = False
        for index, name in sorted(self.targets.get(id(step.node), [])):
            array = results[index]
            if np.shape(self.expected[name]) != np.shape(array):
                continue
            matched = True
            node = step.node
            result = compare_arrays(node.outputs[index].name, array, self.expected[name], self.rtol, self.atol)
            if not result.passed:
                self.first = LayerDivergence(
                    layer=node.name,
                    op_type=node.op_type,
                    tensor=node.outputs[index].name,
                    reference_tensor=name,
                    origin=list(node.origin),
                    device=str(node.meta.get("device", "cpu")),
                    precision=str(node.meta.get("precision", "fp32")),
                    comparison=result,
                )
                break
        if matched:
            self.compared += 1
        else:
            self.unmatched.append(step.node.name)

    def result(self) -> LayerwiseResult:
        return LayerwiseResult(self.compared, self.unmatched, self.first)


def _counterpart(
    node: Node, index: int, position: Mapping[str, tuple[int, list[str]]], expected: Mapping[str, np.ndarray]
) -> str | None:
    """The ONNX tensor an engine layer's ``index``-th output stands for: same name, else the
    same output of the last origin node in ONNX order (a fusion's root)."""
    name = node.outputs[index].name
    if name not in expected:
        name = onnx_tensor(node, index, position)
    return name if name in expected else None


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "scalar"
