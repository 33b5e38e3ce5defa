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

Polygraphy's checks are there too: tolerances per output (``{"": default, "out": 1e-3}``),
and ``error_stat`` "max", "mean" or "median" instead of "elemwise": an output then fails when
that statistic of the absolute error exceeds atol *and* the same statistic of the relative
error exceeds rtol (Polygraphy's rule). Several iterations run on several feeds (saved ones,
a data-loader script's, or seeded random with ``seed + i``); saved reference outputs
(``expected``) replace the reference run. Every output row carries a histogram of its
absolute errors, and a note when it holds NaN or inf.

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
from collections.abc import Callable, Mapping, Sequence
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
from edge.runtime.feeds import guessed_shape_notes, iteration_feeds
from edge.runtime.interpreter import Schedule, Step

__all__ = [
    "ERROR_STATS",
    "TOLERANCES",
    "CompareResult",
    "LayerDivergence",
    "LayerwiseResult",
    "OutputComparison",
    "compare",
    "compare_arrays",
    "compare_outputs",
    "per_output",
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
ERROR_STATS = ("elemwise", "max", "mean", "median")
HISTOGRAM_BINS = 10

PerOutput = float | Mapping[str, float] | None
"""A tolerance for every output, or per output name with "" as the default for the rest."""


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
    iteration: int = 0
    rtol: float | None = None
    atol: float | None = None
    error_stat: str = "elemwise"
    non_finite: str = ""
    median_abs: float | None = None
    histogram: list[tuple[float, float, int]] = field(default_factory=list)
    """Counts of |engine - reference| in equal-width bins from 0 to max abs: (low, high, count)."""


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
    iterations: int = 1
    notes: list[str] = field(default_factory=list)
    feeds: list[dict[str, np.ndarray]] = field(default_factory=list, repr=False)
    """The inputs of every iteration (for --save-inputs); not part of :meth:`to_dict`."""
    runs: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict, repr=False)
    """Outputs per runner ("reference", "engine") and iteration (for --save-outputs)."""

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def failed(self) -> list[str]:
        names = [o.name if self.iterations == 1 else f"{o.name} (iteration {o.iteration})" for o in self.outputs if not o.passed]
        return list(dict.fromkeys(names))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (non-finite errors become the strings "inf" / "nan")."""
        data = _finite({k: v for k, v in asdict(self).items() if k not in ("feeds", "runs")})
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


def compare_arrays(
    name: str, actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float, error_stat: str = "elemwise"
) -> OutputComparison:
    """Errors of ``actual`` against ``expected`` and the pass/fail verdict (see the module doc
    for ``error_stat``).

    The worst element is the one furthest outside its tolerance (or least inside it when all
    pass): ``|a - e| / (atol + rtol * |e|)`` is largest there; NaN/Inf mismatches rank first.
    """
    if error_stat not in ERROR_STATS:
        raise EdgeError(f"error statistic '{error_stat}' is not one of {list(ERROR_STATS)}")
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
    stats = {"max": (float(diff.max()), float(rel.max())), "mean": (float(diff.mean()), float(rel.mean())),
             "median": (float(np.median(diff)), float(np.median(rel)))}
    if error_stat == "elemwise":
        passed = bad == 0
    else:
        abs_stat, rel_stat = stats[error_stat]
        passed = not (abs_stat > atol and (np.isnan(rel_stat) or rel_stat > rtol))
    return OutputComparison(
        name=name,
        shape=shape,
        reference_shape=ref_shape,
        dtype=str(actual.dtype),
        max_abs=stats["max"][0],
        max_rel=stats["max"][1],
        mean_abs=stats["mean"][0],
        worst_index=index,
        worst_actual=float(a.reshape(-1)[flat]),
        worst_expected=float(e.reshape(-1)[flat]),
        mismatches=bad,
        passed=passed,
        non_finite=_non_finite_note(a, e),
        rtol=rtol,
        atol=atol,
        error_stat=error_stat,
        median_abs=stats["median"][0],
        histogram=_histogram(diff),
    )


def _histogram(diff: np.ndarray) -> list[tuple[float, float, int]]:
    finite = diff[np.isfinite(diff)]
    top = float(finite.max()) if finite.size else 0.0
    counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS, range=(0.0, top or 1.0))
    rows = [(float(lo), float(hi), int(n)) for lo, hi, n in zip(edges[:-1], edges[1:], counts)]
    if finite.size < diff.size:
        rows.append((np.inf, np.inf, int(diff.size - finite.size)))  # NaN/inf on one side only
    return rows


def _non_finite_note(actual: np.ndarray, expected: np.ndarray) -> str:
    found = [f"{side} has {int(np.count_nonzero(~np.isfinite(x)))} NaN/inf" for side, x in (("engine", actual), ("reference", expected)) if not np.isfinite(x).all()]
    return "; ".join(found)


def compare_outputs(
    actuals: Sequence[Mapping[str, np.ndarray]],
    expected: Sequence[Mapping[str, np.ndarray]],
    label: str,
    rtol: Callable[[str], float],
    atol: Callable[[str], float],
    error_stat: Callable[[str], str] = lambda name: "elemwise",
) -> list[OutputComparison]:
    """Compare every output of every iteration with ``expected`` (tolerances by output name).

    Raises:
        EdgeError: ``expected`` has fewer iterations, or an iteration lacks an output.
    """
    if len(expected) < len(actuals):
        raise EdgeError(f"{label} hold {len(expected)} iteration(s), fewer than the {len(actuals)} run")
    rows = []
    for index, (actual, wanted) in enumerate(zip(actuals, expected)):
        for out, array in actual.items():
            if out not in wanted:
                raise EdgeError(f"{label} iteration {index} lack output '{out}' of the engine")
            row = compare_arrays(out, array, wanted[out], float(rtol(out)), float(atol(out)), str(error_stat(out)))
            row.iteration = index
            rows.append(row)
    return rows


def per_output(value: PerOutput | str | Mapping[str, str], default: Any) -> Callable[[str], Any]:
    """``value`` (one for all outputs, or by name with "" for the rest) as a lookup by output name."""
    return lambda name: _per_output(value, name, default)


def _per_output(value: PerOutput, name: str, default: Any) -> Any:
    if value is None:
        return default
    if isinstance(value, Mapping):
        return value.get(name, value.get("", default))
    return value


def compare(
    model: str | os.PathLike | bytes | onnx.ModelProto,
    engine: Engine | str | os.PathLike | None = None,
    config: BuilderConfig | None = None,
    inputs: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    rtol: PerOutput = None,
    atol: PerOutput = None,
    layerwise: bool = False,
    reference: str = "auto",
    *,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    iterations: int = 1,
    feeds: Sequence[Mapping[str, np.ndarray]] | None = None,
    expected: Sequence[Mapping[str, np.ndarray]] | None = None,
    expected_label: str = "saved outputs",
    error_stat: str | Mapping[str, str] = "elemwise",
) -> CompareResult:
    """Run ``model`` in the reference and in ``engine`` on the same inputs and compare every output.

    Args:
        model: the ONNX model (path, serialized bytes or ModelProto) the engine was built from.
        engine: an Engine or engine file; None builds one from ``model`` with ``config``.
        config: build settings when ``engine`` is None (its input_shapes also shape the reference).
        inputs: arrays by input name, used in every iteration; inputs not given are seeded
            random (as ``edgetrt run``), dynamic dims at ``shapes`` else the profile's opt shape.
        seed: seed for the random inputs (iteration i uses seed + i).
        rtol, atol: tolerances, one for all outputs or per output name ("" for the rest);
            None takes the engine's defaults from :data:`TOLERANCES`.
        layerwise: also locate the first engine layer whose output diverges (first iteration).
        reference: "auto" (onnxruntime if installed, else edgetrt), "onnxruntime" or "edgetrt"
            (the reference backend on the unoptimized graph).
        shapes: shapes of dynamic inputs for random data.
        iterations: how many feeds to compare (ignored when ``feeds`` is given).
        feeds: one input feed per iteration (saved inputs, a data loader's).
        expected: saved reference outputs per iteration, compared instead of running the model.
        expected_label: what ``expected`` is, for the report.
        error_stat: "elemwise", "max", "mean" or "median", for all outputs or per output.

    Raises:
        EdgeError: unreadable model or engine, an engine whose inputs/outputs are not the
            model's, a bad input array, an unknown reference, a negative tolerance.
    """
    if reference not in REFERENCES:
        raise EdgeError(f"reference '{reference}' is not one of {list(REFERENCES)}")
    if engine is not None and config is not None:
        raise EdgeError("give either an engine or build settings, not both (the engine is already built)")
    if iterations < 1:
        raise EdgeError(f"iterations must be at least 1, got {iterations}")
    proto = load_model_proto(model)
    if engine is None:
        engine = build(proto.SerializeToString(), config or BuilderConfig())
    elif not isinstance(engine, Engine):
        engine = load(engine)
    numerics, default_rtol, default_atol = default_tolerances(engine)
    for label, value in (("rtol", rtol), ("atol", atol)):
        values = value.values() if isinstance(value, Mapping) else [value]
        if any(v is not None and float(v) < 0 for v in values):
            raise EdgeError(f"tolerances must be non-negative ({label} {value})")
    output_names = [spec.name for spec in engine.outputs]
    for label, value in (("rtol", rtol), ("atol", atol), ("error statistic", error_stat)):
        unknown = [k for k in (value if isinstance(value, Mapping) else {}) if k and k not in output_names]
        if unknown:
            raise EdgeError(f"{label} for '{unknown[0]}': not an output of the engine ({output_names})")

    _check_interfaces(proto, engine)
    graph = _reference_graph(proto, engine, config)
    run_feeds = iteration_feeds(engine, iterations, inputs, feeds, shapes, seed)
    for feed in run_feeds:
        check_inputs(engine.inputs, feed)
    if expected is not None and layerwise:
        raise EdgeError("layerwise comparison runs the reference model; it cannot use saved outputs")
    notes = guessed_shape_notes(engine, run_feeds[0], set(inputs or {}) | set(feeds[0] if feeds else {}), shapes)

    references: list[dict[str, np.ndarray]] = []
    if expected is not None:
        name = expected_label
        references = [dict(item) for item in expected[: len(run_feeds)]]
    else:
        use_ort = reference == "onnxruntime" or (reference == "auto" and importlib.util.find_spec("onnxruntime") is not None)
        for index, feed in enumerate(run_feeds):
            keep_all = layerwise and index == 0
            name, values = _run_onnxruntime(proto, graph, feed, keep_all) if use_ort else _run_interpreter(graph, feed, keep_all)
            references.append(values)
        if not use_ort and reference == "auto":
            name += " (onnxruntime is not installed)"

    context = engine.create_context()
    tracker = None
    actuals: list[dict[str, np.ndarray]] = []
    for index, feed in enumerate(run_feeds):
        if layerwise and index == 0:
            tracker = _LayerTracker(graph, engine.graph, references[0], _per_output(rtol, "", default_rtol), _per_output(atol, "", default_atol))
            context.profiler = tracker.on_step
        with np.errstate(all="ignore"):
            actuals.append(context.run(feed))
        context.profiler = None
    rows = compare_outputs(actuals, references, name, per_output(rtol, default_rtol), per_output(atol, default_atol), per_output(error_stat, "elemwise"))
    return CompareResult(
        reference=name,
        engine=engine.name,
        numerics=numerics,
        rtol=float(_per_output(rtol, "", default_rtol)),
        atol=float(_per_output(atol, "", default_atol)),
        seed=seed,
        outputs=rows,
        layerwise=tracker.result() if tracker is not None else None,
        inputs={k: list(np.shape(v)) for k, v in run_feeds[0].items()},
        iterations=len(run_feeds),
        notes=notes,
        feeds=run_feeds,
        runs={"reference": [{k: v[k] for k in output_names} for v in references], "engine": actuals},
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
