"""The public Python API; the CLI is a thin shell over these names."""

from edge.builder import BuilderConfig, build
from edge.engine import Engine, TensorSpec, load
from edge.errors import EdgeError, EngineFormatError, InputError, ModelImportError, UnsupportedOperatorError
from edge.frontend import load_onnx
from edge.kernels import register_custom_op
from edge.runtime.context import ExecutionContext

__all__ = [
    "BuilderConfig",
    "EdgeError",
    "Engine",
    "EngineFormatError",
    "ExecutionContext",
    "InputError",
    "ModelImportError",
    "TensorSpec",
    "UnsupportedOperatorError",
    "build",
    "load",
    "load_onnx",
    "register_custom_op",
]
