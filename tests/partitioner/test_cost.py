"""Cost-model terms against hand arithmetic: wave quantization, DLA per-image costs, epilogue
fusion, deployment throughput, the fit recovering known constants, and the profiles' cost section."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

import edge
from edge.errors import ProfileError
from edge.partitioner.cost import CostModel, LayerWork, WorkArrays, network_work
from edge.partitioner.fit import Observation, fit_constants, with_values
from edge.partitioner.plan import Estimate, LayerPlan, PartitionPlan
from edge.partitioner.throughput import deployments
from edge.passes import optimize
from edge.profiles import load_profile, parse_profile, replace_cost_section
from tests.partitioner.models import resnet50, yolo_detector

PROFILE = load_profile("agx-orin-64gb")
MAXN = PROFILE.power_mode("MAXN")


def conv_work(batch: int, side: int = 7, cin: int = 512, cout: int = 512) -> LayerWork:
    rows = batch * side * side
    return LayerWork("conv", 2.0 * rows * cout * cin * 9, batch * side * side * (cin + cout), cout * cin * 9, batch, rows, cout, True)


def test_wave_quantization_by_hand() -> None:
    """7x7x512 3x3 conv: batch 1 is 49 x 512 outputs -> 64-row tiles (next power of two), 128-wide:
    1 x 4 = 4 tiles on 16 SMs (1 CTA each) -> util = 49/64 x 4/16; batch 16 = 784 rows -> 7 x 4 = 28
    tiles of 128, two waves of 16 -> util = 784/896 x 28/32."""
    model = CostModel(PROFILE, MAXN)
    util = model.wave_util(WorkArrays([conv_work(1), conv_work(16)]))
    assert util[0] == pytest.approx(49 / 64 * 4 / 16)
    assert util[1] == pytest.approx(784 / 896 * 28 / 32)
    per_image = model.gpu_times(WorkArrays([conv_work(1), conv_work(16)]), "int8") / np.array([1, 16])
    assert per_image[1] < 0.5 * per_image[0]  # GPU efficiency rises with batch


def test_dla_runs_a_batch_image_by_image() -> None:
    model = CostModel(PROFILE, MAXN)
    c = PROFILE.cost.dla
    one, eight = model.dla_times(WorkArrays([conv_work(1), conv_work(8)]), ["int8", "int8"])
    assert eight == pytest.approx(8 * one)
    flops = conv_work(1).flops
    compute = flops / (PROFILE.dla.peak_int8_tops * 1e12 * c.eff_conv.value) * 1e3
    memory = (conv_work(1).activations + conv_work(1).weights) / (c.bandwidth_gbps.value * 1e9) * 1e3
    assert one == pytest.approx(max(compute, memory) + c.layer_ms.value)
    assert model.dla_subgraph_ms(4) == pytest.approx(c.submit_ms.value + 4 * c.image_ms.value)
    big = WorkArrays([conv_work(1, side=80, cin=256, cout=256)])  # compute-bound: 2:4 sparsity speeds it up
    dense, sparse = model.dla_times(big, ["int8"])[0], model.dla_times(big, ["int8"], sparse=True)[0]
    assert sparse - c.layer_ms.value == pytest.approx((dense - c.layer_ms.value) / c.sparse_speedup.value, rel=0.01)


def test_unfused_exports_cost_what_fused_engines_do() -> None:
    """Conv + Relu + Add as separate ONNX nodes cost the same as edgetrt's FusedConv (TensorRT fuses them)."""
    model = CostModel(PROFILE, MAXN)
    raw = edge.load_onnx(resnet50())
    fused = edge.load_onnx(resnet50())
    optimize(fused)
    costs = [float(model.gpu_times(WorkArrays(network_work(g.nodes)), "int8").sum()) for g in (raw, fused)]
    assert costs[0] == pytest.approx(costs[1], rel=0.05)
    works = network_work(raw.nodes)
    assert sum(w.fused for w in works) == 49 + 16  # every Relu and residual Add after a conv


def test_dla_runs_silu_as_sigmoid_and_product() -> None:
    """A conv fused with SiLU is one GPU kernel, but the DLA writes the sigmoid, reads it back and reads
    the conv output again: 3 extra passes over the output on the DLA only."""
    graph = edge.load_onnx(yolo_detector())
    optimize(graph)
    stem = graph.nodes[0]
    assert stem.op_type == "FusedConv" and stem.attrs["activation"] == "SiLU"
    work = network_work([stem])[0]
    assert work.dla_extra_activations == 3 * 16 * 160 * 160
    relu = dataclasses.replace(work, dla_extra_activations=0.0)
    model = CostModel(PROFILE, MAXN)
    gpu = model.gpu_times(WorkArrays([work, relu]), "int8")
    dla = model.dla_times(WorkArrays([work, relu]), ["int8", "int8"])
    assert gpu[0] == gpu[1]
    extra = 3 * 16 * 160 * 160 / (PROFILE.cost.dla.bandwidth_gbps.value * 1e9) * 1e3
    assert dla[0] - dla[1] == pytest.approx(extra, rel=0.01)  # the stem is memory-bound on the DLA


def test_deployment_throughput_by_hand() -> None:
    model = CostModel(PROFILE, MAXN)
    f2, f3 = model.concurrent_factor(2), model.concurrent_factor(3)
    gpu = Estimate(2.0, 2.0, 0.0, 0.0, 0, 10, 0, 0)
    dla = Estimate(5.0, 0.5, 4.5, 0.0, 9, 1, 1, 2)
    rows = {d.name: d for d in deployments(gpu, dla, 2, 4, model)}
    assert rows["GPU"].images_per_s == pytest.approx(4 * 1000 / 2.0)
    assert rows["DLA0 + GPU fallback"].images_per_s == pytest.approx(4 * 1000 / 5.0)
    assert rows["2xDLA"].images_per_s == pytest.approx(2 * 4 * 1000 / (5.0 * f2))
    # the two DLA copies use 2 x 0.5 ms of GPU per 5 ms; the GPU copy gets the rest
    dla_rate = 2 / (5.0 * f3)
    gpu_rate = (1 - dla_rate * 0.5 * f3) / (2.0 * f3)
    assert rows["GPU + 2xDLA"].images_per_s == pytest.approx(4 * 1000 * (dla_rate + gpu_rate))


def test_fit_recovers_known_constants() -> None:
    """Observations made with known launch cost and DLA per-layer cost; the fit finds them again."""
    truth = with_values(PROFILE.cost, {"gpu.launch_ms": 0.02, "dla.layer_ms": 0.01}, "truth")
    works = [WorkArrays([conv_work(b, side) for _ in range(n)]) for b, side, n in ((1, 7, 5), (8, 14, 3), (2, 28, 20))]

    def observations(kind: str) -> list[Observation]:
        found = []
        for k, work in enumerate(works):
            def predict(cost, work=work):
                model = CostModel(PROFILE, MAXN, cost)
                times = model.gpu_times(work, "fp16") if kind == "gpu" else model.dla_times(work, ["int8"] * len(work))
                return float(times.sum())
            found.append(Observation(f"{kind}{k}", kind, predict(truth), predict))
        return found

    result = fit_constants(PROFILE.cost, observations("gpu") + observations("dla"), ["gpu.launch_ms", "dla.layer_ms"], "test fit")
    assert result.cost.gpu.launch_ms.value == pytest.approx(0.02, rel=1e-3)
    assert result.cost.dla.layer_ms.value == pytest.approx(0.01, rel=1e-3)
    assert result.cost.dla.layer_ms.source == "test fit" and result.cost.dla.image_ms == PROFILE.cost.dla.image_ms


def test_cost_section_in_profiles(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "profiles" / "orin-nx-16gb.yaml").read_text()
    profile = parse_profile(text, "nx.yaml")
    assert "AGX Orin 64GB" in profile.cost.dla.layer_ms.source  # fitted on the 64GB module, says so
    changed = with_values(profile.cost, {"dla.layer_ms": 0.5}, "my board")
    again = parse_profile(replace_cost_section(text, changed), "nx.yaml")
    assert again.cost.dla.layer_ms.value == 0.5 and again.cost.gpu == profile.cost.gpu and again.power_modes == profile.power_modes
    data = yaml.safe_load(text)
    del data["cost"]["dla"]
    with pytest.raises(ProfileError, match="key 'cost.dla': required because the profile has a DLA"):
        parse_profile(yaml.safe_dump(data), "nx.yaml")
    data = yaml.safe_load(text)
    data["cost"]["gpu"]["launch_ms"] = 0.01
    with pytest.raises(ProfileError, match="key 'cost.gpu.launch_ms': expected a mapping"):
        parse_profile(yaml.safe_dump(data), "nx.yaml")


def test_engine_files_without_refusal_codes_still_load() -> None:
    record = dataclasses.asdict(LayerPlan("conv", "Conv", ["conv"], "gpu", "int8", "Conv 'conv': kernel 35x35 exceeds DLA limit 32"))
    del record["code"]
    plan = {"profile": "agx-orin-64gb", "power_mode": 0, "power_mode_name": "MAXN", "dla_core": 0, "dla_version": 2,
            "gpu_fallback": True, "precision": "int8", "objective": "latency", "latency_budget_ms": None, "algorithm": "greedy",
            "layers": [record], "subgraphs": [], "estimates": {}}
    loaded = PartitionPlan.from_dict(plan)
    assert loaded.layers[0].code is None and loaded.layers[0].reason.endswith("exceeds DLA limit 32")
