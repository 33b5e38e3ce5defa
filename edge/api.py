"""The public Python API; the CLI is a thin shell over these names."""

from edge.builder import BuilderConfig, build
from edge.compare import compare
from edge.engine import Engine, TensorSpec, load
from edge.errors import EdgeError, EngineFormatError, InputError, ModelImportError, UnsupportedOperatorError
from edge.frontend import load_onnx
from edge.kernels import register_custom_op
from edge.kernels.threads import intra_op_threads, set_intra_op_threads
from edge.partitioner import PartitionOptions, PartitionPlan, partition, plan_partition
from edge.passes import optimize
from edge.profiles import DeviceProfile, list_profiles, load_profile
from edge.runtime.bench import BenchConfig, BenchResult, benchmark
from edge.runtime.context import ExecutionContext

__all__ = [
    "BenchConfig",
    "BenchResult",
    "BuilderConfig",
    "DeviceProfile",
    "EdgeError",
    "Engine",
    "EngineFormatError",
    "ExecutionContext",
    "InputError",
    "ModelImportError",
    "PartitionOptions",
    "PartitionPlan",
    "TensorSpec",
    "UnsupportedOperatorError",
    "benchmark",
    "build",
    "compare",
    "intra_op_threads",
    "list_profiles",
    "load",
    "load_onnx",
    "load_profile",
    "optimize",
    "partition",
    "plan_partition",
    "register_custom_op",
    "set_intra_op_threads",
]
