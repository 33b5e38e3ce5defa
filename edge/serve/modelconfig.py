"""Triton's ``config.pbtxt``: the subset of ``inference.ModelConfig`` edgetrt serves, parsed by protobuf.

The message type is declared here as a protobuf descriptor (field names, numbers and enum
values as in Triton's ``model_config.proto``), so protobuf's own text-format and JSON parsers
read ``config.pbtxt`` and the JSON config of a load request. A field edgetrt does not
implement (``optimization``, ``ensemble_scheduling``...) is refused by the parser with its
line and column, rather than silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, text_format
from google.protobuf.message import Message

from edge.serve.protocol import ServeError

__all__ = ["ModelConfig", "parse_config_text", "parse_config_json", "config_to_json", "data_type_name", "data_type_number"]

_F = descriptor_pb2.FieldDescriptorProto
# Triton's DataType enum: TYPE_<v2 datatype name>, numbered as in model_config.proto.
DATA_TYPES = ("INVALID", "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
              "FP16", "FP32", "FP64", "STRING", "BF16")  # fmt: skip
_KINDS = ("KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL")

# message name -> [(field name, number, type, label, type name)]
_MESSAGES: dict[str, list[tuple[str, int, int, int, str]]] = {
    "ModelTensor": [
        ("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("data_type", 2, _F.TYPE_ENUM, _F.LABEL_OPTIONAL, ".inference.DataType"),
        ("dims", 4, _F.TYPE_INT64, _F.LABEL_REPEATED, ""),
        ("optional", 12, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
    ],
    "ModelInstanceGroup": [
        ("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("count", 2, _F.TYPE_INT32, _F.LABEL_OPTIONAL, ""),
        ("gpus", 3, _F.TYPE_INT32, _F.LABEL_REPEATED, ""),
        ("kind", 4, _F.TYPE_ENUM, _F.LABEL_OPTIONAL, ".inference.ModelInstanceGroup.Kind"),
    ],
    "ModelQueuePolicy": [
        ("max_queue_size", 4, _F.TYPE_UINT32, _F.LABEL_OPTIONAL, ""),
    ],
    "ModelDynamicBatching": [
        ("preferred_batch_size", 1, _F.TYPE_INT32, _F.LABEL_REPEATED, ""),
        ("max_queue_delay_microseconds", 2, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
        ("preserve_ordering", 3, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
        ("default_queue_policy", 5, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".inference.ModelQueuePolicy"),
    ],
    "Latest": [("num_versions", 1, _F.TYPE_UINT32, _F.LABEL_OPTIONAL, "")],
    "All": [],
    "Specific": [("versions", 1, _F.TYPE_INT64, _F.LABEL_REPEATED, "")],
    "ModelVersionPolicy": [
        ("latest", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".inference.Latest"),
        ("all", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".inference.All"),
        ("specific", 3, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".inference.Specific"),
    ],
    "ModelParameter": [("string_value", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, "")],
    "ModelConfig": [
        ("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("platform", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("version_policy", 3, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".inference.ModelVersionPolicy"),
        ("max_batch_size", 4, _F.TYPE_INT32, _F.LABEL_OPTIONAL, ""),
        ("input", 5, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".inference.ModelTensor"),
        ("output", 6, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".inference.ModelTensor"),
        ("instance_group", 7, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".inference.ModelInstanceGroup"),
        ("default_model_filename", 8, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("dynamic_batching", 11, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".inference.ModelDynamicBatching"),
        ("parameters", 14, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".inference.ModelConfig.ParametersEntry"),
        ("backend", 17, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
    ],
}


def _build_message_class() -> type[Message]:
    """Declare the messages above in a private descriptor pool and return ModelConfig's class."""
    file = descriptor_pb2.FileDescriptorProto(name="edgetrt_model_config.proto", package="inference", syntax="proto3")
    data_type = file.enum_type.add(name="DataType")
    for number, name in enumerate(DATA_TYPES):
        data_type.value.add(name=f"TYPE_{name}", number=number)
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            message.field.add(name=field_name, number=number, type=kind, label=label, type_name=type_name or None)
        if name == "ModelInstanceGroup":
            kinds = message.enum_type.add(name="Kind")
            for number, kind_name in enumerate(_KINDS):
                kinds.value.add(name=kind_name, number=number)
        if name == "ModelConfig":  # map<string, ModelParameter> parameters
            entry = message.nested_type.add(name="ParametersEntry")
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
            entry.field.add(name="value", number=2, type=_F.TYPE_MESSAGE, label=_F.LABEL_OPTIONAL, type_name=".inference.ModelParameter")
        if name == "ModelVersionPolicy":  # latest | all | specific is a oneof, as in Triton
            message.oneof_decl.add(name="policy_choice")
            for field in message.field:
                field.oneof_index = 0
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


ModelConfig = _build_message_class()
_DATA_TYPE = ModelConfig.DESCRIPTOR.file.enum_types_by_name["DataType"]


def data_type_number(datatype: str) -> int:
    """The DataType enum value of a v2 datatype name (``"FP32"`` -> TYPE_FP32's number)."""
    return _DATA_TYPE.values_by_name["TYPE_" + datatype].number


def data_type_name(number: int) -> str:
    """The enum name (``"TYPE_FP32"``) of a DataType value."""
    return _DATA_TYPE.values_by_number[number].name


def parse_config_text(path: Path) -> Message:
    """Parse a ``config.pbtxt`` file.

    Raises:
        ServeError: 400 naming the file, line and column of the first error.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ServeError(400, f"cannot read {path}: {exc}") from None
    try:
        return text_format.Parse(text, ModelConfig())
    except text_format.ParseError as exc:
        raise ServeError(400, f"{path}:{exc}".replace(" : ", ": ")) from None


def parse_config_json(text: str, where: str) -> Message:
    """Parse a model config given as JSON (the ``config`` parameter of a load request)."""
    try:
        return json_format.Parse(text, ModelConfig())
    except json_format.ParseError as exc:
        raise ServeError(400, f"{where}: {exc}") from None


def config_to_json(config: Message) -> dict[str, Any]:
    """The config as Triton's ``/config`` endpoint returns it: every field, proto names, 64-bit ints as numbers."""
    doc = json_format.MessageToDict(config, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return _int64_as_numbers(doc, config.DESCRIPTOR)


def _int64_as_numbers(doc: Any, descriptor: Any) -> Any:
    # protobuf's JSON mapping writes (u)int64 as strings; Triton's /config gives numbers.
    for field in descriptor.fields:
        if field.name not in doc:
            continue
        value = doc[field.name]
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:  # parameters: strings only
                continue
            items = value if field.is_repeated else [value]
            for item in items:
                _int64_as_numbers(item, field.message_type)
        elif field.type in (_F.TYPE_INT64, _F.TYPE_UINT64):
            doc[field.name] = [int(v) for v in value] if field.is_repeated else int(value)
    return doc
