"""Calibration data: a folder of .npy / .npz files cut into batches of the model's input shapes.

Layout (samples stacked along axis 0, files read in name order and concatenated):

- ``NAME.npz``: arrays keyed by input name, e.g. ``{"image": (N, 3, 224, 224)}``.
- ``NAME.npy``: one array; for a one-input model any file name, otherwise the file name (up
  to the first ``.``) must be the input's name (``image.npy``, ``mask.0001.npy``).

Each input's samples are cut into batches of the model's batch size (its static dim 0, or 1
when that dim is symbolic); the other dims must match the model where they are static.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge.errors import CalibrationError
from edge.fileio import read_arrays
from edge.ir import Value

__all__ = ["load_calibration_data"]


def _stem(path: Path) -> str:
    return path.name.split(".", 1)[0]


def _read(folder: Path, inputs: Sequence[Value]) -> dict[str, list[tuple[Path, np.ndarray]]]:
    files = sorted(p for p in folder.iterdir() if p.suffix in (".npy", ".npz") and not p.name.startswith("."))
    if not files:
        raise CalibrationError(
            f"calibration data folder '{folder}' holds no .npy or .npz files "
            "(save preprocessed input tensors there, samples stacked along axis 0)"
        )
    names = [v.name for v in inputs]
    found: dict[str, list[tuple[Path, np.ndarray]]] = {name: [] for name in names}
    for path in files:
        arrays = read_arrays(path, CalibrationError, mmap=True)
        if path.suffix == ".npy":
            arrays = {names[0] if len(names) == 1 else _stem(path): arrays[""]}
        for key, array in arrays.items():
            if key not in found:
                raise CalibrationError(f"calibration file '{path}' holds '{key}', which is not a model input {names}")
            found[key].append((path, array))
    missing = [name for name, arrays in found.items() if not arrays]
    if missing:
        raise CalibrationError(f"calibration data in '{folder}' has no samples for input '{missing[0]}' (inputs: {names})")
    return found


def _check(value: Value, path: Path, array: np.ndarray) -> None:
    if array.dtype != value.dtype:
        raise CalibrationError(f"calibration file '{path}': input '{value.name}' has dtype {array.dtype}, the model expects {value.dtype}")
    shape = value.shape
    if shape is None:
        return
    expected = "x".join(str(d) if isinstance(d, int) else "?" for d in shape)
    actual = "x".join(map(str, array.shape))
    if array.ndim != len(shape) or any(isinstance(d, int) and d != a for d, a in zip(shape[1:], array.shape[1:])):
        raise CalibrationError(
            f"calibration file '{path}': input '{value.name}' has shape {actual}, the model expects {expected} "
            "(samples stacked along axis 0)"
        )


def load_calibration_data(
    folder: str | os.PathLike, inputs: Sequence[Value], max_batches: int | None = None
) -> list[list[np.ndarray]]:
    """Batches of calibration inputs, each a list in ``inputs`` order.

    Raises:
        CalibrationError: the folder is missing or empty, a file is unreadable, names an
            unknown input, or has the wrong dtype or shape; inputs disagree on the sample
            count; there are fewer samples than one batch.
    """
    path = Path(folder)
    if not path.is_dir():
        raise CalibrationError(f"calibration data folder '{path}' does not exist")
    values = list(inputs)
    found = _read(path, values)
    stacked: list[np.ndarray] = []
    for value in values:
        for file, array in found[value.name]:
            _check(value, file, array)
        arrays = [a for _, a in found[value.name]]
        stacked.append(arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0))
    counts = {v.name: a.shape[0] for v, a in zip(values, stacked)}
    if len(set(counts.values())) > 1:
        raise CalibrationError(f"calibration inputs disagree on the number of samples: {counts}")
    batch = next((v.shape[0] for v in values if v.shape and isinstance(v.shape[0], int)), 1)
    total = next(iter(counts.values()))
    if total < batch:
        raise CalibrationError(f"calibration data in '{path}' has {total} samples, fewer than one batch of {batch}")
    count = total // batch if max_batches is None else min(total // batch, max_batches)
    return [
        [np.ascontiguousarray(a[i * batch : (i + 1) * batch]) for a in stacked]
        for i in range(count)
    ]
