"""Model importers (ONNX -> IR) and exporters."""

from edge.frontend.onnx_import import import_model, load_model_proto, load_onnx, unsupported_operators

__all__ = ["import_model", "load_model_proto", "load_onnx", "unsupported_operators"]
