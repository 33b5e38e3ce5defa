"""One engine as the server exposes it: name, v2 metadata, Triton-style config and request checks."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from edge.engine import Engine, TensorSpec
from edge.errors import InputError
from edge.runtime.context import check_inputs
from edge.serve.protocol import InferRequest, ServeError, datatype_of

__all__ = ["ServedModel", "MODEL_NAME_PATTERN"]

MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_VERSION = "1"


class ServedModel:
    """Wraps an :class:`~edge.engine.Engine` under a model name.

    ``batchable`` is true when every input and output has a dynamic (symbolic) leading
    dimension, the same symbol across the inputs: only then may the batcher stack requests
    along dim 0. Engines with fixed or unrelated leading dims run one request at a time.
    """

    def __init__(self, engine: Engine, name: str) -> None:
        if not MODEL_NAME_PATTERN.fullmatch(name):
            raise ServeError(400, f"model name '{name}' may hold only letters, digits, '_', '.', '-'")
        self.engine = engine
        self.name = name
        self.version = _VERSION
        self.inputs: list[TensorSpec] = engine.inputs
        self.outputs: list[TensorSpec] = engine.outputs
        for spec in (*self.inputs, *self.outputs):
            try:
                datatype_of(spec.dtype)
            except ServeError:
                message = f"model '{name}': tensor '{spec.name}' has dtype {spec.dtype}, which KServe v2 cannot carry"
                raise ServeError(500, message) from None
        self.output_names = [spec.name for spec in self.outputs]
        leading = {spec.shape[0] if spec.shape else 1 for spec in self.inputs}
        self.batchable = (
            len(leading) == 1
            and isinstance(next(iter(leading)), str)
            and all(spec.shape and not isinstance(spec.shape[0], int) for spec in self.outputs)
        )

    def has_version(self, version: str | None) -> bool:
        """True for no version or the one version served."""
        return version is None or version == self.version

    def metadata(self) -> dict[str, Any]:
        """The v2 model metadata object (variable dims are -1)."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "edgetrt_engine",
            "inputs": [_tensor_metadata(spec) for spec in self.inputs],
            "outputs": [_tensor_metadata(spec) for spec in self.outputs],
        }

    def config(self, max_batch: int, max_queue_delay_us: int, instances: int) -> dict[str, Any]:
        """Triton's ``model_configuration`` view: with batching, dims exclude the batch dim."""
        batching = self.batchable and max_batch > 1

        def tensors(specs: list[TensorSpec]) -> list[dict[str, Any]]:
            return [
                {
                    "name": spec.name,
                    "data_type": "TYPE_" + datatype_of(spec.dtype),
                    "dims": [d if isinstance(d, int) else -1 for d in spec.shape[1 if batching else 0 :]],
                }
                for spec in specs
            ]

        config: dict[str, Any] = {
            "name": self.name,
            "platform": "edgetrt_engine",
            "backend": "edgetrt",
            "max_batch_size": max_batch if batching else 0,
            "input": tensors(self.inputs),
            "output": tensors(self.outputs),
            "instance_group": [{"count": instances, "kind": "KIND_CPU" if self.engine.profile == "cpu" else "KIND_GPU"}],
            "parameters": {"precision": {"string_value": self.engine.precision}, "profile": {"string_value": self.engine.profile}},
        }
        if batching:
            config["dynamic_batching"] = {"max_queue_delay_microseconds": max_queue_delay_us}
        return config

    def validate(self, request: InferRequest) -> dict[str, np.ndarray]:
        """Check a decoded request against the engine; returns feeds in engine input order.

        Raises:
            ServeError: 400 naming the input or output that does not fit.
        """
        by_name = {spec.name: spec for spec in self.inputs}
        for name, datatype in request.datatypes.items():
            spec = by_name.get(name)
            if spec is not None and datatype != datatype_of(spec.dtype):
                raise ServeError(400, f"input '{name}' has datatype {datatype}, model '{self.name}' expects {datatype_of(spec.dtype)}")
        try:
            check_inputs(self.inputs, request.inputs)
        except InputError as exc:
            raise ServeError(400, f"model '{self.name}': {exc}") from None
        for want in request.outputs or ():
            if want.name not in self.output_names:
                raise ServeError(400, f"unknown output '{want.name}'; model '{self.name}' has outputs {self.output_names}")
        return {spec.name: request.inputs[spec.name] for spec in self.inputs}


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": datatype_of(spec.dtype), "shape": [d if isinstance(d, int) else -1 for d in spec.shape]}
