"""Parsers for option values shared by several commands (shapes, input files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.errors import EdgeError

__all__ = ["parse_shapes", "parse_input_files"]


def parse_shapes(text: str | None) -> dict[str, tuple[int, ...]]:
    """``"x:1x3x224x224,mask:1x128"`` -> ``{"x": (1, 3, 224, 224), "mask": (1, 128)}``."""
    shapes: dict[str, tuple[int, ...]] = {}
    if not text:
        return shapes
    for item in text.split(","):
        name, sep, dims = item.strip().rpartition(":")
        if not sep or not name:
            raise EdgeError(f"--shapes entry '{item}' is not NAME:DIMS (e.g. input:1x3x224x224)")
        try:
            shapes[name] = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            raise EdgeError(f"--shapes entry '{item}': dims '{dims}' are not integers joined by 'x'") from None
        if any(d < 0 for d in shapes[name]):
            raise EdgeError(f"--shapes entry '{item}': dims must be non-negative")
    return shapes


def parse_input_files(items: list[str]) -> dict[str, np.ndarray]:
    """``["x=img.npy", "y=b.npz"]`` -> arrays (an .npz must hold exactly one array)."""
    feeds: dict[str, np.ndarray] = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise EdgeError(f"--input '{item}' is not NAME=FILE.npy")
        path = Path(file)
        if not path.is_file():
            raise EdgeError(f"--input '{name}': file '{path}' does not exist")
        try:
            loaded = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise EdgeError(f"--input '{name}': '{path}' is not a .npy/.npz file ({exc})") from None
        if isinstance(loaded, np.lib.npyio.NpzFile):
            if len(loaded.files) != 1:
                raise EdgeError(f"--input '{name}': '{path}' holds {len(loaded.files)} arrays, expected one")
            loaded = loaded[loaded.files[0]]
        feeds[name] = loaded
    return feeds
