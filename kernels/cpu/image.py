"""ImageDecoder: encoded image bytes (JPEG, PNG, BMP, TIFF, WebP, PNM, JPEG 2000) to an
[H, W, C] uint8 tensor, decoded by Pillow (the ``image`` extra)."""

from __future__ import annotations

import io

import numpy as np

from edge.errors import KernelError
from edge.kernels.registry import OpContext, register

__all__: list[str] = []

_MODES = {"RGB": "RGB", "BGR": "RGB", "Grayscale": "L"}


@register("ImageDecoder", since=20)
def image_decoder(ctx: OpContext, encoded: np.ndarray) -> np.ndarray:
    """Decode to ``pixel_format`` RGB or BGR ([H, W, 3]) or Grayscale ([H, W, 1])."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise KernelError(f"node '{ctx.node.name}' (ImageDecoder) needs Pillow: pip install 'edgetrt[images]'") from None
    pixel_format = ctx.attr("pixel_format", "RGB")
    if pixel_format not in _MODES:
        raise KernelError(f"node '{ctx.node.name}' (ImageDecoder): pixel_format '{pixel_format}' is not one of {', '.join(_MODES)}")
    try:
        with Image.open(io.BytesIO(encoded.tobytes())) as image:
            pixels = np.asarray(image.convert(_MODES[pixel_format]), np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise KernelError(f"node '{ctx.node.name}' (ImageDecoder): cannot decode its {encoded.size}-byte input: {exc}") from None
    if pixel_format == "Grayscale":
        return pixels[:, :, None].copy()
    return pixels[:, :, ::-1].copy() if pixel_format == "BGR" else pixels
