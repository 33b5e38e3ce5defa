"""String tensors (numpy object arrays of str): concatenation, splitting, normalisation, regex."""

from __future__ import annotations

import re

import numpy as np

from edge.kernels.registry import OpContext, register

__all__: list[str] = []


def _strings(values: object, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.reshape(-1)[:] = list(values)
    return out


@register("StringConcat", since=20)
def string_concat(ctx: OpContext, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    a, b = np.broadcast_arrays(x, y)
    return _strings((p + q for p, q in zip(a.reshape(-1), b.reshape(-1))), a.shape)


@register("RegexFullMatch", since=20)
def regex_full_match(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    pattern = re.compile(ctx.attr("pattern", ""))
    return np.array([pattern.fullmatch(s) is not None for s in x.reshape(-1)], bool).reshape(x.shape)


@register("StringSplit", since=20)
def string_split(ctx: OpContext, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pieces padded with "" to the longest split, and how many pieces each string gave."""
    delimiter = ctx.attr("delimiter") or None
    maxsplit = ctx.attr("maxsplit", -1)
    pieces = [s.split(delimiter, maxsplit) for s in x.reshape(-1)]
    width = max((len(p) for p in pieces), default=0)
    out = np.full((len(pieces), width), "", dtype=object)
    for row, parts in enumerate(pieces):
        out[row, : len(parts)] = parts
    counts = np.array([len(p) for p in pieces], np.int64).reshape(x.shape)
    return out.reshape(x.shape + (width,)), counts


@register("StringNormalizer", since=10)
def string_normalizer(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """Drop stop words (case-insensitively unless asked), then change case; [C] or [1, C]."""
    sensitive = ctx.attr("is_case_sensitive", 0)
    stopwords = set(ctx.attr("stopwords") or [])
    if not sensitive:
        stopwords = {w.lower() for w in stopwords}
    kept = [s for s in x.reshape(-1) if (s if sensitive else s.lower()) not in stopwords]
    action = ctx.attr("case_change_action", "NONE")
    if action == "LOWER":
        kept = [s.lower() for s in kept]
    elif action == "UPPER":
        kept = [s.upper() for s in kept]
    kept = kept or [""]
    shape = (len(kept),) if x.ndim == 1 else (1, len(kept))
    return _strings(kept, shape)
