"""Dynamic shapes through optimization profiles: validation at build, ranges at run time.

The model has a dynamic batch and a dynamic sequence length (tests/runtime/models.py);
every in-range shape is checked against onnxruntime, out-of-range shapes against the
exact error text.
"""

from __future__ import annotations

import numpy as np
import pytest

import edge
from edge.errors import EdgeError, InputError
from tests.conftest import assert_close, ort_run
from tests.runtime.models import dynamic_encoder

SMALL = {"ids": ((1, 1), (2, 8), (4, 16)), "mask": ((1, 1), (2, 8), (4, 16))}
LONG = {"ids": ((8, 32), (8, 32), (8, 64)), "mask": ((8, 32), (8, 32), (8, 64))}


@pytest.fixture(scope="module")
def model():
    return dynamic_encoder()


@pytest.fixture(scope="module")
def engine(model, tmp_path_factory):
    built = edge.build(model.SerializeToString(), edge.BuilderConfig(optimization_profiles=[SMALL, LONG]))
    path = tmp_path_factory.mktemp("profiles") / "encoder.engine"
    built.save(path)
    return edge.load(path)


def _feeds(shape: tuple[int, int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = (rng.random(shape) < 0.7).astype(np.float32)
    mask[:, 0] = 1  # every row pools over at least one token
    return {"ids": rng.integers(0, 50, shape).astype(np.int64), "mask": mask}


def test_profiles_and_their_arena_sizes_are_stored(engine) -> None:
    assert engine.build["optimization_profiles"][1]["ids"] == {"min": [8, 32], "opt": [8, 32], "max": [8, 64]}
    plans = engine.build["memory"]["profiles"]
    assert [p["max_shapes"]["ids"] for p in plans] == [[4, 16], [8, 64]]
    assert 0 < plans[0]["arena_bytes"] < plans[1]["arena_bytes"] == engine.build["memory"]["arena_bytes"]
    assert all(p["arena_bytes"] <= 1.05 * p["lower_bound_bytes"] for p in plans)


@pytest.mark.parametrize("shape", [(1, 1), (2, 5), (3, 16), (4, 16), (8, 32), (8, 47), (8, 64)])
def test_shapes_inside_a_profile_match_onnxruntime(engine, model, shape) -> None:
    context = engine.create_context()
    feeds = _feeds(shape, seed=shape[1])
    for _ in range(2):  # first run plans the arena for this shape, the second runs out of it
        context.arena.fill(0xFF)
        outputs = context.run(feeds)
        for name, expected in zip(("pooled", "attn"), ort_run(model, feeds)):
            assert_close(outputs[name], expected, rtol=1e-5, atol=1e-6, what=f"{name} {shape}")
    assert context.arena.size > 0


def test_one_context_alternating_shapes_stays_correct(engine, model) -> None:
    context = engine.create_context()
    shapes = [(2, 5), (8, 40), (2, 5), (4, 9), (8, 40), (4, 9)]
    for index, shape in enumerate(shapes):
        feeds = _feeds(shape, seed=index)
        expected = ort_run(model, feeds)
        outputs = context.run(feeds)
        assert_close(outputs["attn"], expected[1], rtol=1e-5, atol=1e-6, what=f"run {index} {shape}")


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (
            (2, 20),
            "input 'ids' has shape 2x20, outside every optimization profile (profile 0: min 1x1, opt 2x8, max 4x16; "
            "profile 1: min 8x32, opt 8x32, max 8x64)",
        ),
        ((5, 8), "input 'ids' has shape 5x8, outside every optimization profile"),
        ((8, 65), "input 'ids' has shape 8x65, outside every optimization profile"),
    ],
)
def test_shapes_outside_every_profile_are_refused_with_the_range(engine, shape, message) -> None:
    with pytest.raises(InputError) as info:
        engine.create_context().run(_feeds(shape))
    assert str(info.value).startswith(message)


def test_pinned_profile_refuses_shapes_of_another(engine) -> None:
    context = engine.create_context()
    context.set_optimization_profile(0)
    assert context.optimization_profile == 0
    with pytest.raises(InputError, match=r"input 'ids' has shape 8x40, outside optimization profile 0 \(min 1x1, opt 2x8, max 4x16\)"):
        context.run(_feeds((8, 40)))
    context.set_optimization_profile(1)
    assert context.run(_feeds((8, 40)))["attn"].shape == (8, 40, 40)
    with pytest.raises(InputError, match="optimization profile 2 does not exist; the engine has 2"):
        context.set_optimization_profile(2)


@pytest.mark.parametrize(
    ("profiles", "message"),
    [
        ([{"ids": SMALL["ids"]}], "optimization profile 0: dynamic input 'mask' (shape batchxseq) has no min/opt/max shapes"),
        ([{**SMALL, "tokens": SMALL["ids"]}], "optimization profile 0: 'tokens' is not an input of the model"),
        ([SMALL, {**LONG, "mask": ((8, 32), (8, 16), (8, 64))}], "optimization profile 1: input 'mask' dim 1 needs min <= opt <= max"),
        ([{**SMALL, "ids": ((1,), (2,), (4,))}], "optimization profile 0: input 'ids' min shape 1 has rank 1"),
    ],
)
def test_invalid_profiles_are_refused_at_build(model, profiles, message) -> None:
    with pytest.raises(EdgeError) as info:
        edge.build(model.SerializeToString(), edge.BuilderConfig(optimization_profiles=profiles))
    assert str(info.value).startswith(message)


def test_static_dims_must_match_the_model(model) -> None:
    fixed = edge.BuilderConfig(input_shapes={"ids": (2, 8), "mask": (2, 8)}, optimization_profiles=[{"ids": ((2, 8), (2, 8), (2, 9))}])
    with pytest.raises(EdgeError, match=r"input 'ids' max shape 2x9 differs from the model's static dim 1 \(2x8\)"):
        edge.build(model.SerializeToString(), fixed)


def test_cli_build_with_profiles_then_bench_and_run(model, tmp_path) -> None:
    from edge.cli import main

    source = tmp_path / "encoder.onnx"
    source.write_bytes(model.SerializeToString())
    target = tmp_path / "encoder.engine"
    argv = ["build", str(source), "-o", str(target)]
    for lo, opt, hi in ((1, 8, 16), (32, 32, 64)):
        argv += ["--min-shapes", f"ids:1x{lo},mask:1x{lo}", "--opt-shapes", f"ids:2x{opt},mask:2x{opt}"]
        argv += ["--max-shapes", f"ids:8x{hi},mask:8x{hi}"]
    assert main(argv) == 0
    engine = edge.load(target)
    assert len(engine.build["optimization_profiles"]) == 2
    assert engine.create_context().run(_feeds((8, 50)))["pooled"].shape == (8, 16)
    assert main(["build", str(source), "--min-shapes", "ids:1x1,mask:1x1", "--max-shapes", "ids:8x8,mask:8x8"]) == 1
