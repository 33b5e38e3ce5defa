"""Device profiles: one YAML file per Jetson module (plus desktop-cuda and cpu) and their loader.

``load_profile("agx-orin-64gb")`` reads a bundled profile through importlib.resources;
``load_profile("path/to/board.yaml")`` reads a user's own file. Either way the document is
validated against the schema in :mod:`edge.profiles.schema`; errors name the file, the key
and the problem.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from edge.errors import ProfileError
from edge.profiles.detect import DETECTORS
from edge.profiles.schema import CpuSpec, DeviceProfile, DlaSpec, GpuSpec, PowerMode, build_profile

__all__ = ["CpuSpec", "DeviceProfile", "DlaSpec", "GpuSpec", "PowerMode", "ProfileError", "list_profiles", "load_profile", "parse_profile"]

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
    text_name = os.fspath(name_or_path)
    if os.sep in text_name or "/" in text_name or text_name.endswith((".yaml", ".yml")):
        path = Path(text_name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ProfileError(f"profile file '{path}' does not exist") from None
        except OSError as exc:
            raise ProfileError(f"profile file '{path}' cannot be read: {exc.strerror}") from None
        return parse_profile(text, str(path))
    resource = files("edge.profiles").joinpath(text_name + _SUFFIX)
    if not resource.is_file():
        raise ProfileError(f"unknown profile '{text_name}' (profiles: {', '.join(list_profiles())}; or give a path to a .yaml file)")
    return parse_profile(resource.read_text(encoding="utf-8"), text_name + _SUFFIX)


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
