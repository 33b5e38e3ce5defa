"""Saved inputs and outputs in Polygraphy's layouts, so data moves between the two tools.

Polygraphy writes JSON (``--save-inputs``, ``--save-outputs``) through its own encoder: an
array is ``{"array": <base64 of the .npy bytes>, "polygraphy_class": "ndarray"}`` (older files
use the key ``"__polygraphy_encoded_ndarray"``, newer output files wrap arrays in
``{"values": ..., "polygraphy_class": "LazyArray"}``). An inputs file is a list with one
``{name: array}`` per iteration; an outputs file is a ``RunResults``:
``{"lst": [[runner, [IterationResult, ...]], ...], "polygraphy_class": "RunResults"}`` with
``IterationResult = {"outputs": {name: array}, "runtime": s, "runner_name": runner}``.

``.npz`` is the alternative: one iteration's arrays under their names, or several under
``"<iteration>/<name>"``; an outputs .npz holds one runner's results. Arrays are read with
``allow_pickle=False`` in both formats: saved data is data, never code.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import InputError
from edge.fileio import read_arrays, write_atomic

__all__ = ["Iterations", "read_inputs", "read_outputs", "write_inputs", "write_outputs"]

Iterations = list[dict[str, np.ndarray]]
"""One ``{tensor name: array}`` per iteration."""

_CLASS = "polygraphy_class"
_LEGACY_ARRAY = "__polygraphy_encoded_ndarray"


def _encode_array(array: np.ndarray) -> dict[str, str]:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return {"array": base64.b64encode(buffer.getvalue()).decode("ascii"), _CLASS: "ndarray"}


def _decode(data: Any, where: str) -> Any:
    """Polygraphy JSON -> plain lists, dicts and arrays (classes other than arrays become dicts)."""
    if isinstance(data, list):
        return [_decode(item, where) for item in data]
    if not isinstance(data, dict):
        return data
    kind = data.get(_CLASS)
    if kind == "ndarray" or _LEGACY_ARRAY in data:
        try:
            raw = base64.b64decode(data["array"].encode("ascii"), validate=True)
            return np.load(io.BytesIO(raw), allow_pickle=False)
        except (KeyError, AttributeError, ValueError, OSError) as exc:
            raise InputError(f"{where}: an encoded array cannot be read ({exc})") from None
    if kind in ("LazyArray", "LazyNumpyArray"):
        return _decode(data.get("values"), where)
    return {key: _decode(value, where) for key, value in data.items() if key != _CLASS}


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"'{path}' cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"'{path}' is not JSON ({exc}); give a Polygraphy .json or an .npz file") from None


def _check_feed(item: Any, where: str) -> dict[str, np.ndarray]:
    if not isinstance(item, dict) or not all(isinstance(v, np.ndarray) for v in item.values()):
        raise InputError(f"{where} is not a mapping of tensor names to arrays")
    return item


def _npz_iterations(path: Path) -> Iterations:
    arrays = read_arrays(path, InputError)
    keyed = [key.partition("/") for key in arrays]
    if not all(sep and index.isdigit() for index, sep, _ in keyed):
        return [arrays]
    count = 1 + max(int(index) for index, _, _ in keyed)
    iterations: Iterations = [{} for _ in range(count)]
    for key, array in arrays.items():
        index, _, name = key.partition("/")
        iterations[int(index)][name] = array
    return iterations


def read_inputs(path: str | os.PathLike) -> Iterations:
    """Input feeds per iteration from a Polygraphy inputs JSON or an .npz."""
    target = Path(path)
    if target.suffix == ".npz":
        return _npz_iterations(target)
    data = _decode(_load_json(target), f"'{target}'")
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise InputError(f"'{target}' holds no input feeds (expected a list of {{name: array}}, as polygraphy --save-inputs writes)")
    return [_check_feed(item, f"'{target}' iteration {i}") for i, item in enumerate(data)]


def read_outputs(path: str | os.PathLike) -> dict[str, Iterations]:
    """Outputs per runner, each a list of iterations, from a Polygraphy RunResults JSON or an .npz."""
    target = Path(path)
    if target.suffix == ".npz":
        return {target.stem: _npz_iterations(target)}
    data = _decode(_load_json(target), f"'{target}'")
    runs = data.get("lst") if isinstance(data, dict) else None
    if not isinstance(runs, list) or not runs:
        raise InputError(f"'{target}' is not a Polygraphy RunResults file (no runner results under \"lst\")")
    results: dict[str, Iterations] = {}
    for entry in runs:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)):
            raise InputError(f"'{target}': a RunResults entry is not [runner, [iterations]]")
        runner, iterations = entry
        results[str(runner)] = [
            _check_feed(it.get("outputs") if isinstance(it, dict) else None, f"'{target}' runner '{runner}' iteration {i}")
            for i, it in enumerate(iterations)
        ]
    return results


def _npz_bytes(iterations: Sequence[Mapping[str, np.ndarray]]) -> bytes:
    flat = dict(iterations[0]) if len(iterations) == 1 else {f"{i}/{k}": v for i, it in enumerate(iterations) for k, v in it.items()}
    buffer = io.BytesIO()
    np.savez(buffer, **flat)
    return buffer.getvalue()


def write_inputs(path: str | os.PathLike, iterations: Sequence[Mapping[str, np.ndarray]]) -> None:
    """Write feeds per iteration as Polygraphy's inputs JSON, or as .npz by the suffix."""
    target = Path(path)
    if target.suffix == ".npz":
        write_atomic(target, _npz_bytes(iterations))
        return
    data = [{name: _encode_array(array) for name, array in feed.items()} for feed in iterations]
    write_atomic(target, json.dumps(data, indent=1).encode("utf-8"))


def write_outputs(
    path: str | os.PathLike, runs: Mapping[str, Sequence[Mapping[str, np.ndarray]]], runtimes: Mapping[str, Sequence[float]] | None = None
) -> None:
    """Write outputs per runner as a Polygraphy RunResults JSON (an .npz takes one runner)."""
    target = Path(path)
    if target.suffix == ".npz":
        if len(runs) != 1:
            raise InputError(f"'{target}': an .npz holds one runner's outputs, got {len(runs)} ({list(runs)}); use .json")
        write_atomic(target, _npz_bytes(next(iter(runs.values()))))
        return
    lst = []
    for runner, iterations in runs.items():
        times = list((runtimes or {}).get(runner, [])) + [None] * len(iterations)
        lst.append(
            [
                runner,
                [
                    {"outputs": {k: _encode_array(v) for k, v in it.items()}, "runtime": times[i], "runner_name": runner, _CLASS: "IterationResult"}
                    for i, it in enumerate(iterations)
                ],
            ]
        )
    write_atomic(target, json.dumps({"lst": lst, _CLASS: "RunResults"}, indent=1).encode("utf-8"))
