"""Engine files as hostile input: whole-file checksum, schema, graph and memory-plan checks, fuzzing.

Mutated documents are written back with a valid checksum (as an attacker would), so each
case exercises the validation behind the checksum, not the checksum itself.
"""

from __future__ import annotations

import copy
import json
import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge
from edge.engine.format import FORMAT_VERSION, MAGIC, read_engine, write_engine
from edge.errors import EdgeError, EngineFormatError


def conv_pool_model() -> onnx.ModelProto:
    """Conv -> Relu -> MaxPool, two branches concatenated: static shapes, a planned arena."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("AveragePool", ["r"], ["q"], name="avg", kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Concat", ["p", "q"], ["y"], name="cat", axis=1),
        ],
        "convpool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def engine_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("trust") / "convpool.engine"
    edge.build(conv_pool_model().SerializeToString(), edge.BuilderConfig(optimize=False)).save(path)
    return path.read_bytes()


def _parts(path: Path) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    blob = read_engine(path)
    return dict(blob.header), copy.deepcopy(blob.document), bytes(blob.blobs)


def _rewrite(path: Path, header: dict[str, Any], document: dict[str, Any], blobs: bytes) -> None:
    """Write a (mutated) engine back with a correct whole-file checksum."""
    write_engine(path, {k: v for k, v in header.items() if k not in ("format_version", "body_length")}, document, blobs)


def _load_and_run(path: Path) -> None:
    engine = edge.load(path)
    feeds = {s.name: np.ones([d if isinstance(d, int) else 1 for d in s.shape], s.dtype) for s in engine.inputs}
    engine.create_context().run(feeds)


@pytest.fixture()
def engine_file(tmp_path: Path, engine_bytes: bytes) -> Path:
    path = tmp_path / "e.engine"
    path.write_bytes(engine_bytes)
    return path


def test_intact_engine_loads_and_runs(engine_file: Path) -> None:
    header, document, _ = _parts(engine_file)
    assert header["format_version"] == FORMAT_VERSION == 3
    assert document["build"]["memory"]["static"]["tensors"], "the fixture must carry a static memory plan"
    _load_and_run(engine_file)


def test_header_byte_change_fails_the_checksum(engine_file: Path) -> None:
    data = bytearray(engine_file.read_bytes())
    start = data.index(b'"precision": "fp32"')
    data[start + 14 : start + 18] = b"fp16"
    engine_file.write_bytes(bytes(data))
    with pytest.raises(EngineFormatError, match="checksum mismatch"):
        edge.load(engine_file)


def test_older_format_is_refused_with_rebuild(engine_file: Path) -> None:
    data = bytearray(engine_file.read_bytes())
    struct.pack_into("<I", data, len(MAGIC), 1)
    engine_file.write_bytes(bytes(data))
    with pytest.raises(EngineFormatError, match=r"engine format 1, older .*rebuild"):
        edge.load(engine_file)


def test_format_2_engine_still_loads_and_runs(engine_file: Path) -> None:
    """Format 3 kept format 2's container: an engine written before still runs (its graph holds
    nothing a format-2 reader would misread); an older edgetrt refuses format 3 instead."""
    import hashlib

    data = engine_file.read_bytes()[:-32]
    head_len = struct.unpack_from("<I", data, len(MAGIC) + 4)[0]
    start = len(MAGIC) + 8
    header = json.loads(data[start : start + head_len])
    header["format_version"] = 2
    head = json.dumps(header).encode()
    content = MAGIC + struct.pack("<II", 2, len(head)) + head + data[start + head_len :]
    engine_file.write_bytes(content + hashlib.sha256(content).digest())
    assert _parts(engine_file)[0]["format_version"] == 2
    _load_and_run(engine_file)


def _node(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in document["graph"]["nodes"] if n["name"] == name)


def _tensors(document: dict[str, Any]) -> list[list[Any]]:
    return document["build"]["memory"]["static"]["tensors"]


def _set_attr(name: str, attr: str, value: Any):
    def mutate(header: dict, document: dict) -> None:
        _node(document, name).setdefault("attrs", {})[attr] = value

    return mutate


def _set_header(key: str, value: Any):
    def mutate(header: dict, document: dict) -> None:
        header[key] = value

    return mutate


def _overlap(header: dict, document: dict) -> None:
    names = {t[0]: t for t in _tensors(document)}  # both pool outputs live until the Concat
    names["q"][1] = names["p"][1]


def _offset_past_arena(header: dict, document: dict) -> None:
    static = document["build"]["memory"]["static"]
    _tensors(document)[0][1] = static["arena_bytes"]


def _spaces_not_a_mapping(header: dict, document: dict) -> None:
    document["build"]["memory"]["spaces"] = []  # an AttributeError traceback before the schema named spaces


def _bad_dtype(header: dict, document: dict) -> None:
    document["values"][0]["dtype"] = "<x9"


def _bad_value_index(header: dict, document: dict) -> None:
    _node(document, "relu")["inputs"] = [9999]


def _missing_key(header: dict, document: dict) -> None:
    del document["graph"]["nodes"][0]["outputs"]


def _deep_json(header: dict, document: dict) -> None:
    deep: Any = 0
    for _ in range(500):
        deep = [deep]
    document["build"]["deep"] = deep


def _unknown_section(header: dict, document: dict) -> None:
    document["surprise"] = {}


def _huge_tensor(header: dict, document: dict) -> None:
    const = next(v for v in document["values"] if "const" in v)
    const["const"]["__tensor__"]["shape"] = [1 << 40, 1 << 30]


def _writes_input(header: dict, document: dict) -> None:
    _node(document, "relu")["outputs"] = list(document["graph"]["inputs"])


def _opset(header: dict, document: dict) -> None:
    document["graph"]["opset"][""] = 999


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (_set_attr("pool", "kernel_shape", [-2, -2]), r"node 'pool' \(MaxPool\): attribute kernel_shape=\[-2, -2\]"),
        (_set_attr("pool", "pads", [-1, -1, 0, 0]), r"node 'pool' \(MaxPool\): attribute pads=\[-1, -1, 0, 0\]"),
        (_set_attr("avg", "strides", [0, 0]), r"node 'avg' \(AveragePool\): attribute strides=\[0, 0\]"),
        (_set_attr("conv", "dilations", [-1, 1]), r"node 'conv' \(Conv\): attribute dilations=\[-1, 1\]"),
        (_set_attr("conv", "group", 0), r"node 'conv' \(Conv\): attribute group=0"),
        (_set_attr("conv", "pads", [1, 1]), r"pads=\[1, 1\] has 2 entries, expected 4"),
        (_set_attr("pool", "kernel_shape", [50, 50]), r"window 50 .* larger than input"),
        (_set_attr("pool", "pads", [2, 2, 2, 2]), r"node 'pool' \(MaxPool\): attribute pads=\[2, 2, 2, 2\] must each be smaller than kernel_shape"),
        (_set_attr("conv", "kernel_shape", [1, 1]), r"node 'conv' \(Conv\): attribute kernel_shape=\[1, 1\] does not match the weight"),
        (_set_attr("conv", "group", 2), r"node 'conv' \(Conv\): input 'x' has 2 channels, which group=2"),
        (_set_header("precision", "fp64"), r"header is corrupted: field precision"),
        (_set_header("name", {"nested": 1}), r"header is corrupted: field name"),
        (_overlap, r"memory plan puts tensors '[pq]' and '[pq]', alive at the same time"),
        (_offset_past_arena, r"memory plan places tensor .* past the arena"),
        (_spaces_not_a_mapping, r"document is corrupted: field build/memory/spaces"),
        (_bad_dtype, r"document is corrupted: field values/0/dtype"),
        (_bad_value_index, r"value index 9999 out of range"),
        (_missing_key, r"field graph/nodes/0: 'outputs' is a required property"),
        (_deep_json, r"nested too deeply|nested deeper"),
        (_unknown_section, r"document is corrupted: .*surprise"),
        (_huge_tensor, r"runs past the file end"),
        (_writes_input, r"writes 'x', a graph input"),
        (_opset, r"opset 999 .* does not exist"),
    ],
)
def test_crafted_engine_is_refused(engine_file: Path, mutate, match: str) -> None:
    header, document, blobs = _parts(engine_file)
    mutate(header, document)
    _rewrite(engine_file, header, document, blobs)
    with pytest.raises(EngineFormatError, match=match) as info:
        edge.load(engine_file)
    assert "\n" not in str(info.value)


def test_json_nested_past_the_parser_limit_is_refused(engine_file: Path) -> None:
    import hashlib

    data = engine_file.read_bytes()[:-32]
    head_len = struct.unpack_from("<I", data, 12)[0]
    body = b"[" * 100_000 + b"]" * 100_000
    doc = struct.pack("<Q", len(body)) + body
    header = json.loads(data[16 : 16 + head_len])
    header["body_length"] = len(doc)
    head = json.dumps(header).encode()
    content = MAGIC + struct.pack("<II", FORMAT_VERSION, len(head)) + head + doc
    engine_file.write_bytes(content + hashlib.sha256(content).digest())
    with pytest.raises(EngineFormatError, match="nested too deeply"):
        edge.load(engine_file)


# -- fuzzing ---------------------------------------------------------------------------

_ODD_VALUES: list[Any] = [
    None, True, -1, 0, 1, 7, 2**31, -(2**63), 2**70, 1e308, -0.5, float("nan"), "", "x", "<f4", "|O",
    "\u0000\u001b[2J", [], [-1], [0, 0], [2**40, 2**40], {}, {"__tensor__": {"offset": 0, "dtype": "<f4", "shape": [3]}},
    {"__graph__": {}}, {"__strings__": [1], "shape": [2]},
]


def _paths(item: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(item, dict):
        for key, value in item.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(item, list):
        for index, value in enumerate(item):
            found += _paths(value, prefix + (index,))
    return found


def _mutate_document(rng: random.Random, header: dict, document: dict) -> None:
    target = rng.choice([header, document, document, document])
    path = rng.choice(_paths(target)[1:])
    holder = target
    for key in path[:-1]:
        holder = holder[key]
    action = rng.random()
    if action < 0.15 and isinstance(holder, dict):
        del holder[path[-1]]
    elif action < 0.25 and isinstance(holder, list):
        holder.append(copy.deepcopy(rng.choice(_ODD_VALUES)))
    else:
        holder[path[-1]] = copy.deepcopy(rng.choice(_ODD_VALUES))


def _expect_clean(run) -> str:
    """Run; return 'ok' or the error class name. Anything but an EdgeError fails the test."""
    try:
        run()
    except EdgeError as exc:
        assert "\n" not in str(exc), f"multi-line error: {exc!r}"
        return type(exc).__name__
    return "ok"


def test_fuzz_engine_fields_and_bytes(tmp_path: Path, engine_bytes: bytes) -> None:
    """400 seeded mutations (fields with a recomputed checksum, and raw bytes): each loads and
    runs, or is refused with a one-line EdgeError; never another exception."""
    rng = random.Random(26)
    pristine = tmp_path / "pristine.engine"
    pristine.write_bytes(engine_bytes)
    header, document, blobs = _parts(pristine)
    outcomes: dict[str, int] = {}
    for trial in range(400):
        path = tmp_path / f"m{trial % 4}.engine"
        if trial % 4 == 3:
            data = bytearray(engine_bytes)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            path.write_bytes(bytes(data[: rng.choice([len(data), rng.randrange(len(data))])]))
        else:
            h, d = copy.deepcopy(header), copy.deepcopy(document)
            for _ in range(rng.randint(1, 3)):
                _mutate_document(rng, h, d)
            try:
                _rewrite(path, h, d, blobs)
            except (TypeError, ValueError):  # the mutation made the document unwritable as JSON
                continue
        outcome = _expect_clean(lambda: _load_and_run(path))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("EngineFormatError", 0) > 200, outcomes


def _mutate_model(rng: random.Random, model: onnx.ModelProto) -> None:
    node = rng.choice(list(model.graph.node))
    choice = rng.randrange(5)
    if choice == 0 and node.attribute:
        attr = rng.choice(list(node.attribute))
        if attr.ints:
            attr.ints[rng.randrange(len(attr.ints))] = rng.choice([-(2**40), -3, -1, 0, 2**31, 10**9])
        elif attr.type == onnx.AttributeProto.INT:
            attr.i = rng.choice([-5, 0, 10**12])
    elif choice == 1:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        dims[rng.randrange(len(dims))].dim_value = rng.choice([0, 1, 10**9, 3])
    elif choice == 2:
        model.graph.input[0].type.tensor_type.elem_type = rng.choice([0, 8, 999, 16])
    elif choice == 3:
        node.op_type = rng.choice(["MaxPool", "Conv", "NoSuchOp", "Loop"])
    else:
        init = model.graph.initializer[0]
        init.dims[rng.randrange(len(init.dims))] = rng.choice([0, -1, 2**40, 5])


def test_fuzz_models(tmp_path: Path) -> None:
    """120 seeded model mutations (attributes, dims, element types, op types, initializer
    dims) through build and run: an engine or a one-line EdgeError, never a crash."""
    rng = random.Random(2026)
    outcomes: dict[str, int] = {}
    for _ in range(120):
        model = conv_pool_model()
        for _ in range(rng.randint(1, 2)):
            _mutate_model(rng, model)
        data = model.SerializeToString()

        def build_and_run() -> None:
            engine = edge.build(data, edge.BuilderConfig(optimize=False))
            feeds = {s.name: np.ones([d if isinstance(d, int) else 1 for d in s.shape], s.dtype) for s in engine.inputs}
            engine.create_context().run(feeds)

        outcome = _expect_clean(build_and_run)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert sum(v for k, v in outcomes.items() if k != "ok") > 30, outcomes
