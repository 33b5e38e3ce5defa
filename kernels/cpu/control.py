"""Control flow: If, Loop and Scan, executing their body graphs through ``ctx.run_subgraph``."""

from __future__ import annotations

import numpy as np

from edge.errors import KernelError
from edge.kernels.registry import OpContext, register

__all__ = ["DEFAULT_MAX_LOOP_ITERATIONS", "set_max_loop_iterations"]

DEFAULT_MAX_LOOP_ITERATIONS = 10_000
_max_loop_iterations = DEFAULT_MAX_LOOP_ITERATIONS


def set_max_loop_iterations(limit: int) -> None:
    """Bound every Loop to ``limit`` iterations (a Loop with no trip count whose condition
    never turns false, or a huge trip count, is refused instead of running forever)."""
    global _max_loop_iterations
    if limit < 1:
        raise KernelError(f"--max-loop-iterations must be at least 1, got {limit}")
    _max_loop_iterations = limit


@register("If")
def if_(ctx: OpContext, cond: np.ndarray) -> tuple[np.ndarray, ...]:
    branch = ctx.attr("then_branch") if bool(np.asarray(cond).reshape(-1)[0]) else ctx.attr("else_branch")
    return tuple(ctx.run_subgraph(branch, []))


def _stack(ctx: OpContext, slices: list[np.ndarray], output_index: int) -> np.ndarray:
    """Stack per-iteration scan outputs along a new axis 0; an empty loop gives a
    zero-length tensor typed from the node's output value."""
    if slices:
        return np.stack(slices)
    value = ctx.node.outputs[output_index]
    tail = tuple(d if isinstance(d, int) else 0 for d in (value.shape or (0,))[1:])
    return np.zeros((0,) + tail, value.dtype or np.float32)


@register("Loop")
def loop(ctx: OpContext, trip_count: np.ndarray | None, cond: np.ndarray | None, *initial: np.ndarray) -> tuple:
    """Run the body while ``i < trip_count`` (if given) and ``cond`` (if given) hold.

    Body signature: (iteration, cond, carried...) -> (cond, carried..., scan slices...).
    Outputs: the final carried values, then each scan output stacked over iterations.
    """
    body = ctx.attr("body")
    limit = None if trip_count is None else int(np.asarray(trip_count).reshape(-1)[0])
    keep_going = True if cond is None else bool(np.asarray(cond).reshape(-1)[0])
    carried = list(initial)
    scans: list[list[np.ndarray]] | None = None
    i = 0
    while keep_going and (limit is None or i < limit):
        if i >= _max_loop_iterations:
            raise KernelError(
                f"node '{ctx.node.name}' (Loop) did not end within {_max_loop_iterations} iterations "
                f"(trip count {'none' if limit is None else limit}); raise --max-loop-iterations if the model needs more"
            )
        results = ctx.run_subgraph(body, [np.array(i, np.int64), np.array(keep_going), *carried])
        keep_going = bool(np.asarray(results[0]).reshape(-1)[0])
        carried = results[1 : 1 + len(carried)]
        slices = results[1 + len(carried) :]
        scans = [[] for _ in slices] if scans is None else scans
        for store, piece in zip(scans, slices):
            store.append(piece)
        i += 1
    n_scan = ctx.num_outputs - len(carried)
    stacked = [_stack(ctx, (scans or [[]] * n_scan)[k], len(carried) + k) for k in range(n_scan)]
    return (*carried, *stacked)


def _scan_core(
    ctx: OpContext, states: list[np.ndarray], inputs: list[np.ndarray], steps: int | None = None
) -> list[np.ndarray]:
    """One Scan over ``inputs`` (each sliced along its scan axis, forward or reversed)."""
    body = ctx.attr("body")
    n_in = len(inputs)
    in_axes = [a % x.ndim for a, x in zip(ctx.attr("scan_input_axes") or [0] * n_in, inputs)]
    in_dirs = ctx.attr("scan_input_directions") or ctx.attr("directions") or [0] * n_in
    length = inputs[0].shape[in_axes[0]] if steps is None else steps
    per_step: list[list[np.ndarray]] = []
    for t in range(length):
        slices = [np.take(x, length - 1 - t if d else t, axis=a) for x, a, d in zip(inputs, in_axes, in_dirs)]
        results = ctx.run_subgraph(body, [*states, *slices])
        states = results[: len(states)]
        per_step.append(results[len(states) :])
    n_out = len(body.outputs) - len(states)
    out_axes = ctx.attr("scan_output_axes") or [0] * n_out
    out_dirs = ctx.attr("scan_output_directions") or [0] * n_out
    outputs = []
    for k in range(n_out):
        pieces = [step[k] for step in per_step]
        if out_dirs[k]:
            pieces.reverse()
        stacked = np.stack(pieces)
        outputs.append(np.moveaxis(stacked, 0, out_axes[k] % stacked.ndim))
    return [*states, *outputs]


@register("Scan", since=9)
def scan(ctx: OpContext, *args: np.ndarray) -> tuple[np.ndarray, ...]:
    n_in = ctx.attr("num_scan_inputs")
    states, inputs = list(args[: len(args) - n_in]), list(args[len(args) - n_in :])
    return tuple(_scan_core(ctx, states, inputs))


@register("Scan", since=8)
def scan_v8(ctx: OpContext, sequence_lens: np.ndarray | None, *args: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scan-8: every tensor has a leading batch axis; each batch entry is scanned on its
    own for ``sequence_lens[b]`` steps, scan outputs zero-padded to the longest input."""
    n_in = ctx.attr("num_scan_inputs")
    states, inputs = list(args[: len(args) - n_in]), list(args[len(args) - n_in :])
    batch, seq = inputs[0].shape[0], inputs[0].shape[1]
    lens = [seq] * batch if sequence_lens is None else [int(v) for v in sequence_lens]
    per_batch = [_scan_core(ctx, [s[b] for s in states], [x[b] for x in inputs], lens[b]) for b in range(batch)]
    results = []
    for k in range(len(per_batch[0])):
        parts = [entry[k] for entry in per_batch]
        if k >= len(states):
            parts = [np.pad(p, [(0, seq - p.shape[0])] + [(0, 0)] * (p.ndim - 1)) for p in parts]
        results.append(np.stack(parts))
    return tuple(results)
