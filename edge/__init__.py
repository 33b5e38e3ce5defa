"""edgetrt: ONNX -> optimized engines for NVIDIA Jetson, with a CPU reference runtime."""

__version__ = "0.1.0"
