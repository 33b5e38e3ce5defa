"""`edgetrt serve` under concurrent load, with and without dynamic batching.

Builds an MLP engine (x[N, 256] -> 1024 -> 1024 -> 64, ReLU), starts `edgetrt serve` as its own
process on loopback for each configuration, and drives it with closed-loop Triton HTTP
clients (one request = one row, binary tensors). Every reply is checked against numpy on
that request's own input. Prints throughput and latency percentiles per configuration.

    python benchmarks/serve_load.py [--clients 16] [--requests 200] [--max-batch 16] [--delay-ms 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# One BLAS thread per process: on a shared or small CPU, OpenBLAS's default thread pool spins
# against the serving threads and the clients (one early run here without this setting
# reached about 40 requests/s instead of several hundred).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edge  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from tests.serve.load import run_load  # noqa: E402

_SIZES = (256, 1024, 1024, 64)


def _weights() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        ((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), rng.standard_normal(b).astype(np.float32) * 0.1)
        for a, b in zip(_SIZES, _SIZES[1:])
    ]


def _model(weights):
    nodes, inits, last = [], [], "x"
    for i, (w, b) in enumerate(weights):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = "y" if i == len(weights) - 1 else f"h{i}"
        nodes += [helper.make_node("Gemm", [last, f"w{i}", f"b{i}"], [f"g{i}"]), helper.make_node("Relu", [f"g{i}"], [out])]
        last = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", _SIZES[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", _SIZES[-1]])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _oracle(weights):
    def run(x: np.ndarray) -> np.ndarray:
        for w, b in weights:
            x = np.maximum(x @ w + b, 0)
        return x

    return run


def _serve(engine: Path, flags: list[str]) -> tuple[subprocess.Popen, int]:
    cli = "import sys; from edge.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", cli, "serve", f"mlp={engine}", "--port", "0", *flags], stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    if "serving" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line}{proc.stderr.read()}")
    return proc, int(line.split("http://127.0.0.1:")[1].split(";")[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=200, help="per client")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--delay-ms", type=float, default=2.0)
    parser.add_argument("--instances", type=int, default=1)
    args = parser.parse_args()

    weights = _weights()
    oracle = _oracle(weights)
    configs = {
        "no batching (--max-batch 1)": ["--max-batch", "1", "--instances", str(args.instances)],
        f"dynamic batching (--max-batch {args.max_batch} --max-queue-delay-ms {args.delay_ms:g})": [
            "--max-batch", str(args.max_batch), "--max-queue-delay-ms", str(args.delay_ms), "--instances", str(args.instances),
        ],
    }
    print(f"# {datetime.date.today()} | {describe()} | edgetrt {edge.__version__}")
    print(f"# model: MLP {'-'.join(map(str, _SIZES))} fp32 (cpu profile); {args.clients} clients x {args.requests} requests, 1 row each")
    print("| configuration | requests/s | p50 ms | p99 ms | failed | wrong |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        engine = Path(tmp) / "mlp.engine"
        edge.build(_model(weights)).save(engine)
        for label, flags in configs.items():
            proc, port = _serve(engine, flags)
            try:
                run_load(f"127.0.0.1:{port}", "mlp", "x", "y", (1, _SIZES[0]), oracle, clients=args.clients, requests=5)  # warm-up
                result = run_load(
                    f"127.0.0.1:{port}", "mlp", "x", "y", (1, _SIZES[0]), oracle, clients=args.clients, requests=args.requests, seed=1000
                )
            finally:
                proc.terminate()
                proc.wait()
            print(
                f"| {label} | {result.throughput:.0f} | {result.percentile_ms(50):.2f} | {result.percentile_ms(99):.2f} "
                f"| {len(result.failures)} | {len(result.mismatches)} |"
            )
    load = os.getloadavg()[0]
    print(f"# OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}; client and server share the machine (load average {load:.1f})")


if __name__ == "__main__":
    main()
