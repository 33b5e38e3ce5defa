"""edgetrt: ONNX -> optimized engines for NVIDIA Jetson, with a CPU reference runtime.

Typical use::

    import edge
    engine = edge.build("model.onnx", edge.BuilderConfig(precision="fp16"))
    engine.save("model.engine")
    outputs = edge.load("model.engine").create_context().run({"input": x})
"""

from edge.version import __version__

from edge.api import *  # noqa: E402,F401,F403
from edge.api import __all__ as _api_all  # noqa: E402

__all__ = ["__version__", *_api_all]
