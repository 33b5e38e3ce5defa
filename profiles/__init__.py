"""Device profiles: one YAML file per Jetson module (plus desktop-cuda and cpu) and their loader.

``load_profile("agx-orin-64gb")`` reads a bundled profile through importlib.resources;
``load_profile("path/to/board.yaml")`` reads a user's own file. Either way the document is
validated against the schema in :mod:`edge.profiles.schema`; errors name the file, the key
and the problem.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from edge.errors import ProfileError
from edge.profiles.detect import DETECTORS
from edge.profiles.schema import Constant, CostSpec, CpuSpec, DeviceProfile, DlaSpec, GpuSpec, PowerMode, build_profile

__all__ = [
    "CpuSpec", "DeviceProfile", "DlaSpec", "GpuSpec", "PowerMode", "ProfileError", "list_profiles", "load_profile",
    "parse_profile", "profile_text", "cost_yaml", "replace_cost_section",
]

_SUFFIX = ".yaml"


def list_profiles() -> list[str]:
    """Names of the bundled profiles, sorted."""
    return sorted(p.name[: -len(_SUFFIX)] for p in files("edge.profiles").iterdir() if p.name.endswith(_SUFFIX))


def load_profile(name_or_path: str | os.PathLike) -> DeviceProfile:
    """Load and validate a bundled profile by name, or a profile file by path.

    A value containing a path separator or ending in ``.yaml``/``.yml`` is a path.

    Raises:
        ProfileError: unknown name, unreadable or malformed file, or a schema violation.
    """
    return parse_profile(*profile_text(name_or_path))


def profile_text(name_or_path: str | os.PathLike) -> tuple[str, str]:
    """(YAML text, source name) of a bundled profile or a profile file, comments and layout intact."""
    text_name = os.fspath(name_or_path)
    if os.sep in text_name or "/" in text_name or text_name.endswith((".yaml", ".yml")):
        path = Path(text_name)
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except FileNotFoundError:
            raise ProfileError(f"profile file '{path}' does not exist") from None
        except OSError as exc:
            raise ProfileError(f"profile file '{path}' cannot be read: {exc.strerror}") from None
    resource = files("edge.profiles").joinpath(text_name + _SUFFIX)
    if not resource.is_file():
        raise ProfileError(f"unknown profile '{text_name}' (profiles: {', '.join(list_profiles())}; or give a path to a .yaml file)")
    return resource.read_text(encoding="utf-8"), text_name + _SUFFIX


def parse_profile(text: str, source: str) -> DeviceProfile:
    """Parse YAML text, fill detected keys (``detect: host|cuda``), validate and build."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProfileError(f"{source}: malformed YAML{where}: {problem}") from None
    if isinstance(data, dict) and data.get("detect") is not None:
        detector = DETECTORS.get(data["detect"])
        if detector is None:
            raise ProfileError(f"{source}: key 'detect': expected one of {sorted(DETECTORS)}, got {data['detect']!r}")
        data = {**detector(), **data}
    return build_profile(data, source)


def cost_yaml(cost: CostSpec) -> str:
    """The ``cost:`` section as YAML text, one ``{value, source}`` constant per line."""
    lines = ["cost:"]

    def emit(group: object, indent: int) -> None:
        for spec in dataclasses.fields(group):
            value = getattr(group, spec.name)
            if value is None:
                continue
            pad = " " * indent
            if isinstance(value, Constant):
                lines.append(f"{pad}{spec.name}: {{value: {value.value:.6g}, source: {json.dumps(value.source)}}}")
            else:
                lines.append(f"{pad}{spec.name}:")
                emit(value, indent + 2)

    emit(cost, 2)
    return "\n".join(lines) + "\n"


_COST_BLOCK = re.compile(r"^cost:[^\n]*\n(?:(?:[ \t]+[^\n]*|[ \t]*)\n)*", re.MULTILINE)


def replace_cost_section(text: str, cost: CostSpec) -> str:
    """Profile YAML ``text`` with its ``cost:`` section replaced (appended when missing); other keys,
    comments and layout are kept."""
    block = cost_yaml(cost)
    if _COST_BLOCK.search(text) is None:
        return text.rstrip("\n") + "\n" + block
    return _COST_BLOCK.sub(lambda _: block, text, count=1)
