"""The README an ``export-trt`` folder carries to the board: files, expected split, how to check it."""

from __future__ import annotations

import shlex
from collections import Counter

from edge.trt.settings import NetworkSettings
from edge.trt.versions import TrtTarget

__all__ = ["readme"]


def _split(settings: NetworkSettings) -> list[str]:
    devices = Counter(layer.device or "TensorRT's choice" for layer in settings.layers)
    precisions = Counter(layer.precision for layer in settings.layers if layer.precision)
    lines = [f"- {count} layer(s) on {device}" for device, count in sorted(devices.items())]
    lines += [f"- {count} layer(s) in {precision.upper()}" for precision, count in sorted(precisions.items())]
    dla = [layer for layer in settings.layers if layer.device == "DLA"]
    if dla:
        lines.append(f"- DLA layers, first to last: {dla[0].name} ... {dla[-1].name}")
    return lines


def readme(
    settings: NetworkSettings, target: TrtTarget, files: dict[str, str], build: list[str], profile: list[str], partition: list[str],
    profile_name: str, unlisted: list[str],
) -> str:
    """The README's Markdown text."""
    parts = [
        f"# TensorRT hand-off for {profile_name}, TensorRT {target.name}",
        "",
        f"For {target.jetpack}. Written by `edgetrt export-trt`. Build on the board with `./trtexec.sh build`, then time it with `./trtexec.sh profile`.",
        "",
        "## Files",
        *(f"- `{name}`: {what}" for name, what in files.items()),
        "",
        "## Expected placement and precision (edgetrt's plan)",
        *_split(settings),
        f"- build precision {settings.precision}, DLA core {settings.dla_core if settings.dla_core is not None else 'none'}, "
        f"GPU fallback {'on' if settings.gpu_fallback else 'off'}",
        "",
        "Every layer's device and precision are in `plan.json` (layer = ONNX node name; TensorRT names its layers after them "
        "and joins fused ones with ` + `; DLA subgraphs appear as `{ForeignNode[first...last]}`).",
        "",
        "## Build",
        "```",
        shlex.join(build),
        "```",
        "",
        "When a layer cannot run where edgetrt put it, `trtexec --verbose` (in `build.log`) says so, e.g. "
        "`Layer 'NAME' (TYPE): Unsupported on DLA. Switching this layer's device type to GPU.` or "
        "`DLA only supports FP16 and Int8 precision type. Switching this layer's device type to GPU.`; "
        "without `--allowGPUFallback` the build fails there instead. `grep -i 'dla' build.log` lists every such line, "
        "and `--precisionConstraints=obey` makes a layer that cannot run in its planned precision fail the build rather than change silently.",
        "",
        "## Compare the board with the prediction",
        "```",
        shlex.join(profile),
        shlex.join(partition),
        "```",
        "The first writes `layers.json` (`--exportLayerInfo`: each engine layer, its inputs' formats and precisions) and "
        "`profile.json` (`--exportProfile`: each layer's time). The second reports, per TensorRT layer and per DLA/GPU segment, "
        "the measured time next to the cost model's, and each layer's measured device and precision next to the plan's. "
        "`edgetrt partition calibrate profile.json --model model.onnx ...` refits the cost model to the board.",
    ]
    notes = list(settings.notes)
    if unlisted:
        notes.append(f"{len(unlisted)} layer name(s) hold ',' or ':', which trtexec's lists cannot carry; TensorRT places them itself: {', '.join(unlisted[:5])}")
    if not target.implicit_precision:
        notes.append(f"TensorRT {target.name} networks are strongly typed: there are no --fp16/--int8 flags and no calibrators; "
                     "INT8 comes from the Q/DQ nodes of model.qdq.onnx, and layers edgetrt planned in FP16 run in the ONNX's FP32.")
        if settings.dla_core is not None:
            notes.append("DLA with TensorRT 11 needs 11.4.1 or newer on Jetson AGX Orin with JetPack 7.2.2+; on JetPack 6 use --target-trt 10.3.")
    if notes:
        parts += ["", "## Where TensorRT will differ from edgetrt's plan", *(f"- {note}" for note in notes)]
    return "\n".join(parts) + "\n"
