"""Memory planner: no two live tensors share bytes, in-place reuse, arena vs lower bound, runs out of the arena.

The planner is checked two ways: structurally (a brute-force overlap check over random
execution orders, independent of how offsets were found) and by execution (the arena is
poisoned with NaN bytes before every run and the outputs must equal an unplanned run that
allocates every tensor afresh).
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest

import edge
from edge.kernels.cpu.backend import HostLaunch
from edge.runtime.memory import ALIGNMENT, StepUse, plan_memory
from tests.conftest import LIGHT_DIR
from tests.models import mobile_cnn, random_feeds, resnet_block_cnn, transformer_encoder
from tests.test_light_models import randomize_weights


def _lifetimes(steps: list[StepUse], keys, keep) -> dict:
    """Independent lifetime computation: [first write, last read] (end of run for kept tensors)."""
    spans = {}
    for key in keys:
        written = [i for i, s in enumerate(steps) if key in s.writes]
        read = [i for i, s in enumerate(steps) if key in s.reads]
        start = written[0]
        spans[key] = (start, len(steps) if key in keep else max([start, *read]))
    return spans


def _enclosing(plan, steps) -> dict:
    """tensor -> every concatenation output it was placed inside (transitively), read off the
    plan's offsets against the steps' offered parts."""
    parent = {}
    for step in steps:
        for position, delta in step.parts:
            part, whole = step.reads[position], step.writes[0]
            if part in plan.offsets and whole in plan.offsets and plan.offsets[part] == plan.offsets[whole] + delta:
                parent[part] = whole
    enclosing = {}
    for key in plan.offsets:
        chain, node = [], key
        while node in parent:
            node = parent[node]
            chain.append(node)
        enclosing[key] = set(chain)
    return enclosing


def _assert_no_live_overlap(plan, steps, keep) -> None:
    spans = _lifetimes(steps, plan.sizes, keep)
    shared = set()  # (input, output) pairs a step wrote in place
    for step in steps:
        for w, r in step.inplace:
            shared.add((step.reads[r], step.writes[w]))
    enclosing = _enclosing(plan, steps)
    for a, b in itertools.combinations(plan.sizes, 2):
        (sa, ea), (sb, eb) = spans[a], spans[b]
        live_together = sa <= eb and sb <= ea
        bytes_overlap = plan.offsets[a] < plan.offsets[b] + plan.sizes[b] and plan.offsets[b] < plan.offsets[a] + plan.sizes[a]
        if live_together and bytes_overlap:
            handoff = (a, b) in shared and ea == sb or (b, a) in shared and eb == sa
            nested = b in enclosing[a] or a in enclosing[b]
            assert nested or handoff and plan.offsets[a] == plan.offsets[b], f"tensors {a} {spans[a]} and {b} {spans[b]} overlap while both live"
        assert plan.offsets[a] % ALIGNMENT == 0
        assert plan.offsets[a] + plan.sizes[a] <= plan.arena_bytes
    for key, wholes in enclosing.items():  # a part lies inside each concatenation enclosing it
        for whole in wholes:
            assert plan.offsets[whole] <= plan.offsets[key] and plan.offsets[key] + plan.sizes[key] <= plan.offsets[whole] + plan.sizes[whole]


def _random_program(rng: np.random.Generator, length: int) -> tuple[list[StepUse], dict[int, int], set[int]]:
    """A random DAG in topological order: each step reads 1-3 earlier tensors, writes 1-2; one
    step in five concatenates 2-3 earlier tensors (offering them as parts)."""
    steps, sizes, produced = [], {}, []
    for _ in range(length):
        if len(produced) >= 3 and rng.random() < 0.2:
            pieces = tuple(int(k) for k in rng.choice(produced, size=int(rng.integers(2, 4)), replace=False))
            whole = len(sizes)
            sizes[whole] = sum(sizes[k] for k in pieces)
            offsets = np.cumsum([0] + [sizes[k] for k in pieces[:-1]])
            steps.append(StepUse(pieces, (whole,), parts=tuple((i, int(o)) for i, o in enumerate(offsets))))
            produced.append(whole)
            continue
        reads = tuple(int(k) for k in rng.choice(produced, size=min(len(produced), rng.integers(1, 4)), replace=False)) if produced else ()
        writes = tuple(range(len(sizes), len(sizes) + int(rng.integers(1, 3))))
        for key in writes:
            sizes[key] = int(rng.choice([4, 64, 100, 4096, 10000, 256, 1024]))
        inplace = tuple((0, r) for r in range(len(reads)) if rng.random() < 0.5)
        if inplace:
            sizes[writes[0]] = sizes[reads[inplace[0][1]]]
        steps.append(StepUse(reads, writes, inplace))
        produced.extend(writes)
    keep = {produced[-1]}
    return steps, sizes, keep


@pytest.mark.parametrize("seed", range(16))
def test_random_programs_never_overlap_live_tensors(seed: int) -> None:
    rng = np.random.default_rng(seed)
    steps, sizes, keep = _random_program(rng, 40)
    plan = plan_memory(steps, sizes, keep)
    _assert_no_live_overlap(plan, steps, keep)
    assert plan.lower_bound_bytes <= plan.arena_bytes <= plan.naive_bytes


def test_chain_reuses_two_buffers_and_runs_in_place() -> None:
    # a -> b -> c -> d, each step elementwise: everything after a is written over its dying input
    steps = [StepUse((), ("a",)), *(StepUse((x,), (y,), ((0, 0),)) for x, y in zip("abc", "bcd"))]
    plan = plan_memory(steps, dict.fromkeys("abcd", 1000), keep={"d"})
    assert plan.inplace == 3
    assert len(set(plan.offsets.values())) == 1
    assert plan.arena_bytes == plan.lower_bound_bytes == 1024  # 1000 rounded up to 64-byte alignment
    assert plan.naive_bytes == 4 * 1024


def test_no_in_place_over_an_input_still_read_later() -> None:
    # b = relu(a); c = a + b: a is still needed when b is written, so b must not overwrite it
    steps = [StepUse((), ("a",)), StepUse(("a",), ("b",), ((0, 0),)), StepUse(("a", "b"), ("c",), ((0, 0), (0, 1)))]
    plan = plan_memory(steps, dict.fromkeys("abc", 256), keep={"c"})
    assert plan.offsets["a"] != plan.offsets["b"]
    assert plan.inplace == 1  # c over a or b, both die at the last step
    _assert_no_live_overlap(plan, steps, {"c"})


def test_graph_outputs_are_never_overwritten() -> None:
    steps = [StepUse((), ("a",)), StepUse(("a",), ("b",), ((0, 0),)), StepUse(("b",), ("c",))]
    plan = plan_memory(steps, {"a": 512, "b": 512, "c": 512}, keep={"a", "c"})
    assert plan.inplace == 0
    assert len({plan.offsets["a"], plan.offsets["c"]}) == 2


def _concat_program(extra: list[StepUse] | None = None) -> list[StepUse]:
    # a, b produced; c = concat(a, b); d reads c (then whatever ``extra`` adds)
    return [
        StepUse((), ("a",)),
        StepUse((), ("b",)),
        StepUse(("a", "b"), ("c",), parts=((0, 0), (1, 1024))),
        StepUse(("c",), ("d",)),
        *(extra or []),
    ]


SIZES = {"a": 1024, "b": 2048, "c": 3072, "d": 512}


def test_concat_inputs_are_placed_inside_its_output() -> None:
    steps = _concat_program()
    plan = plan_memory(steps, SIZES, keep={"d"})
    assert plan.parts == 2
    assert plan.offsets["a"] == plan.offsets["c"] and plan.offsets["b"] == plan.offsets["c"] + 1024
    assert plan.arena_bytes == 3072 + 512  # a and b cost nothing beyond c
    _assert_no_live_overlap(plan, steps, {"d"})


def test_nested_concatenations_share_one_buffer() -> None:
    # DenseNet: each concatenation feeds the next one, so one buffer holds the whole block
    steps = [*_concat_program(), StepUse((), ("e",)), StepUse(("c", "e"), ("f",), parts=((0, 0), (1, 3072))), StepUse(("f",), ("g",))]
    sizes = {**SIZES, "e": 1024, "f": 4096, "g": 64}
    plan = plan_memory(steps, sizes, keep={"g"})
    assert plan.parts == 4
    assert {plan.offsets[k] - plan.offsets["f"] for k in "acbe"} == {0, 1024, 3072}
    _assert_no_live_overlap(plan, steps, {"g"})


@pytest.mark.parametrize(
    "case, sizes, keep, parts",
    [
        ("graph output", SIZES, {"d", "a"}, 1),  # a must outlive the run on its own
        ("misaligned", {**SIZES, "a": 1000, "c": 3048}, {"d"}, 1),  # b would start at byte 1000
    ],
)
def test_inputs_that_cannot_live_inside_the_output_keep_their_own_buffer(case, sizes, keep, parts) -> None:
    steps = _concat_program()
    if case == "misaligned":
        steps[2] = StepUse(("a", "b"), ("c",), parts=((0, 0), (1, 1000)))
    plan = plan_memory(steps, sizes, keep=keep)
    assert plan.parts == parts, case
    _assert_no_live_overlap(plan, steps, keep)


def test_a_repeated_or_in_place_input_is_not_a_part() -> None:
    steps = [
        StepUse((), ("a",)),
        StepUse(("a",), ("b",), ((0, 0),)),  # b written over a: a chain, not a lone tensor
        StepUse(("b", "b"), ("c",), parts=((0, 0), (1, 1024))),  # and repeated
        StepUse(("c",), ("d",)),
    ]
    plan = plan_memory(steps, {"a": 1024, "b": 1024, "c": 2048, "d": 64}, keep={"d"})
    assert plan.parts == 0
    _assert_no_live_overlap(plan, steps, {"d"})


def test_no_in_place_write_over_a_part_while_its_concatenation_lives() -> None:
    # after c = concat(a, b), e = relu(a) is where a dies: written over a it would change c
    steps = _concat_program([StepUse(("a",), ("e",), ((0, 0),)), StepUse(("c", "e"), ("f",))])
    sizes = {**SIZES, "e": 1024, "f": 64}
    plan = plan_memory(steps, sizes, keep={"f"})
    assert plan.parts == 2 and plan.inplace == 0
    assert plan.offsets["e"] != plan.offsets["a"]
    _assert_no_live_overlap(plan, steps, {"f"})


def _engine_and_feeds(name: str):
    if name in LIGHT_NAMES:
        model = randomize_weights(onnx.load(LIGHT_DIR / f"light_{name}.onnx"))
    else:
        model = MODELS[name]()
    return edge.build(model.SerializeToString()), random_feeds(model, seed=3)


MODELS = {"resnet_block_cnn": resnet_block_cnn, "mobile_cnn": mobile_cnn, "transformer_encoder": transformer_encoder}
LIGHT_NAMES = ("squeezenet", "shufflenet")


@pytest.mark.parametrize("name", [*MODELS, *LIGHT_NAMES])
def test_arena_runs_match_unplanned_runs_and_stay_near_the_lower_bound(name: str) -> None:
    engine, feeds = _engine_and_feeds(name)
    memory = engine.build["memory"]
    assert memory["arena_bytes"] <= 1.05 * memory["lower_bound_bytes"], memory
    assert memory["arena_bytes"] < memory["naive_bytes"]
    if name in LIGHT_NAMES:  # their Concat inputs are written inside the Concat's output
        assert memory["static"]["concat_parts"] > 0
    schedule = engine.schedule()
    oracle = schedule.run([feeds[s.name] for s in engine.inputs])  # no arena: every tensor freshly allocated
    context = engine.create_context()
    for poison in (0xFF, 0x7F):  # NaN / huge floats, -1 / large ints
        context.arena.fill(poison) if context.arena.size else None
        outputs = context.run(feeds)
        assert context.arena.size == memory["arena_bytes"]
        for spec, expected in zip(engine.outputs, oracle):
            np.testing.assert_array_equal(outputs[spec.name], expected, err_msg=f"{name}: {spec.name}")


def test_outputs_are_copies_not_arena_views() -> None:
    engine, feeds = _engine_and_feeds("resnet_block_cnn")
    context = engine.create_context()
    first = context.run(feeds)
    kept = {k: v.copy() for k, v in first.items()}
    other = {k: v + 1 for k, v in feeds.items()}
    context.run(other)  # overwrites the arena
    for name, array in first.items():
        assert not np.may_share_memory(array, context.arena)
        np.testing.assert_array_equal(array, kept[name])


def test_engine_file_keeps_the_plan_and_inspect_reports_it(tmp_path) -> None:
    engine, feeds = _engine_and_feeds("mobile_cnn")
    path = tmp_path / "m.engine"
    engine.save(path)
    loaded = edge.load(path)
    assert loaded.build["memory"]["static"]["tensors"] == engine.build["memory"]["static"]["tensors"]
    context = loaded.create_context()
    name = engine.outputs[0].name
    np.testing.assert_array_equal(context.run(feeds)[name], engine.create_context().run(feeds)[name])
    from typer.testing import CliRunner

    from edge.cli import _load_commands, app

    _load_commands()
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    memory = loaded.build["memory"]
    text = " ".join(result.output.split())  # undo rich's line wrapping
    assert f"arena {memory['arena_bytes'] / 1e3:.1f} KB" in text
    assert f"naive {memory['naive_bytes'] / 1e3:.1f} KB" in text
    assert f"lower bound {memory['lower_bound_bytes'] / 1e3:.1f} KB" in text


def test_kernels_may_write_straight_into_their_planned_buffer() -> None:
    from onnx import TensorProto, helper

    seen: list[np.ndarray | None] = []

    def double_into(ctx, x):
        seen.append(ctx.out[0])
        out = ctx.out[0] if ctx.out[0] is not None else np.empty_like(x)
        np.multiply(x, 2, out=out)
        return out

    edge.register_custom_op("DoubleInto", double_into, domain="edgetrt.test")
    nodes = [
        helper.make_node("Exp", ["x"], ["e"]),
        helper.make_node("DoubleInto", ["e"], ["d"], domain="edgetrt.test"),
        helper.make_node("Neg", ["d"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "into",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgetrt.test", 1)])
    engine = edge.build(model.SerializeToString())
    context = engine.create_context()
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    seen.clear()
    np.testing.assert_allclose(context.run({"x": x})["y"], -2 * np.exp(x), rtol=1e-6)
    assert seen[-1] is not None and np.shares_memory(seen[-1], context.arena)


def test_concats_whose_pieces_are_in_place_are_not_run(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A Concat whose producers all wrote into its output's slices is a no-op the plan marks
    (``SlotPlan.assembled``): it is not run and the result is unchanged, and an engine loaded
    from its file finds the same steps. A Concat with a piece the plan kept apart (a graph
    output here) or outside the arena (a graph input) still runs."""
    from onnx import TensorProto, helper, numpy_helper


    rng = np.random.default_rng(4)
    weights = {n: rng.standard_normal((c, 3, 1, 1), dtype=np.float32) for c, n in ((4, "wa"), (5, "wb"), (2, "wc"))}
    nodes = [
        *(helper.make_node("Conv", ["x", f"w{k}"], [k], name=f"conv_{k}") for k in "abc"),
        helper.make_node("Concat", ["a", "b"], ["ab"], axis=1, name="in_place"),
        helper.make_node("Relu", ["ab"], ["r"], name="relu"),
        helper.make_node("Concat", ["r", "c"], ["rc"], axis=1, name="kept_piece"),
        helper.make_node("Concat", ["x", "rc"], ["y"], axis=1, name="graph_input"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3, 6, 6))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 14, 6, 6)), helper.make_tensor_value_info("c", TensorProto.FLOAT, (1, 2, 6, 6))],
        [numpy_helper.from_array(w, n) for n, w in weights.items()],
    )
    engine = edge.build(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    x = rng.standard_normal((1, 3, 6, 6), dtype=np.float32)
    conv = {k: np.einsum("mc,nchw->nmhw", weights[f"w{k}"][:, :, 0, 0], x) for k in "abc"}
    expected = np.concatenate([x, np.maximum(np.concatenate([conv["a"], conv["b"]], axis=1), 0), conv["c"]], axis=1)
    called: list[str] = []
    call = HostLaunch.__call__
    monkeypatch.setattr(HostLaunch, "__call__", lambda launch, *a: called.append(launch.node.name) or call(launch, *a))
    path = tmp_path / "concat.engine"
    engine.save(path)
    for loaded in (engine, edge.load(path)):
        context = loaded.create_context()
        context.arena.fill(0xFF) if context.arena.size else None
        called.clear()
        outputs = context.run({"x": x})
        np.testing.assert_allclose(outputs["y"], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(outputs["c"], conv["c"], rtol=1e-5, atol=1e-5)
        assert "in_place" not in called and {"kept_piece", "graph_input"} <= set(called), called
