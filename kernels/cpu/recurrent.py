"""Recurrent layers: LSTM, GRU and RNN (every direction, activation list, layout, sequence_lens).

Time is a Python loop; batch and gates are vectorised. The input projection X @ W^T + Wb
is computed for all time steps at once before the loop. Batch entries whose sequence has
ended keep their state and emit zeros, which handles forward and reverse alike: a reverse
pass walks t = T-1 .. 0 and simply starts updating an entry once t < its length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import special

from edge.kernels.registry import OpContext, register

__all__ = ["ACTIVATIONS"]

Activation = Callable[[np.ndarray], np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """scipy's overflow-safe logistic (as the Sigmoid kernel uses), in ``x``'s dtype."""
    return special.expit(x).astype(x.dtype, copy=False)


# name -> (factory(alpha, beta), default alpha or None if unused, default beta or None if unused)
ACTIVATIONS: dict[str, tuple[Callable[[float, float], Activation], float | None, float | None]] = {
    "relu": (lambda a, b: lambda x: np.maximum(x, 0), None, None),
    "tanh": (lambda a, b: np.tanh, None, None),
    "sigmoid": (lambda a, b: _sigmoid, None, None),
    "affine": (lambda a, b: lambda x: a * x + b, 1.0, 0.0),
    "leakyrelu": (lambda a, b: lambda x: np.where(x >= 0, x, a * x), 0.01, None),
    "thresholdedrelu": (lambda a, b: lambda x: np.where(x > a, x, 0), 1.0, None),
    "scaledtanh": (lambda a, b: lambda x: a * np.tanh(b * x), 1.0, 1.0),
    "hardsigmoid": (lambda a, b: lambda x: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "elu": (lambda a, b: lambda x: np.where(x >= 0, x, a * (np.exp(np.minimum(x, 0)) - 1)), 1.0, None),
    "softsign": (lambda a, b: lambda x: x / (1 + np.abs(x)), None, None),
    "softplus": (lambda a, b: lambda x: np.logaddexp(x, 0), None, None),
}


def _activations(ctx: OpContext, defaults: Sequence[str], num_directions: int) -> list[list[Activation]]:
    """Activation functions per direction; alpha/beta lists are consumed in order by the
    functions that take them, missing ones fall back to the ONNX operator defaults."""
    names = list(ctx.attr("activations") or defaults)
    if len(names) == len(defaults) and num_directions == 2:
        names = names * 2
    alphas = iter(ctx.attr("activation_alpha") or [])
    betas = iter(ctx.attr("activation_beta") or [])
    funcs: list[Activation] = []
    for name in names:
        factory, alpha, beta = ACTIVATIONS[name.lower()]
        alpha = next(alphas, alpha) if alpha is not None else 0.0
        beta = next(betas, beta) if beta is not None else 0.0
        funcs.append(factory(alpha, beta))
    per = len(defaults)
    return [funcs[d * per : (d + 1) * per] for d in range(num_directions)]


Step = Callable[[np.ndarray, tuple[np.ndarray, ...]], tuple[np.ndarray, ...]]


class _Layer:
    """What every recurrent op shares: layout, directions, clipping, sequence lengths, the time loop."""

    def __init__(
        self, ctx: OpContext, x: np.ndarray, sequence_lens: np.ndarray | None, default_acts: Sequence[str]
    ) -> None:
        self.layout = ctx.attr("layout", 0)
        self.x = np.swapaxes(x, 0, 1) if self.layout else x  # [seq, batch, input]
        direction = ctx.attr("direction", "forward")
        self.reverse = [False, True] if direction == "bidirectional" else [direction == "reverse"]
        self.acts = _activations(ctx, default_acts, len(self.reverse))
        self.clip = ctx.attr("clip")
        self.lens = _lens(sequence_lens, self.x.shape[0])

    def initial(self, state: np.ndarray | None, hidden: int) -> np.ndarray:
        """[dirs, batch, hidden] initial state (zeros when omitted)."""
        if state is None:
            return np.zeros((len(self.reverse), self.x.shape[1], hidden), self.x.dtype)
        return np.swapaxes(state, 0, 1) if self.layout else state

    def clipped(self, gates: np.ndarray) -> np.ndarray:
        return gates if self.clip is None else np.clip(gates, -self.clip, self.clip)

    def forward(
        self,
        ctx: OpContext,
        w: np.ndarray,
        b: np.ndarray | None,
        initials: tuple[np.ndarray, ...],
        make_step: Callable[[int, np.ndarray], Step],
    ) -> tuple:
        """Run every direction and return the node's outputs.

        Per direction d: project X for all time steps at once (X W[d]^T + Wb), build the
        op's step from ``make_step(d, Rb)``, then loop over time from ``initials[k][d]``.
        """
        ys, finals = [], []
        for d, reverse in enumerate(self.reverse):
            wb, rb = _bias(b, d, w.shape[1], self.x.dtype)
            y, final = self._loop(self.x @ w[d].T + wb, tuple(s[d] for s in initials), make_step(d, rb), reverse)
            ys.append(y)
            finals.append(final)
        return self._outputs(ctx, ys, finals)

    def _loop(
        self, projected: np.ndarray, states: tuple[np.ndarray, ...], step: Step, reverse: bool
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Loop ``step`` over time; returns Y [seq, batch, hidden] and the final states."""
        seq = projected.shape[0]
        ys = np.zeros((seq,) + states[0].shape, self.x.dtype)
        for t in range(seq - 1, -1, -1) if reverse else range(seq):
            new = step(projected[t], states)
            if self.lens is None:
                states = new
                ys[t] = new[0]
            else:
                live = (t < self.lens)[:, None]
                states = tuple(np.where(live, n, s) for n, s in zip(new, states))
                ys[t] = np.where(live, new[0], 0)
        return ys, states

    def _outputs(self, ctx: OpContext, ys: list[np.ndarray], finals: list[tuple[np.ndarray, ...]]) -> tuple:
        """Y [seq, dirs, batch, hidden] and the final states [dirs, batch, hidden], in the node's layout."""
        y = np.stack(ys, axis=1)
        states = [np.stack([f[k] for f in finals]) for k in range(len(finals[0]))]
        if self.layout:
            y = np.transpose(y, (2, 0, 1, 3))
            states = [np.swapaxes(s, 0, 1) for s in states]
        return tuple(np.ascontiguousarray(a) for a in (y, *states))[: ctx.num_outputs]


def _lens(sequence_lens: np.ndarray | None, seq: int) -> np.ndarray | None:
    """None when every sequence spans the whole input (the fast path)."""
    if sequence_lens is None or np.all(sequence_lens >= seq):
        return None
    return sequence_lens.astype(np.int64)


def _bias(b: np.ndarray | None, d: int, width: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    if b is None:
        return np.zeros(width, dtype), np.zeros(width, dtype)
    return b[d, :width], b[d, width:]


@register("RNN")
def rnn(
    ctx: OpContext,
    x: np.ndarray,
    w: np.ndarray,
    r: np.ndarray,
    b: np.ndarray | None = None,
    sequence_lens: np.ndarray | None = None,
    initial_h: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Ht = f(Xt W^T + Ht-1 R^T + Wb + Rb)."""
    layer = _Layer(ctx, x, sequence_lens, ["Tanh"])
    hidden = r.shape[-1]

    def make_step(d: int, rb: np.ndarray) -> Step:
        (f,) = layer.acts[d]
        rt = r[d].T

        def step(xw: np.ndarray, states: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
            return (f(layer.clipped(xw + states[0] @ rt + rb)),)

        return step

    return layer.forward(ctx, w, b, (layer.initial(initial_h, hidden),), make_step)


@register("GRU")
def gru(
    ctx: OpContext,
    x: np.ndarray,
    w: np.ndarray,
    r: np.ndarray,
    b: np.ndarray | None = None,
    sequence_lens: np.ndarray | None = None,
    initial_h: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Gates z, r, h (ONNX order); linear_before_reset applies r after the recurrent matmul."""
    layer = _Layer(ctx, x, sequence_lens, ["Sigmoid", "Tanh"])
    hidden = r.shape[-1]
    before_reset = ctx.attr("linear_before_reset", 0)

    def make_step(d: int, rb: np.ndarray) -> Step:
        f, g = layer.acts[d]
        r_zr, r_h = r[d, : 2 * hidden].T, r[d, 2 * hidden :].T
        rb_zr, rb_h = rb[: 2 * hidden], rb[2 * hidden :]

        def step(xw: np.ndarray, states: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
            h = states[0]
            zr = f(layer.clipped(xw[:, : 2 * hidden] + h @ r_zr + rb_zr))
            z, reset = zr[:, :hidden], zr[:, hidden:]
            if before_reset:
                candidate = xw[:, 2 * hidden :] + reset * (h @ r_h + rb_h)
            else:
                candidate = xw[:, 2 * hidden :] + (reset * h) @ r_h + rb_h
            hh = g(layer.clipped(candidate))
            return ((1 - z) * hh + z * h,)

        return step

    return layer.forward(ctx, w, b, (layer.initial(initial_h, hidden),), make_step)


@register("LSTM")
def lstm(
    ctx: OpContext,
    x: np.ndarray,
    w: np.ndarray,
    r: np.ndarray,
    b: np.ndarray | None = None,
    sequence_lens: np.ndarray | None = None,
    initial_h: np.ndarray | None = None,
    initial_c: np.ndarray | None = None,
    p: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Gates i, o, f, c (ONNX order), optional peepholes P = [Pi, Po, Pf] and input_forget
    (forget gate = 1 - input gate)."""
    layer = _Layer(ctx, x, sequence_lens, ["Sigmoid", "Tanh", "Tanh"])
    hidden = r.shape[-1]
    couple = ctx.attr("input_forget", 0)

    def make_step(d: int, rb: np.ndarray) -> Step:
        f, g, h_act = layer.acts[d]
        rt = r[d].T
        pi, po, pf = (p[d, :hidden], p[d, hidden : 2 * hidden], p[d, 2 * hidden :]) if p is not None else (0, 0, 0)

        def step(xw: np.ndarray, states: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
            h, c = states
            gates = xw + h @ rt + rb
            i = f(layer.clipped(gates[:, :hidden] + pi * c))
            forget = 1 - i if couple else f(layer.clipped(gates[:, 2 * hidden : 3 * hidden] + pf * c))
            c_new = forget * c + i * g(layer.clipped(gates[:, 3 * hidden :]))
            o = f(layer.clipped(gates[:, hidden : 2 * hidden] + po * c_new))
            return o * h_act(c_new), c_new

        return step

    initials = (layer.initial(initial_h, hidden), layer.initial(initial_c, hidden))
    return layer.forward(ctx, w, b, initials, make_step)
