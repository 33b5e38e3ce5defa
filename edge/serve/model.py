"""One engine version as the server exposes it: v2 metadata, its Triton model config, request checks.

Every served model has one :data:`~edge.serve.modelconfig.ModelConfig` message, the single
source for its batching, instances and ``/config`` answer: built from the CLI flags for an
engine file (:func:`engine_config`), or read from ``config.pbtxt`` and checked against the
engine (:func:`checked_config`) for a model repository.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from google.protobuf.message import Message

from edge.engine import Engine, TensorSpec
from edge.errors import InputError
from edge.runtime.context import check_inputs
from edge.serve.batcher import BatchingConfig
from edge.serve.metrics import ModelStats
from edge.serve.modelconfig import ModelConfig, config_to_json, data_type_name, data_type_number
from edge.serve.protocol import InferRequest, ServeError, datatype_of

__all__ = ["ServedModel", "MODEL_NAME_PATTERN", "engine_config", "checked_config", "batchable"]

MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_PLATFORM = "edgetrt_engine"


def batchable(engine: Engine) -> bool:
    """True when every input and output has a dynamic leading dim, the same symbol across inputs.

    Only then may requests be stacked along dim 0; a leading dim fixed in the engine (often
    1) means every request runs alone whatever ``--max-batch`` says.
    """
    leading = {spec.shape[0] if spec.shape else 1 for spec in engine.inputs}
    return (
        len(leading) == 1
        and not isinstance(next(iter(leading)), int)
        and all(spec.shape and not isinstance(spec.shape[0], int) for spec in engine.outputs)
    )


def engine_config(engine: Engine, name: str, batching: BatchingConfig) -> Message:
    """The model config of an engine file served with the CLI's batching flags."""
    config = ModelConfig(name=name)
    config.max_batch_size = batching.max_batch if batchable(engine) and batching.max_batch > 1 else 0
    if config.max_batch_size:
        config.dynamic_batching.max_queue_delay_microseconds = round(batching.max_queue_delay_s * 1e6)
    config.dynamic_batching.default_queue_policy.max_queue_size = batching.max_queue
    config.instance_group.add(count=batching.instances)
    if not config.max_batch_size:  # Triton: no dynamic_batching block without batching
        config.ClearField("dynamic_batching")
    return _completed(engine, config, batching.max_queue)


def checked_config(engine: Engine, declared: Message, name: str, where: str, max_queue: int) -> Message:
    """``declared`` (from config.pbtxt) checked against the engine and completed from it.

    Raises:
        ServeError: 400 naming the field that contradicts the engine.
    """
    config = ModelConfig()
    config.CopyFrom(declared)
    if config.name and config.name != name:
        raise ServeError(400, f"{where}: name '{config.name}' differs from its folder name '{name}'")
    config.name = name
    if config.platform and config.platform != _PLATFORM:
        raise ServeError(400, f"{where}: platform '{config.platform}' cannot be served by edgetrt; use '{_PLATFORM}'")
    if config.max_batch_size < 0:
        raise ServeError(400, f"{where}: max_batch_size must be >= 0, got {config.max_batch_size}")
    if config.max_batch_size > 0 and not batchable(engine):
        shapes = ", ".join(spec.describe() for spec in engine.inputs)
        raise ServeError(
            400, f"{where}: max_batch_size {config.max_batch_size} needs a dynamic leading (batch) dim, the engine has {shapes}"
        )
    skip = 1 if config.max_batch_size > 0 else 0
    for declared_tensors, specs, kind in ((config.input, engine.inputs, "input"), (config.output, engine.outputs, "output")):
        by_name = {spec.name: spec for spec in specs}
        for tensor in declared_tensors:
            spec = by_name.get(tensor.name)
            if spec is None:
                raise ServeError(400, f"{where}: {kind} '{tensor.name}' is not in the engine, which has {sorted(by_name)}")
            _check_tensor(tensor, spec, skip, f"{where}: {kind} '{tensor.name}'")
    return _completed(engine, config, max_queue)


def _check_tensor(tensor: Message, spec: TensorSpec, skip: int, where: str) -> None:
    want = "TYPE_" + datatype_of(spec.dtype)
    got = data_type_name(tensor.data_type)
    if got != want:
        raise ServeError(400, f"{where} has data_type {got}, the engine has {want}")
    engine_dims = [d if isinstance(d, int) else -1 for d in spec.shape[skip:]]
    if list(tensor.dims) != engine_dims:
        raise ServeError(400, f"{where} has dims {list(tensor.dims)}, the engine has {engine_dims} (batch dim excluded: {bool(skip)})")


def _completed(engine: Engine, config: Message, max_queue: int) -> Message:
    """Fill what the config leaves out from the engine: platform, tensors, instances, queue size."""
    config.platform, config.backend = _PLATFORM, "edgetrt"
    skip = 1 if config.max_batch_size > 0 else 0
    for declared, specs in ((config.input, engine.inputs), (config.output, engine.outputs)):
        if not declared:
            for spec in specs:
                declared.add(name=spec.name, data_type=data_type_number(datatype_of(spec.dtype)), dims=[d if isinstance(d, int) else -1 for d in spec.shape[skip:]])
    if not config.instance_group:
        config.instance_group.add(count=1)
    for group in config.instance_group:
        group.count = group.count or 1
        group.kind = group.kind or (2 if engine.profile == "cpu" else 1)  # KIND_CPU / KIND_GPU
    if config.HasField("dynamic_batching") and not config.dynamic_batching.default_queue_policy.max_queue_size:
        config.dynamic_batching.default_queue_policy.max_queue_size = max_queue
    config.parameters["precision"].string_value = engine.precision
    config.parameters["profile"].string_value = engine.profile
    return config


class ServedModel:
    """An :class:`~edge.engine.Engine` served as one version of a named model, with its statistics."""

    def __init__(self, engine: Engine, config: Message, version: str = "1", *, max_queue: int) -> None:
        name = config.name
        if not MODEL_NAME_PATTERN.fullmatch(name):
            raise ServeError(400, f"model name '{name}' may hold only letters, digits, '_', '.', '-'")
        self.engine = engine
        self.config = config
        self.name = name
        self.version = version
        self.inputs: list[TensorSpec] = engine.inputs
        self.outputs: list[TensorSpec] = engine.outputs
        for spec in (*self.inputs, *self.outputs):
            try:
                datatype_of(spec.dtype)
            except ServeError:
                message = f"model '{name}': tensor '{spec.name}' has dtype {spec.dtype}, which KServe v2 cannot carry"
                raise ServeError(500, message) from None
        self.output_names = [spec.name for spec in self.outputs]
        self.max_batch_size = config.max_batch_size
        self.batchable = batchable(engine)  # rows of a request count as inferences
        dynamic = config.dynamic_batching if config.HasField("dynamic_batching") else None
        self.batching = BatchingConfig(
            max_batch=self.max_batch_size if dynamic is not None else 1,
            max_queue_delay_s=dynamic.max_queue_delay_microseconds / 1e6 if dynamic is not None else 0.0,
            instances=sum(group.count for group in config.instance_group),
            max_queue=dynamic.default_queue_policy.max_queue_size if dynamic is not None else max_queue,
        )
        self.stats = ModelStats(name, version)

    @classmethod
    def from_engine(cls, engine: Engine, name: str, batching: BatchingConfig) -> ServedModel:
        """An engine file served under ``name`` with the CLI's batching flags (version 1)."""
        return cls(engine, engine_config(engine, name, batching), max_queue=batching.max_queue)

    def describe_batching(self) -> str:
        """What the scheduler will really do with this model, in a few words."""
        b = self.batching
        if b.max_batch > 1:
            return f"dynamic batching up to {b.max_batch}, {b.max_queue_delay_s * 1e3:g} ms delay, {b.instances} instance(s)"
        if not batchable(self.engine):
            shapes = ", ".join(spec.describe() for spec in self.inputs)
            return f"no batching: the engine's leading dim is fixed ({shapes}), each request runs alone, {b.instances} instance(s)"
        return f"no batching (requests carry up to {self.max_batch_size or 'any'} each), {b.instances} instance(s)"

    def metadata(self, versions: list[str]) -> dict[str, Any]:
        """The v2 model metadata object (variable dims are -1)."""
        return {
            "name": self.name,
            "versions": versions,
            "platform": _PLATFORM,
            "inputs": [_tensor_metadata(spec) for spec in self.inputs],
            "outputs": [_tensor_metadata(spec) for spec in self.outputs],
        }

    def config_json(self) -> dict[str, Any]:
        """Triton's ``model_configuration`` answer."""
        return config_to_json(self.config)

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
        if self.max_batch_size:
            batch = next(iter(request.inputs.values())).shape[0]
            if batch > self.max_batch_size:
                raise ServeError(400, f"model '{self.name}': batch size {batch} exceeds max_batch_size {self.max_batch_size}")
        for want in request.outputs or ():
            if want.name not in self.output_names:
                raise ServeError(400, f"unknown output '{want.name}'; model '{self.name}' has outputs {self.output_names}")
        return {spec.name: request.inputs[spec.name] for spec in self.inputs}


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": datatype_of(spec.dtype), "shape": [d if isinstance(d, int) else -1 for d in spec.shape]}
