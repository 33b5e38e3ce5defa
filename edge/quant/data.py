"""Calibration data, read a batch at a time: a folder of arrays or images, or a Python callable.

- A folder of ``.npy`` / ``.npz`` files (samples stacked along axis 0, files read in name
  order and concatenated): ``NAME.npz`` holds arrays keyed by input name; ``NAME.npy`` one
  array, for a one-input model under any name, else named after its input up to the first
  ``.`` (``image.npy``, ``mask.0001.npy``). Files are memory-mapped and checked up front.
- A folder of ``.jpg`` / ``.jpeg`` / ``.png`` images for a one-input image model, decoded and
  preprocessed per batch (``edge.quant.images``).
- A callable (``module:function`` or ``path/file.py:function`` on the command line) returning
  an iterable of batches, each an array (one-input models), a list in input order or a dict
  keyed by input name. It is called once per calibration pass.

Folders are cut into batches of the model's batch size: its static dim 0, else the batch
asked for (``--calib-batch``, 1 by default). Only the batch being run is ever in memory.
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from edge.errors import CalibrationError
from edge.fileio import read_arrays
from edge.ir import Value

__all__ = ["ARRAY_SUFFIXES", "CalibrationData", "CalibrationSource", "load_calibration_data", "model_batch"]

ARRAY_SUFFIXES = (".npy", ".npz")

CalibrationSource = Union[str, os.PathLike, Callable[[], Iterable[Any]]]
"""A folder of arrays or images, a ``module:function`` spec, or a callable giving batches."""


class CalibrationData(abc.ABC):
    """Calibration batches in ``inputs`` order, produced on demand (iterable any number of
    times). Sources that know their batch count are also ``Sized``."""

    batch: int | None = None
    """Samples per batch, None when the source decides (a callable)."""

    def __init__(self, inputs: Sequence[Value], max_batches: int | None) -> None:
        self.inputs = list(inputs)
        self.max_batches = max_batches

    @abc.abstractmethod
    def __iter__(self) -> Iterator[list[np.ndarray]]:
        """Read and yield one batch at a time."""


class SampleData(CalibrationData):
    """A source of numbered samples (arrays or images) cut into batches of ``batch``."""

    def __init__(
        self, inputs: Sequence[Value], samples: int, read: Callable[[int, int], list[np.ndarray]], where: str, max_batches: int | None
    ) -> None:
        super().__init__(inputs, max_batches)
        self.samples = samples
        self.read = read
        """``read(start, stop)``: samples ``[start, stop)`` of every input, in input order."""
        self.where = where
        self.batch = 1

    def with_batch(self, batch: int) -> SampleData:
        """This data cut into batches of ``batch`` samples.

        Raises:
            CalibrationError: fewer samples than one batch.
        """
        if self.samples < batch:
            raise CalibrationError(f"calibration data in {self.where} has {self.samples} samples, fewer than one batch of {batch}")
        data = SampleData(self.inputs, self.samples, self.read, self.where, self.max_batches)
        data.batch = batch
        return data

    def __len__(self) -> int:
        count = self.samples // self.batch
        return count if self.max_batches is None else min(count, self.max_batches)

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        for index in range(len(self)):
            yield self.read(index * self.batch, (index + 1) * self.batch)


class CallableData(CalibrationData):
    """Batches produced by a user's callable, checked against the model as they come."""

    def __init__(self, inputs: Sequence[Value], produce: Callable[[], Iterable[Any]], name: str, max_batches: int | None) -> None:
        super().__init__(inputs, max_batches)
        self.produce = produce
        self.name = name

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        try:
            batches = iter(self.produce())
        except Exception as exc:  # the user's code: report it in one line
            raise CalibrationError(f"calibration callable '{self.name}' failed: {type(exc).__name__}: {exc}") from None
        for number, batch in enumerate(batches, start=1):
            if self.max_batches is not None and number > self.max_batches:
                return
            arrays = self._arrays(batch, number)
            for value, array in zip(self.inputs, arrays):
                check_array(value, f"batch {number} of '{self.name}'", array, batched=True)
            yield arrays

    def _arrays(self, batch: Any, number: int) -> list[np.ndarray]:
        names = [v.name for v in self.inputs]
        if isinstance(batch, Mapping):
            missing = [n for n in names if n not in batch]
            if missing:
                raise CalibrationError(f"batch {number} of '{self.name}' has no input '{missing[0]}' (inputs: {names})")
            return [np.asarray(batch[n]) for n in names]
        if isinstance(batch, (list, tuple)):
            if len(batch) != len(names):
                raise CalibrationError(f"batch {number} of '{self.name}' holds {len(batch)} arrays, the model has {len(names)} inputs {names}")
            return [np.asarray(a) for a in batch]
        if len(names) != 1:
            raise CalibrationError(f"batch {number} of '{self.name}' is one array, the model has inputs {names}: give a dict by name")
        return [np.asarray(batch)]


def model_batch(inputs: Sequence[Value]) -> int | None:
    """The model's static batch size (dim 0 of its inputs), None when it is symbolic."""
    return next((v.shape[0] for v in inputs if v.shape and isinstance(v.shape[0], int)), None)


def _describe(shape: Sequence[Any]) -> str:
    return "x".join(str(d) if isinstance(d, int) else "?" for d in shape)


def check_array(value: Value, where: str, array: np.ndarray, batched: bool = False) -> None:
    """Raise a CalibrationError naming ``where`` unless ``array`` fits input ``value``
    (dtype; static dims, dim 0 too when ``batched`` and the batch is static)."""
    if array.dtype != value.dtype:
        raise CalibrationError(f"calibration {where}: input '{value.name}' has dtype {array.dtype}, the model expects {value.dtype}")
    shape = value.shape
    if shape is None:
        return
    dims = list(zip(shape, array.shape)) if batched else list(zip(shape[1:], array.shape[1:]))
    if array.ndim != len(shape) or any(isinstance(d, int) and d != a for d, a in dims):
        raise CalibrationError(
            f"calibration {where}: input '{value.name}' has shape {_describe(array.shape)}, the model expects {_describe(shape)} "
            "(samples stacked along axis 0)"
        )


def _stem(path: Path) -> str:
    return path.name.split(".", 1)[0]


def _array_files(folder: Path, files: list[Path], inputs: Sequence[Value]) -> dict[str, list[tuple[Path, np.ndarray]]]:
    names = [v.name for v in inputs]
    found: dict[str, list[tuple[Path, np.ndarray]]] = {name: [] for name in names}
    for path in files:
        arrays = read_arrays(path, CalibrationError, mmap=True)
        if path.suffix == ".npy":
            arrays = {names[0] if len(names) == 1 else _stem(path): arrays[""]}
        for key, array in arrays.items():
            if key not in found:
                raise CalibrationError(f"calibration file '{path}' holds '{key}', which is not a model input {names}")
            check_array(next(v for v in inputs if v.name == key), f"file '{path}'", array)
            found[key].append((path, array))
    missing = [name for name, arrays in found.items() if not arrays]
    if missing:
        raise CalibrationError(f"calibration data in '{folder}' has no samples for input '{missing[0]}' (inputs: {names})")
    return found


def _array_data(folder: Path, files: list[Path], inputs: Sequence[Value], max_batches: int | None) -> SampleData:
    found = _array_files(folder, files, inputs)
    per_input = [[array for _, array in found[v.name]] for v in inputs]
    counts = {v.name: sum(len(a) for a in arrays) for v, arrays in zip(inputs, per_input)}
    if len(set(counts.values())) > 1:
        raise CalibrationError(f"calibration inputs disagree on the number of samples: {counts}")
    starts = [np.cumsum([0] + [len(a) for a in arrays]) for arrays in per_input]

    def read(start: int, stop: int) -> list[np.ndarray]:
        batch = []
        for arrays, offsets in zip(per_input, starts):
            pieces = [
                a[max(start - lo, 0) : min(stop - lo, len(a))] for a, lo in zip(arrays, offsets[:-1]) if lo < stop and lo + len(a) > start
            ]
            batch.append(np.ascontiguousarray(pieces[0] if len(pieces) == 1 else np.concatenate(pieces)))
        return batch

    return SampleData(inputs, next(iter(counts.values())), read, f"'{folder}'", max_batches)


def _callable(spec: str) -> Callable[[], Iterable[Any]] | None:
    """The function a ``module:function`` / ``file.py:function`` spec names, or None when
    ``spec`` is no such spec (a folder path)."""
    module_name, sep, function = spec.rpartition(":")
    if not sep or not function.isidentifier() or not module_name or Path(spec).exists():
        return None
    try:
        if module_name.endswith(".py"):
            location = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            if location is None or location.loader is None or not Path(module_name).is_file():
                raise CalibrationError(f"calibration callable '{spec}': file '{module_name}' does not exist")
            module = importlib.util.module_from_spec(location)
            location.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except CalibrationError:
        raise
    except Exception as exc:
        raise CalibrationError(f"calibration callable '{spec}' cannot be imported: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise CalibrationError(f"calibration callable '{spec}': '{module_name}' has no function '{function}'")
    return fn


def load_calibration_data(
    source: CalibrationSource,
    inputs: Sequence[Value],
    max_batches: int | None = None,
    batch: int | None = None,
    preprocess: Any = None,
) -> CalibrationData:
    """The calibration batches ``source`` gives for a model with ``inputs``.

    Args:
        source: a folder of .npy/.npz files or of images, a callable, or a
            ``module:function`` / ``file.py:function`` spec naming one.
        max_batches: use at most this many batches.
        batch: samples per batch for a model whose batch dim is symbolic (default 1); a
            static batch dim is always the batch.
        preprocess: ``edge.quant.images.Preprocess`` for an image folder (None: defaults).

    Raises:
        CalibrationError: the folder is missing or holds no usable files, a file is
            unreadable or does not fit the model (named), the inputs disagree on the sample
            count, there are fewer samples than one batch, the callable cannot be found.
    """
    values = list(inputs)
    fixed = model_batch(values)
    if fixed is not None and batch is not None and batch != fixed:
        names = ", ".join(v.name for v in values)
        raise CalibrationError(f"calibration batch {batch}: the model's inputs ({names}) have a fixed batch of {fixed}")
    if callable(source):
        return CallableData(values, source, getattr(source, "__name__", "callable"), max_batches)
    produce = _callable(os.fspath(source))
    if produce is not None:
        return CallableData(values, produce, os.fspath(source), max_batches)
    folder = Path(source)
    if not folder.is_dir():
        raise CalibrationError(f"calibration data folder '{folder}' does not exist")
    from edge.quant.images import IMAGE_SUFFIXES, image_data

    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    arrays = [p for p in entries if p.suffix in ARRAY_SUFFIXES]
    images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
    if arrays and images:
        raise CalibrationError(f"calibration data folder '{folder}' mixes .npy/.npz files and images; keep one kind")
    if arrays:
        data = _array_data(folder, arrays, values, max_batches)
    elif images:
        data = image_data(folder, images, values, preprocess, max_batches)
    else:
        raise CalibrationError(
            f"calibration data folder '{folder}' is empty: it holds no .npy/.npz files (preprocessed input tensors, "
            "samples stacked along axis 0) and no .jpg/.png images"
        )
    return data.with_batch(fixed or batch or 1)
