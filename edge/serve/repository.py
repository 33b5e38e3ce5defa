"""A Triton-style model repository: ``ROOT/NAME/config.pbtxt`` and ``ROOT/NAME/<version>/model.engine``.

Each sub-folder of the root is one model; its numeric sub-folders are versions, and the
config's ``version_policy`` picks which are served (Triton's default: the latest one). The
engine file in a version folder is ``default_model_filename`` or ``model.engine``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import edge
from edge.errors import EdgeError
from edge.serve.model import MODEL_NAME_PATTERN, ServedModel, checked_config
from edge.serve.modelconfig import ModelConfig, parse_config_json, parse_config_text
from edge.serve.protocol import ServeError

__all__ = ["Repository", "CONFIG_FILE", "DEFAULT_MODEL_FILENAME"]

CONFIG_FILE = "config.pbtxt"
DEFAULT_MODEL_FILENAME = "model.engine"


@dataclass(frozen=True)
class Repository:
    """The repository folder, the queue size used where a config sets none, and whether engines
    built for another machine load (with a warning each, see ``edge.load``)."""

    root: Path
    max_queue: int
    allow_mismatch: bool = False

    def names(self) -> list[str]:
        """Every model folder in the repository, sorted."""
        try:
            return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError as exc:
            raise ServeError(400, f"cannot read model repository {self.root}: {exc.strerror or exc}") from None

    def load(self, name: str, config_json: str | None = None) -> list[ServedModel]:
        """Read model ``name``'s config (or ``config_json`` instead) and load its selected versions.

        Blocking (engine files are read and checked); call it off the event loop.

        Raises:
            ServeError: 400 naming the file or field that is wrong.
        """
        folder = self.root / name
        if not MODEL_NAME_PATTERN.fullmatch(name) or not folder.is_dir():
            raise ServeError(400, f"model '{name}' is not in the model repository {self.root}")
        config_file = folder / CONFIG_FILE
        if config_json is not None:
            declared, where = parse_config_json(config_json, f"load '{name}' config"), f"load '{name}' config"
        elif config_file.is_file():
            declared, where = parse_config_text(config_file), str(config_file)
        else:
            declared, where = ModelConfig(), str(folder)
        models = []
        for version in self._versions(folder, declared, where):
            path = folder / version / (declared.default_model_filename or DEFAULT_MODEL_FILENAME)
            try:
                engine = edge.load(path, allow_mismatch=self.allow_mismatch)
            except EdgeError as exc:
                raise ServeError(400, f"model '{name}' version {version}: {exc}") from None
            config = checked_config(engine, declared, name, where, self.max_queue)
            models.append(ServedModel(engine, config, version, max_queue=self.max_queue))
        return models

    @staticmethod
    def _versions(folder: Path, config: ModelConfig, where: str) -> list[str]:
        available = sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
        policy = config.version_policy.WhichOneof("policy_choice") or "latest"
        if policy == "all":
            chosen = available
        elif policy == "specific":
            missing = sorted(set(config.version_policy.specific.versions) - set(available))
            if missing:
                raise ServeError(400, f"{where}: version_policy asks for versions {missing}, {folder} has {available}")
            chosen = sorted(config.version_policy.specific.versions)
        else:
            chosen = available[-(config.version_policy.latest.num_versions or 1) :]
        if not chosen:
            raise ServeError(400, f"model folder {folder} has no version sub-folder (1/, 2/, ...) holding an engine")
        return [str(v) for v in chosen]
