"""Where an engine's inputs come from for ``run`` and ``compare``: given arrays, saved feeds,
a data-loader script, else seeded random arrays with dynamic dims at the profile's opt shape.

Several iterations take their feeds in order from saved feeds or the script; random inputs
of iteration ``i`` use ``seed + i``. Inputs a feed lacks are filled in at random.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping, Sequence
from itertools import islice
from pathlib import Path

import numpy as np

from edge.engine import Engine
from edge.errors import InputError
from edge.runtime.bench import bench_inputs
from edge.runtime.profiles import profiles_from_record

__all__ = ["guessed_shape_notes", "iteration_feeds", "load_data_loader"]


def load_data_loader(spec: str, limit: int | None = None) -> list[dict[str, np.ndarray]]:
    """Feeds from Polygraphy's ``--data-loader-script file.py[:function]`` (default ``load_data``):
    the function returns an iterable of ``{input name: array}``; at most ``limit`` are taken."""
    file, sep, function = spec.rpartition(":")
    if not sep or not file.endswith(".py"):
        file, function = spec, "load_data"
    path = Path(file)
    if not path.is_file():
        raise InputError(f"--data-loader-script: '{path}' does not exist")
    module_spec = importlib.util.spec_from_file_location(f"_edgetrt_data_loader_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise InputError(f"--data-loader-script: '{path}' is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(path.parent.resolve()))  # the script may import its neighbours
    try:
        module_spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    loader = getattr(module, function, None)
    if not callable(loader):
        raise InputError(f"--data-loader-script: '{path}' defines no function '{function}'")
    feeds = []
    for index, feed in enumerate(islice(loader(), limit)):
        if not isinstance(feed, Mapping):
            raise InputError(f"--data-loader-script: '{path}:{function}' item {index} is a {type(feed).__name__}, not a dict of arrays")
        feeds.append({str(name): np.asarray(array) for name, array in feed.items()})
    if not feeds:
        raise InputError(f"--data-loader-script: '{path}:{function}' yielded no feeds")
    return feeds


def iteration_feeds(
    engine: Engine,
    iterations: int = 1,
    given: Mapping[str, np.ndarray] | None = None,
    loaded: Sequence[Mapping[str, np.ndarray]] | None = None,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = 0,
    batch: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """One feed per iteration: ``loaded`` feeds (all of them when given), else ``iterations``
    feeds; ``given`` arrays go into every feed; the rest is seeded random (see module doc)."""
    count = len(loaded) if loaded else iterations
    feeds = []
    for index in range(count):
        feed = {**(dict(loaded[index]) if loaded else {}), **dict(given or {})}
        if any(spec.name not in feed for spec in engine.inputs):
            randoms = bench_inputs(engine, shapes, batch, seed + index)
            feed.update({name: array for name, array in randoms.items() if name not in feed})
        feeds.append(feed)
    return feeds


def guessed_shape_notes(engine: Engine, feed: Mapping[str, np.ndarray], given: set[str], shapes: Mapping[str, tuple[int, ...]] | None) -> list[str]:
    """A note per random input whose dynamic dims had no shape to take (no --shapes, no
    optimization profile) and were set to 1, as Polygraphy warns."""
    profiles = profiles_from_record(engine.build.get("optimization_profiles"))
    shaped = set(shapes or {}) | set(given) | (set(profiles[0].ranges) if profiles else set())
    notes = []
    for spec in engine.inputs:
        if spec.name not in shaped and not all(isinstance(d, int) for d in spec.shape):
            dims = "x".join(map(str, np.shape(feed[spec.name]))) or "scalar"
            notes.append(f"input '{spec.name}' has dynamic dims and no shape was given: random data of shape {dims}; give --shapes {spec.name}:DIMS")
    return notes
