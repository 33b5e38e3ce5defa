"""Build-time tactic selection: time each applicable tactic of a step on the target, keep the fastest.

For every kernel step whose kernel registers ``tactics``, the candidates are run on random
inputs of the step's shapes (weights as they are) by the step's backend, checked against the
CPU kernel's result on the same inputs (a device backend's float steps; else against the
heuristic's result), and timed with the backend's clock (median of a few calls after a
warm-up). The winner goes into the plan step. A :class:`TimingCache` keyed by device and op
signature (op, attributes, shapes, dtypes, precision, layout) makes a rebuild time nothing;
trtexec's ``--timingCacheFile`` works the same way. Optimization level 0 takes the heuristic.

An INT8 layer on a device backend is also timed with its FP16 kernel's tactics, and runs
FP16 where that is faster: as in TensorRT, a build's INT8 permits INT8 kernels, it does not
oblige a layer to the slower one. A layer pinned by ``--layer-precisions`` keeps its precision.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import EdgeError, KernelError
from edge.fileio import write_atomic
from edge.ir import Graph, Node
from edge.kernels.backend import Backend, RunState, StepSpec, TensorInfo
from edge.kernels.registry import Kernel, resolve
from edge.kernels.tactics import Tactic
from edge.plan.int8_storage import CODES_META, likely_codes
from edge.plan.model import ExecutionPlan
from edge.precision import FASTER_IN_FP16, PINNED
from edge.quant.numerics import quantizer_of

__all__ = ["CACHE_FORMAT", "TimingCache", "TimingCacheError", "op_signature", "select_tactics"]

CACHE_FORMAT = 1
REPEATS = {1: 2, 2: 3, 3: 5, 4: 7, 5: 11}
"""Timed calls per candidate by optimization level (after one warm-up call)."""
SLOWEST = 5
"""Steps whose tactic choice took longest, kept in the build record."""


class TimingCacheError(EdgeError):
    """A timing cache file that cannot be read as one (not JSON, wrong structure)."""


class TimingCache:
    """Measured seconds per (backend, op signature, tactic), for the devices it was made on.

    Attributes:
        notes: one-line notes on parts of a loaded file that were ignored (another device or
            format version), for the builder to print.
        timed: how many candidate timings this cache was asked to record (a warm rebuild
            records none).
    """

    def __init__(self) -> None:
        self.devices: dict[str, dict[str, Any]] = {}
        self.entries: dict[str, dict[str, dict[str, float]]] = {}
        self.notes: list[str] = []
        self.timed = 0
        self._stored: tuple[dict[str, Any], dict[str, Any]] = ({}, {})  # a loaded file's, matched per device

    # -- persistence ----------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> TimingCache:
        """Read ``path`` (a missing file is an empty cache that ``save`` will create)."""
        cache = cls()
        target = Path(path)
        if not target.exists():
            return cache
        if not target.is_file():
            raise TimingCacheError(f"timing cache '{target}' is not a regular file")
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
            version = data["format_version"]
            devices = data["devices"]
            entries = data["entries"]
            if not isinstance(devices, dict) or not isinstance(entries, dict):
                raise TypeError("devices/entries are not objects")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise TimingCacheError(f"timing cache '{target}' is corrupted ({type(exc).__name__}); delete it to rebuild it") from None
        if version != CACHE_FORMAT:
            cache.notes.append(f"timing cache '{target}' has format {version}, not {CACHE_FORMAT}: ignored, timing anew")
            return cache
        cache._stored = (devices, entries)
        return cache

    def save(self, path: str | os.PathLike) -> None:
        """Write the cache as JSON, atomically."""
        devices, entries = dict(self.devices), {k: dict(v) for k, v in self.entries.items()}
        stored_devices, stored_entries = self._stored
        for name, signature in stored_devices.items():  # keep other devices' timings
            if name not in devices:
                devices[name] = signature
                entries[name] = stored_entries.get(name, {})
        entries = {name: {sig: {t: (None if math.isinf(v) else v) for t, v in times.items()} for sig, times in table.items()}
                   for name, table in entries.items()}  # a rejected tactic is null: JSON has no infinity
        document = {"format_version": CACHE_FORMAT, "devices": devices, "entries": entries}
        write_atomic(path, (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8"))

    def _table(self, backend: Backend) -> dict[str, dict[str, float]]:
        """This device's entries, adopting the loaded file's when its signature matches."""
        key = _device_key(backend)
        if key not in self.devices:
            self.devices[key] = backend.device_signature()
            stored_devices, stored_entries = self._stored
            stored = stored_entries.get(key, {}) if stored_devices.get(key) == self.devices[key] else {}
            self.entries[key] = {sig: {t: (math.inf if v is None else v) for t, v in times.items()} for sig, times in stored.items()}
            if key not in stored_devices and stored_devices:
                self.notes.append(f"timing cache holds no timings for this {backend.name} device: ignored its other entries")
        return self.entries[key]

    # -- lookups ----------------------------------------------------------------------------
    def lookup(self, backend: Backend, signature: str, tactic: str) -> float | None:
        return self._table(backend).get(signature, {}).get(tactic)

    def record(self, backend: Backend, signature: str, tactic: str, seconds: float) -> None:
        self.timed += 1
        self._table(backend).setdefault(signature, {})[tactic] = seconds


def _device_key(backend: Backend) -> str:
    signature = json.dumps(backend.device_signature(), sort_keys=True)
    return f"{backend.name}:{hashlib.sha256(signature.encode()).hexdigest()[:16]}"


def op_signature(spec: StepSpec) -> str:
    """What a step's timing depends on: op, attributes, shapes/dtypes (constness), precision, layout."""
    node = spec.node
    attrs = {k: _attr_key(v) for k, v in sorted(node.attrs.items())}
    tensors = [None if t is None else [_dtype_key(t), list(t.shape or ()), t.const is not None] for t in spec.inputs]
    outputs = [[_dtype_key(t), list(t.shape or ())] for t in spec.outputs]
    key = {"op": f"{node.domain}::{node.op_type}", "attrs": attrs, "in": tensors, "out": outputs,
           "precision": spec.precision, "layout": spec.layout}
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _dtype_key(info: TensorInfo) -> str | None:
    return None if info.dtype is None else np.dtype(info.dtype).str


def _attr_key(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"tensor": [value.dtype.str, list(value.shape)]}
    if isinstance(value, Graph):
        return {"graph": value.name}
    if isinstance(value, (list, tuple)):
        return [_attr_key(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def select_tactics(graph: Graph, plan: ExecutionPlan, level: int, cache: TimingCache) -> dict[str, Any]:
    """Choose a tactic for every plan step whose kernel offers some; returns the build record
    (counts, notes, the INT8 layers that run FP16 because it is faster, and the ``SLOWEST``
    timed steps with the seconds each took to choose, so a slow build names where its time
    went) and writes ``step.tactic`` (and, for those layers, their precision)."""
    from edge.runtime.interpreter import Schedule  # the runtime's view of each step (its tensors)

    counts = {"heuristic": 0, "timed": 0, "cached": 0, "rejected": 0}
    choosing: list[dict[str, Any]] = []
    faster_in_fp16: list[dict[str, Any]] = []
    before = cache.timed
    outputs = {id(v) for v in graph.outputs}
    for step in Schedule(graph, plan=plan).steps:
        if step.plan.kind != "kernel":
            continue
        spec = step.spec
        kernel = resolve(spec.node, spec.opset, step.plan.backend, spec.precision)
        if not isinstance(kernel, Kernel) or kernel.tactics is None:
            continue
        candidates = _candidates(kernel, spec, level)
        if not candidates:
            continue
        static = all(
            t is None or (t.dtype is not None and t.shape is not None and all(isinstance(d, int) for d in t.shape))
            for t in [*spec.inputs, *spec.outputs]
        )
        if level == 0 or len(candidates) == 1 or not static:
            step.plan.tactic = candidates[0]
            counts["heuristic"] += 1
            continue
        began = time.perf_counter()
        timed = _as_likely_stored(spec, kernel, step.backend, outputs)
        chosen, source, seconds = _fastest(step.backend, timed, candidates, REPEATS[level], cache)
        step.plan.tactic = chosen
        counts[source] += 1
        switched = _settle_fp16_if_faster(step, level, seconds, cache)
        if switched is not None:
            faster_in_fp16.append(switched)
        choosing.append({"node": spec.node.name, "op": spec.node.op_type, "candidates": len(candidates),
                         "seconds": round(time.perf_counter() - began, 3)})
    counts["timings"] = cache.timed - before
    slowest = sorted(choosing, key=lambda entry: -entry["seconds"])[:SLOWEST]
    return {**counts, "level": level, "notes": list(cache.notes), "seconds": round(sum(e["seconds"] for e in choosing), 3),
            "slowest": slowest, "int8_faster_in_fp16": faster_in_fp16}


def _candidates(kernel: Kernel, spec: StepSpec, level: int) -> list[Tactic]:
    """The kernel's tactics for ``spec`` that optimization ``level`` times."""
    assert kernel.tactics is not None
    return [c for c in kernel.tactics(spec) if level == 0 or c.params.get("min_level", 1) <= level]


def _settle_fp16_if_faster(step: Any, level: int, int8_seconds: float, cache: TimingCache) -> dict[str, Any] | None:
    """Time an INT8 device step's FP16 alternative and, where it is faster, make the step (and
    its layer) FP16; returns the record of the switch, or None (no alternative, slower, or it
    could not be timed: the INT8 choice stands, noted, and never fails the build)."""
    spec = step.spec
    wider = _fp16_instead(step.backend, spec, step.plan.backend, level)
    if wider is None:
        return None
    kernel, fp16_spec, candidates = wider
    try:
        with _layer_precision(spec.node, "fp16"):
            tactic, _, seconds = _fastest(step.backend, fp16_spec, candidates, REPEATS[level], cache)
    except Exception as exc:  # noqa: BLE001  (a library alternative that cannot serve the step)
        cache.notes.append(f"node '{spec.node.name}': its FP16 alternative could not be timed ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); it stays INT8")
        return None
    if seconds >= int8_seconds:
        return None
    spec.node.meta["precision"] = step.plan.precision = "fp16"
    spec.node.meta["precision_note"] = FASTER_IN_FP16
    step.plan.kernel, step.plan.tactic = kernel.name, tactic
    return {"node": spec.node.name, "int8_ms": round(int8_seconds * 1e3, 4), "fp16_ms": round(seconds * 1e3, 4)}


def _fp16_instead(backend: Backend, spec: StepSpec, backend_name: str, level: int) -> tuple[Kernel, StepSpec, list[Tactic]] | None:
    """(FP16 kernel, its step, its tactics) an INT8 layer on a device backend may run instead,
    or None: not INT8, pinned, on the host (the CPU's INT8 is the board's emulation, kept as
    built) or no FP16 kernel with tactics."""
    node = spec.node
    if spec.precision != "int8" or backend.memory_space == "host" or node.meta.get("precision_note") == PINNED:
        return None
    with _layer_precision(node, "fp16"):
        kernel = resolve(node, spec.opset, backend_name, "fp16")
        if not isinstance(kernel, Kernel) or kernel.tactics is None:
            return None
        fp16_spec = dataclasses.replace(spec, precision="fp16", tactic=None)
        candidates = _candidates(kernel, fp16_spec, level)
    return (kernel, fp16_spec, candidates) if candidates else None


@contextmanager
def _layer_precision(node: Node, precision: str) -> Iterator[None]:
    """``node`` at ``precision`` for the block (kernels read its precision for their
    conversions), then back as it was."""
    kept = node.meta.get("precision")
    node.meta["precision"] = precision
    try:
        yield
    finally:
        node.meta["precision"] = kept


def _fastest(backend: Backend, spec: StepSpec, candidates: list[Tactic], repeat: int, cache: TimingCache) -> tuple[Tactic, str, float]:
    """The candidate with the least median time, how it was found ("cached" when every time
    came from the cache) and its seconds (infinite when every candidate was rejected)."""
    signature = op_signature(spec)
    known = {c.name: cache.lookup(backend, signature, c.name) for c in candidates}
    if all(t is not None for t in known.values()):
        best = min(candidates, key=lambda c: known[c.name])  # type: ignore[arg-type,return-value]
        return best, "cached", known[best.name]  # type: ignore[return-value]
    state = RunState({backend.name: backend.new_state()})
    rng = np.random.default_rng(0)
    device = backend.memory_space != "host"
    host = [None if t is None else _random(t, rng) for t in spec.inputs]
    _on_grids(spec, host, rng)
    inputs = [None if t is None or (t.const is not None and device) else _stage(backend, t, a, state) for t, a in zip(spec.inputs, host)]
    outputs = [_placed(backend, t) for t in spec.outputs] if device else None
    reference = _cpu_reference(spec, host) if device else None
    best, best_time, rejected = candidates[0], math.inf, 0
    for candidate in candidates:
        seconds = known[candidate.name]
        if seconds is None:
            try:
                launch = backend.prepare(dataclasses.replace(spec, tactic=candidate))
                results = [backend.copy_out(r, state) for r in launch(list(inputs), outputs, state)]
            except Exception:  # a library tactic that cannot serve this step (the heuristic's choice must)
                if candidate is candidates[0]:
                    raise
                cache.record(backend, signature, candidate.name, math.inf)
                rejected += 1
                continue
            if reference is None:
                reference = results
            elif not all(_close(a, b, step) for a, b, step in zip(results, reference, _grid_steps(spec))):
                seconds = math.inf  # a wrong tactic never wins
                rejected += 1
            if seconds is None:
                seconds = float(np.median(backend.time_launch(launch, list(inputs), outputs, state, repeat)))
            cache.record(backend, signature, candidate.name, seconds)
        if seconds < best_time:
            best, best_time = candidate, seconds
    if best_time == math.inf and device and reference is not None and rejected == len(candidates):
        raise KernelError(f"node '{spec.node.name}' ({spec.node.op_type}): none of its {len(candidates)} {backend.name} tactics "
                          f"computes what the CPU reference does on random inputs of its shapes")
    return best, "rejected" if rejected and best_time == math.inf else "timed", best_time


def _cpu_reference(spec: StepSpec, host: list[np.ndarray | None]) -> list[np.ndarray] | None:
    """The CPU kernel's outputs on ``host``, what a device tactic must compute; None where
    the two are not meant to agree to rounding (INT8 arithmetic and grids: one
    quantization step apart at most, checked by the INT8 tests) or no CPU kernel exists."""
    from edge.kernels.backend import get_backend

    cpu = get_backend("cpu")
    if spec.precision == "int8" or cpu.converts(spec.node):
        return None
    state = RunState({cpu.name: cpu.new_state()})
    try:
        launch = cpu.prepare(dataclasses.replace(spec, tactic=None, device="cpu"))
        return [np.asarray(cpu.copy_out(r, state)) for r in launch(list(host), None, state)]
    except Exception:  # noqa: BLE001  (no CPU kernel for these random inputs: the heuristic's result is the reference)
        return None


def _as_likely_stored(spec: StepSpec, kernel: Kernel, backend: Backend, graph_outputs: set[int]) -> StepSpec:
    """The step as an INT8 layer's integer kernel will likely run it: its tensors between INT8
    layers stored as INT8 codes (``edge.plan.int8_storage``, decided after this), so that its
    time, set against its FP16 alternative's, is the one the engine gets."""
    positions = tuple(kernel.meta.get(CODES_META, ()))
    if spec.precision != "int8" or not positions or backend.memory_space == "host":
        return spec
    inputs, output = likely_codes(spec.node, positions, graph_outputs)
    if not inputs and not output:
        return spec
    codes = np.dtype(np.int8)
    ins = [dataclasses.replace(t, dtype=codes) if i in inputs and t is not None else t for i, t in enumerate(spec.inputs)]
    outs = [dataclasses.replace(spec.outputs[0], dtype=codes), *spec.outputs[1:]] if output else list(spec.outputs)
    return dataclasses.replace(spec, inputs=ins, outputs=outs)


def _on_grids(spec: StepSpec, host: list[np.ndarray | None], rng: np.random.Generator) -> None:
    """Put the random inputs an INT8 layer reads as tensors written as INT8 on their grids, in
    place, as every run gives them (tactics that rely on it then agree); inputs stored as INT8
    codes get random codes."""
    if spec.precision != "int8":
        return
    for index, value in enumerate(spec.node.inputs):
        quantizer = None if value is None or value.is_const or not value.meta.get("int8_output") else quantizer_of(value.meta)
        if quantizer is None or host[index] is None:
            continue
        if host[index].dtype == np.int8:
            host[index] = rng.integers(quantizer.low, quantizer.high + 1, host[index].shape).astype(np.int8)
        elif host[index].dtype.kind == "f":
            host[index] = quantizer(host[index].astype(np.float32)).astype(host[index].dtype)


def _random(info: TensorInfo, rng: np.random.Generator) -> np.ndarray:
    """A random input of ``info``'s shape (its value when constant)."""
    if info.const is not None:
        return info.const
    if info.dtype.kind == "f":
        return rng.standard_normal(info.shape).astype(info.dtype)
    return np.zeros(info.shape, info.dtype)


def _stage(backend: Backend, info: TensorInfo, array: np.ndarray, state: RunState) -> Any:
    """``array`` (an input of ``info``'s shape) placed in the backend's memory."""
    if backend.memory_space == "host":
        return array
    return backend.copy_in(_placed(backend, TensorInfo(info.name, array.dtype, array.shape)), array, state)


def _placed(backend: Backend, info: TensorInfo) -> Any:
    """An output buffer of ``info``'s shape in the backend's memory."""
    shape = tuple(info.shape or ())
    buffer = backend.allocate(max(int(np.prod(shape, dtype=np.int64)) * info.dtype.itemsize, 1))
    return backend.view(buffer, 0, shape, info.dtype)


def _close(a: np.ndarray, b: np.ndarray, grid_step: float = 0.0) -> bool:
    """Tactics agree when they differ by float rounding only (relative to the output's scale),
    plus one step of the INT8 grid an INT8 layer writes the output on (``grid_step``)."""
    if a.shape != b.shape:
        return False
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    scale = max(float(np.max(np.abs(b64), initial=0.0)), 1e-6)
    tolerance = 1e-2 if a.dtype == np.float16 else 1e-4
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, which is never close
        return bool(np.all(np.abs(a64 - b64) <= tolerance * scale + grid_step))


def _grid_steps(spec: StepSpec) -> list[float]:
    """Per output, the step of its INT8 grid where an INT8 layer writes it as INT8 (one code
    where it is stored as codes), else 0: one tactic may requantize a value to one side of a
    rounding boundary and another leave it unrounded, or round it to the other side (see
    ``edge.kernels.cuda.cudnn_int8``)."""
    if spec.precision != "int8":
        return [0.0] * len(spec.outputs)
    return [1.0 if np.dtype(info.dtype) == np.int8  # stored as INT8 codes: one code
            else float(q.scale) if value.meta.get("int8_output") and (q := quantizer_of(value.meta)) is not None else 0.0
            for value, info in zip(spec.node.outputs, spec.outputs)]
