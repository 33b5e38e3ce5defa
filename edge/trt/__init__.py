"""The Jetson hand-off: edgetrt's plan as TensorRT inputs (ONNX, calibration cache, trtexec flags)."""

from edge.trt.export import ExportResult, export_for_tensorrt
from edge.trt.settings import LayerSetting, NetworkSettings, network_settings
from edge.trt.versions import TRT_TARGETS, TrtTarget, trt_target

__all__ = ["ExportResult", "LayerSetting", "NetworkSettings", "TRT_TARGETS", "TrtTarget", "export_for_tensorrt", "network_settings", "trt_target"]
