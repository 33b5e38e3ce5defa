"""The runtime form of ONNX's non-tensor values: sequences of tensors and optionals.

A sequence value is a :class:`TensorSequence` (immutable, so a kernel that inserts or erases
returns a new one and the input stays valid for its other readers). An optional value is
either what it holds (a tensor or a sequence) or ``None`` when empty, which is also how an
omitted optional input reaches a kernel.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

__all__ = ["TensorSequence"]


class TensorSequence(Sequence[np.ndarray]):
    """An ordered, immutable list of tensors (ONNX ``seq(tensor)``).

    Not a tuple or list on purpose: the runtime reads a kernel's tuple result as its several
    outputs, whereas a sequence is one output. Tensors are copied in, so a sequence never
    aliases a buffer that a later step overwrites (an arena view).
    """

    __slots__ = ("_tensors",)

    def __init__(self, tensors: Iterable[np.ndarray] = ()) -> None:
        self._tensors = tuple(np.array(t, copy=True) for t in tensors)

    def __getitem__(self, index):  # type: ignore[override]
        return self._tensors[index]

    def __len__(self) -> int:
        return len(self._tensors)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self._tensors)

    def __repr__(self) -> str:
        """``sequence of 2 [float32[2, 3], float32[2, 1]]`` (the first three tensors listed)."""
        shown = ", ".join(f"{t.dtype}{list(t.shape)}" for t in self._tensors[:3])
        more = ", ..." if len(self._tensors) > 3 else ""
        return f"sequence of {len(self._tensors)} [{shown}{more}]"

