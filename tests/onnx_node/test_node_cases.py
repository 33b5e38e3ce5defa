"""ONNX's own backend node test cases run through the importer and the CPU interpreter.

Every case of ``onnx.backend.test.case.node.collect_testcases()`` becomes one pytest case
(id = case name); a case whose model uses an operator the CPU registry lacks is collected
as an explicit skip naming the missing operators, so the count is honest. Expected
failures come from every ``xfail_*.txt`` file beside this module (``case_name  # reason``),
applied strictly so a case that starts passing must be taken off its list. A summary test
prints passed / all generated cases and passed / cases run, and requires at least 98 % of
the cases run and 95 % of all generated cases (skips count as not passed) to pass. Sequence
inputs and outputs are lists in the data sets (``TensorSequence`` at run time), an empty
optional is None.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
from onnx import AttributeProto, GraphProto, TensorProto, numpy_helper

from edge.frontend import load_onnx
from edge.ir import TensorSequence
from edge.kernels import supported_ops
from edge.runtime.interpreter import run_graph

HERE = Path(__file__).parent
REQUIRED_PASS_RATE = 0.98
REQUIRED_SHARE_OF_GENERATED = 0.95


def _load_xfails() -> dict[str, str]:
    """``{case name: reason}`` from every xfail_*.txt; a line without a reason is an error."""
    xfails: dict[str, str] = {}
    for path in sorted(HERE.glob("xfail_*.txt")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, _, reason = line.partition("#")
            if not reason.strip():
                raise ValueError(f"{path.name}:{number}: xfail entry '{name.strip()}' has no '# reason'")
            xfails[name.strip()] = reason.strip()
    return xfails


@functools.cache
def _all_cases() -> dict[str, object]:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {case.name: case for case in collect_testcases()}


def _graph_ops(graph: GraphProto) -> set[tuple[str, str]]:
    ops = set()
    for node in graph.node:
        ops.add(("" if node.domain in ("", "ai.onnx") else node.domain, node.op_type))
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                ops |= _graph_ops(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    ops |= _graph_ops(sub)
    return ops


def _split_cases() -> tuple[list[str], dict[str, list[str]]]:
    """(names of cases every op of which is registered, {other case: its missing ops})."""
    known = supported_ops()
    runnable, skipped = [], {}
    for name, case in _all_cases().items():
        ops = _graph_ops(case.model.graph)
        missing = sorted(
            f"{domain}::{op}" if domain else op
            for domain, op in ops
            if not (op == "Constant" and not domain) and op not in known.get(domain, set())
        )
        if missing:
            skipped[name] = missing
        else:
            runnable.append(name)
    return runnable, skipped


RUNNABLE, SKIPPED = _split_cases()
XFAILS = _load_xfails()


def _array(value: object) -> np.ndarray:
    if isinstance(value, TensorProto):
        return numpy_helper.to_array(value)
    return np.asarray(value)


def _feed(value: object) -> np.ndarray | TensorSequence | None:
    """A data set's input as the runtime takes it: a list is a sequence, None an empty optional."""
    if value is None:
        return None
    if isinstance(value, list):
        return TensorSequence(_array(v) for v in value)
    return _array(value)


def _compare(got: object, want: object, where: str, rtol: float, atol: float) -> None:
    """Assert one output equals its expected value: a tensor (dtype, shape, values, NaN
    positions), a sequence element by element, or an empty optional."""
    if want is None:
        assert got is None, f"{where}: expected an empty optional, got {got!r}"
        return
    if isinstance(want, list):
        assert isinstance(got, TensorSequence), f"{where}: expected a sequence, got {type(got).__name__}"
        assert len(got) == len(want), f"{where}: sequence of {len(got)}, expected {len(want)}"
        for index, (item, expected) in enumerate(zip(got, want)):
            _compare(item, expected, f"{where} element {index}", rtol, atol)
        return
    want = _array(want)
    assert isinstance(got, np.ndarray), f"{where}: expected a tensor, got {type(got).__name__}"
    assert got.dtype == want.dtype, f"{where}: dtype {got.dtype}, expected {want.dtype}"
    assert got.shape == want.shape, f"{where}: shape {got.shape}, expected {want.shape}"
    if want.dtype.kind == "V":  # ml_dtypes types (bfloat16, float8, int4): compare as float32
        got, want = got.astype(np.float32), want.astype(np.float32)
    if want.dtype.kind in "fc":
        nan_got, nan_want = np.isnan(got), np.isnan(want)
        assert np.array_equal(nan_got, nan_want), f"{where}: NaN positions differ"
        np.testing.assert_allclose(got[~nan_got], want[~nan_want], rtol=rtol, atol=atol, err_msg=where)
    else:
        np.testing.assert_array_equal(got, want, err_msg=where)


def _check_case(name: str) -> None:
    """Import the case's model, run every data set, compare outputs; raises AssertionError."""
    case = _all_cases()[name]
    graph = load_onnx(case.model)
    for index, (inputs, expected) in enumerate(case.data_sets):
        names = [v.name for v in graph.inputs]
        feeds = {n: _feed(x) for n, x in zip(names, inputs)}
        outputs = run_graph(graph, feeds)
        for value, want in zip(graph.outputs, expected):
            _compare(outputs[value.name], want, f"{name} data set {index} output '{value.name}'", case.rtol, case.atol)


@functools.cache
def _outcome(name: str) -> str | None:
    """None when the case passes, else the first line of why it failed (cached per run)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _check_case(name)
    except Exception as exc:  # any failure, assertion or kernel error, counts against the case
        text = str(exc).strip() or type(exc).__name__
        return f"{type(exc).__name__}: {text.splitlines()[0][:400]}"
    return None


def _params() -> list:
    params = []
    for name in _all_cases():
        if name in SKIPPED:
            marks = [pytest.mark.skip(reason=f"no CPU kernel for {', '.join(SKIPPED[name])}")]
        else:
            marks = [pytest.mark.xfail(reason=XFAILS[name], strict=True)] if name in XFAILS else []
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@pytest.mark.parametrize("case_name", _params())
def test_node_case(case_name: str) -> None:
    failure = _outcome(case_name)
    assert failure is None, failure


def test_node_case_summary() -> None:
    failed = {name: why for name in RUNNABLE if (why := _outcome(name)) is not None}
    run = len(RUNNABLE)
    generated = len(_all_cases())
    passed = run - len(failed)
    rate = passed / run if run else 0.0
    print(
        f"\nONNX node cases: {passed} passed / {generated} generated ({passed / generated:.1%}); "
        f"{passed} / {run} run ({rate:.1%}); {len(SKIPPED)} skipped (unsupported ops)"
    )
    missing: dict[str, int] = {}
    for ops in SKIPPED.values():
        for op in ops:
            missing[op] = missing.get(op, 0) + 1
    print("  skipped for: " + ", ".join(f"{op} x{n}" for op, n in sorted(missing.items(), key=lambda kv: -kv[1])))
    unlisted = sorted(set(failed) - set(XFAILS))
    for name in unlisted:
        print(f"  unlisted failure {name}: {failed[name]}")
    unknown = sorted(name for name in XFAILS if name not in _all_cases())
    assert not unknown, f"xfail entries naming no ONNX node case: {unknown}"
    assert rate >= REQUIRED_PASS_RATE, f"pass rate {rate:.1%} below {REQUIRED_PASS_RATE:.0%}"
    share = passed / generated
    assert share >= REQUIRED_SHARE_OF_GENERATED, f"{share:.1%} of all generated cases pass, below {REQUIRED_SHARE_OF_GENERATED:.0%}"
