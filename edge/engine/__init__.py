"""Engine objects and the versioned ``.engine`` file format."""

from edge.engine.engine import Engine, TensorSpec, load, new_header
from edge.engine.format import FORMAT_VERSION, MAGIC

__all__ = ["Engine", "TensorSpec", "load", "new_header", "FORMAT_VERSION", "MAGIC"]
