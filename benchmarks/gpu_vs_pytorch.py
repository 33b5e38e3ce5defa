"""GPU benchmark: edgetrt's CUDA backend against PyTorch on the same card, same run.

Builds torchvision ResNet-50 / ResNet-18 / MobileNetV2 and a BERT-base-sized encoder (random
weights, BatchNorm given random running statistics, BERT's biases and LayerNorm scales drawn
as a trained checkpoint has them) exported to ONNX, checks edgetrt's
outputs against onnxruntime (CPU) and times edgetrt's context.run against PyTorch eager and
CUDA-graph replay: edgetrt's GPU compute (device events, CUDA graph replayed) against
PyTorch's CUDA-event timings, and its end-to-end run beside. Prints a table of medians (ms)
and ratios; ``--json`` writes the rows. An INT8 row is calibrated on ``CALIB_SAMPLES`` random
samples, or one batch where the row's is larger (float inputs standard normal, integer inputs the example's) and timed against
PyTorch in FP16, the fastest precision PyTorch runs these models in on the GPU; its check
is against onnxruntime's FP32 output (cosine >= 0.99).

    python benchmarks/gpu_vs_pytorch.py --models resnet18,resnet50 --batches 1 --precisions fp32,fp16
    python benchmarks/gpu_vs_pytorch.py --models resnet50 --batches 1,32 --precisions fp16,int8
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

MODELS = ("resnet50", "resnet18", "mobilenet_v2", "bert")
CALIB_SAMPLES = 32
"""Samples an INT8 row calibrates on (whole batches of the row's size, at least one): the
calibration runs on the host CPU, and 4 batches of 32 ResNet-50 images took minutes there."""


def _last_hidden_state(bert):
    """BERT called with keyword arguments only, returning its last hidden state: the ONNX
    tracer passes inputs positionally, which transformers' forward wrappers refuse."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids):
            return self.bert(input_ids=input_ids, return_dict=True).last_hidden_state

    return Encoder()


def torch_model(name: str, batch: int):
    """(module, example inputs, ONNX input names) with random weights and BN statistics."""
    import torch

    torch.manual_seed(0)
    if name == "bert":
        from transformers import BertConfig, BertModel

        config = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, use_cache=False)
        bert = BertModel(config).eval()
        with torch.no_grad():  # biases and LayerNorm affines as a trained checkpoint has them (the init's zeros and ones fold away)
            for param_name, param in bert.named_parameters():
                if param_name.endswith("bias"):
                    param.normal_(0.0, 0.02)
                elif param_name.endswith("LayerNorm.weight"):
                    param.uniform_(0.9, 1.1)
        module = _last_hidden_state(bert).eval()
        ids = torch.randint(0, config.vocab_size, (batch, 128))
        return module, (ids,), ["input_ids"]
    import torchvision

    module = getattr(torchvision.models, name)(weights=None).eval()
    for layer in module.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.running_mean.uniform_(-0.2, 0.2)
            layer.running_var.uniform_(0.5, 1.5)
    return module, (torch.randn(batch, 3, 224, 224),), ["input"]


def export(module, example, names: list[str], path: Path) -> None:
    import torch

    torch.onnx.export(module, example, str(path), input_names=names, opset_version=17, dynamo=False)


def cuda_median_ms(fn, iters: int) -> float:
    """Median of CUDA-event timings of ``fn`` after warm-up (PyTorch side)."""
    import torch

    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def wall_median_ms(fn, iters: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def gpu_compute_median_ms(context, feeds, iters: int) -> float:
    """Median GPU compute time of edgetrt's runs (device events, ``last_times.compute_ms``)."""
    times = []
    for _ in range(iters):
        context.run(feeds)
        times.append(context.last_times.compute_ms)
    return statistics.median(times)


def layer_profile(context, feeds, runs: int = 10) -> list[dict]:
    """Per-layer GPU times (device events per step, no graph) over ``runs`` runs, longest first."""
    from edge.runtime.bench import LayerProfiler

    profiler = LayerProfiler()
    context.layer_profiler = profiler
    try:
        for _ in range(runs):
            context.run(feeds)
    finally:
        context.layer_profiler = None
    rows = sorted(profiler.rows(runs), key=lambda r: -r["median_ms"])
    return [{k: r[k] for k in ("name", "op", "kernel", "tactic", "precision", "median_ms")} for r in rows]


def tactic_sources(engine) -> dict[str, int]:
    """How many steps each tactic source won (nvrtc / cudnn / cublaslt), INT8 steps apart
    ("cudnn-int8": cuDNN's INT8 convolutions, "nvrtc-int8": the IMMA kernels)."""
    counts: dict[str, int] = {}
    for step in engine.plan.steps:
        if step.tactic is not None:
            source = step.tactic.params.get("source", "nvrtc") + ("-int8" if step.precision == "int8" else "")
            counts[source] = counts.get(source, 0) + 1
    return counts


def pytorch_times(module, example, precision: str, iters: int, compile_too: bool) -> tuple[float, float, float | None]:
    """(eager ms, CUDA-graph replay ms, ``torch.compile`` ms or None) on the GPU, in FP16 for
    edgetrt's FP16 and INT8 rows."""
    import torch

    dtype = torch.float32 if precision == "fp32" else torch.float16
    model = module.to("cuda", dtype=dtype)
    inputs = [x.to("cuda") if x.dtype == torch.int64 else x.to("cuda", dtype=dtype) for x in example]
    torch.backends.cudnn.benchmark = True
    with torch.inference_mode():
        eager = cuda_median_ms(lambda: model(*inputs), iters)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                model(*inputs)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(*inputs)
        replay = cuda_median_ms(graph.replay, iters)
        compiled = None
        if compile_too:
            fast = torch.compile(model)
            compiled = cuda_median_ms(lambda: fast(*inputs), iters)
    module.to("cpu", dtype=torch.float32)
    return eager, replay, compiled


def check(outputs: list[np.ndarray], reference: list[np.ndarray], precision: str) -> tuple[float, float, bool]:
    """(max relative error, cosine, pass) of the first output against onnxruntime."""
    a, b = outputs[0].astype(np.float64).ravel(), reference[0].astype(np.float64).ravel()
    rel = float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))
    cosine = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
    ok = rel <= 1e-3 if precision == "fp32" else cosine >= (0.999 if precision == "fp16" else 0.99)
    return rel, cosine, ok


def calibration_folder(folder: Path, names: list[str], example) -> Path:
    """Random batches shaped like ``example``, ``CALIB_SAMPLES`` samples or one batch, as one
    .npz keyed by input name."""
    rng = np.random.default_rng(0)
    arrays = {}
    for name, x in zip(names, example):
        x = x.numpy()
        count = max(1, CALIB_SAMPLES // x.shape[0])
        batches = [rng.standard_normal(x.shape).astype(x.dtype) if x.dtype.kind == "f" else x for _ in range(count)]
        arrays[name] = np.concatenate(batches)
    folder.mkdir(exist_ok=True)
    np.savez(folder / "calibration.npz", **arrays)
    return folder


def progress(message: str) -> None:
    """A timestamped progress line on stderr (where a long build spends its time)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1")
    parser.add_argument("--precisions", default="fp32,fp16")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--timing-cache", type=Path, default=None,
                        help="timing cache file shared by every build: a second run with it times the warm rebuild")
    parser.add_argument("--torch-compile", action="store_true", help="also time torch.compile (inductor, default mode; a minute of compiling per row)")
    parser.add_argument("--layers", action="store_true", help="record each row's per-layer GPU profile in the JSON")
    parser.add_argument("--compare-nchw", action="store_true",
                        help="also build each FP16 row with channels_last=False and time its GPU compute (NHWC regions against none)")
    parser.add_argument("--int8-pinned", action="store_true",
                        help="INT8 rows pin every calibrated layer to INT8 (--layer-precisions '*:int8'); by default a layer runs FP16 where that times faster")
    parser.add_argument("--compare-int8-storage", action="store_true",
                        help="also build each INT8 row with int8_storage=False (float16 between layers) and time its GPU compute")
    parser.add_argument("--stall-traces", type=float, default=0, metavar="SECONDS",
                        help="print every thread's Python stack to stderr each SECONDS (where a slow build is stuck)")
    args = parser.parse_args()
    if args.stall_traces > 0:
        faulthandler.dump_traceback_later(args.stall_traces, repeat=True)

    import onnxruntime as ort
    import torch

    import edge

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; host {describe()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                module, example, names = torch_model(name, batch)
                path = Path(tmp) / f"{name}_b{batch}.onnx"
                progress(f"{name} b{batch}: exporting to ONNX")
                export(module, example, names, path)
                feeds = {n: x.numpy() for n, x in zip(names, example)}
                reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
                for precision in args.precisions.split(","):
                    row = {"model": name, "batch": batch, "precision": precision}
                    progress(f"{name} b{batch} {precision}: building")
                    try:
                        start = time.perf_counter()
                        calib = calibration_folder(Path(tmp) / f"{name}_b{batch}_calib", names, example) if precision == "int8" else None
                        int8 = {"calib_data": calib, "calib_cache": Path(tmp) / f"{name}_b{batch}.calib",  # the warm build reads the scales back
                                "layer_precisions": {"*": "int8"} if args.int8_pinned else None} if precision == "int8" else {}
                        config = edge.BuilderConfig(profile="desktop-cuda", precision=precision, timing_cache=args.timing_cache, **int8)
                        engine = edge.build(str(path), config)
                        row["build_s"] = round(time.perf_counter() - start, 2)
                        row["build_stages_s"] = {k: round(v, 2) for k, v in engine.build.get("timings_s", {}).items()}
                        row["slowest_tactics"] = engine.build.get("tactics", {}).get("slowest", [])
                        progress(f"{name} b{batch} {precision}: built in {row['build_s']} s, stages {row['build_stages_s']}; "
                                 f"slowest tactic choices {row['slowest_tactics'][:3]}")
                        if args.timing_cache is not None:  # the same build again, every tactic's time from the cache
                            start = time.perf_counter()
                            edge.build(str(path), config)
                            row["warm_build_s"] = round(time.perf_counter() - start, 2)
                        progress(f"{name} b{batch} {precision}: checking and timing edgetrt")
                        context = engine.create_context()
                        outputs = list(context.run(feeds).values())
                        row["max_rel_err"], row["cosine"], row["ok"] = check(outputs, reference, precision)
                        row["edgetrt_ms"] = wall_median_ms(lambda: context.run(feeds), args.iters)
                        row["edgetrt_gpu_ms"] = gpu_compute_median_ms(context, feeds, args.iters)
                        if args.layers:
                            row["layers"] = layer_profile(context, feeds)
                        row["nhwc_regions"] = engine.build.get("layout", {}).get("converted_regions", 0)
                        row["int8_stored_tensors"] = engine.build.get("int8_storage", {}).get("tensors", 0)
                        alternatives = [("edgetrt_nchw_gpu_ms", "NCHW throughout", args.compare_nchw and precision == "fp16", {"channels_last": False}),
                                        ("edgetrt_fp16_storage_gpu_ms", "float16 storage between INT8 layers",
                                         args.compare_int8_storage and precision == "int8", {"int8_storage": False})]
                        for key, what, wanted, changes in alternatives:
                            if wanted:
                                progress(f"{name} b{batch} {precision}: building and timing {what}")
                                other = edge.build(str(path), dataclasses.replace(config, **changes)).create_context()
                                other.run(feeds)
                                row[key] = gpu_compute_median_ms(other, feeds, args.iters)
                        row["tactics"] = tactic_sources(engine)
                        row["gpu_steps"] = sum(s.backend == "cuda" for s in engine.plan.steps if s.kind == "kernel")
                        row["int8_kernel_steps"] = sum((s.kernel or "").startswith("int8.imma_") for s in engine.plan.steps if s.backend == "cuda")
                        row["int8_layers_run_fp16"] = len(engine.build.get("tactics", {}).get("int8_faster_in_fp16", []))
                        row["cpu_steps"] = sum(s.backend != "cuda" for s in engine.plan.steps if s.kind == "kernel")
                    except Exception as exc:  # noqa: BLE001  (a benchmark row reports its failure and goes on)
                        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
                    progress(f"{name} b{batch} {precision}: timing PyTorch")
                    row["torch_eager_ms"], row["torch_graph_ms"], row["torch_compile_ms"] = pytorch_times(module, example, precision, args.iters, args.torch_compile)
                    if "edgetrt_gpu_ms" in row:
                        row["vs_graph"] = row["edgetrt_gpu_ms"] / row["torch_graph_ms"]
                    rows.append(row)
                    print(json.dumps({k: v for k, v in row.items() if k != "layers"}), flush=True)
                    if args.json:  # after every row, so a run cut off by a time limit keeps what it measured
                        args.json.write_text(json.dumps(rows, indent=1))
    print(f"\n{'model':<13}{'prec':<6}{'batch':>5}{'gpu ms':>9}{'alt ms':>9}{'e2e ms':>9}{'eager ms':>10}{'graph ms':>10}{'compile':>9}{'vs graph':>9}{'build s':>9}  check")
    for r in rows:
        gpu = f"{r['edgetrt_gpu_ms']:.3f}" if "edgetrt_gpu_ms" in r else "error"
        e2e = f"{r['edgetrt_ms']:.3f}" if "edgetrt_ms" in r else "-"
        alternative = r.get("edgetrt_nchw_gpu_ms", r.get("edgetrt_fp16_storage_gpu_ms"))
        nchw = f"{alternative:.3f}" if alternative is not None else "-"
        compiled = f"{r['torch_compile_ms']:.3f}" if r.get("torch_compile_ms") is not None else "-"
        ratio = f"{r['vs_graph']:.2f}x" if "vs_graph" in r else "-"
        build = f"{r['build_s']:.1f}" + (f"/{r['warm_build_s']:.1f}" if "warm_build_s" in r else "") if "build_s" in r else "-"
        verdict = r.get("error") or (f"{'ok' if r['ok'] else 'FAIL'} rel {r['max_rel_err']:.1e} cos {r['cosine']:.5f}")
        print(f"{r['model']:<13}{r['precision']:<6}{r['batch']:>5}{gpu:>9}{nchw:>9}{e2e:>9}{r['torch_eager_ms']:>10.3f}{r['torch_graph_ms']:>10.3f}{compiled:>9}{ratio:>9}{build:>9}  {verdict}")
    print("gpu ms: edgetrt's GPU compute per run (device events around its kernels, the CUDA graph replayed once warm);"
          " alt ms: an FP16 row built with channels_last=False (--compare-nchw), an INT8 row with float16 between layers (--compare-int8-storage); e2e ms: context.run wall time with H2D/D2H; vs graph: gpu ms / PyTorch's CUDA-graph replay (< 1: edgetrt faster;"
          " INT8 rows against PyTorch FP16); compile: torch.compile's CUDA-event median; build s: cold/warm timing cache)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
