"""INT8 quantization: calibration data, calibrators, TensorRT calibration caches, and the INT8 build stage."""

from edge.quant.accuracy import Agreement, top1_agreement
from edge.quant.apply import (
    NO_SCALES,
    apply_int8,
    mark_explicit,
    onnx_layout,
    onnx_tensor,
    precision_label,
)
from edge.quant.cache import (
    TRT_VERSION,
    CalibrationCache,
    read_cache,
    scale_to_hex,
    write_cache,
)
from edge.quant.calibration import (
    DEFAULT_PERCENTILE,
    Calibration,
    TensorRange,
    calibrate,
    calibration_for,
    calibration_progress,
)
from edge.quant.calibrators import CALIBRATORS, entropy_threshold, percentile_threshold
from edge.quant.data import CalibrationData, load_calibration_data
from edge.quant.images import Preprocess
from edge.quant.numerics import Quantizer, quantize_weight, quantizer_of

__all__ = [
    "Agreement",
    "CALIBRATORS",
    "DEFAULT_PERCENTILE",
    "NO_SCALES",
    "TRT_VERSION",
    "Calibration",
    "CalibrationCache",
    "CalibrationData",
    "Preprocess",
    "Quantizer",
    "TensorRange",
    "apply_int8",
    "calibrate",
    "calibration_for",
    "calibration_progress",
    "entropy_threshold",
    "load_calibration_data",
    "mark_explicit",
    "onnx_layout",
    "onnx_tensor",
    "percentile_threshold",
    "precision_label",
    "quantize_weight",
    "quantizer_of",
    "read_cache",
    "scale_to_hex",
    "top1_agreement",
    "write_cache",
]
