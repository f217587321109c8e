"""The source folders (``sources/<name>/``) and their env files.

A source is a folder holding ``<name>.env`` (the MLSYS_* switch), ``dbt/`` (its dbt project)
and ``great_expectations/`` (its gate). Paths in the env file are relative to the folder that
holds ``sources/`` (the repository root), so the same file works from ``make`` and by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlsys.settings import REPO_ROOT

SOURCES_DIR = REPO_ROOT / "sources"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Env variables that hold paths (resolved against the repository root when read).
PATH_VARIABLES = (
    "MLSYS_HOME",
    "MLSYS_DATA_DIR",
    "MLSYS_WAREHOUSE",
    "MLSYS_DBT_PROJECT_DIR",
    "MLSYS_GX_CONTEXT_DIR",
)


class SourceError(ValueError):
    """A source folder that is missing or incomplete; the message says what to do."""


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise SourceError(
            f"source name {name!r}: use lower-case letters, digits and _ (starting with a letter);"
            " it names the dbt project, the model and the raw folder"
        )
    return name


def discover(sources_dir: Path = SOURCES_DIR) -> list[Path]:
    """Every source folder under ``sources_dir``: those with a ``<name>.env``."""
    if not sources_dir.is_dir():
        return []
    return sorted(p for p in sources_dir.iterdir() if p.is_dir() and (p / f"{p.name}.env").is_file())


def env_file(folder: Path) -> Path:
    return folder / f"{folder.name}.env"


def read_env(folder: Path, *, root: Path | None = None) -> dict[str, str]:
    """The variables of the source's env file, path variables made absolute (relative to
    ``root``, by default the folder that holds ``sources/``)."""
    path = env_file(folder)
    if not path.is_file():
        raise SourceError(f"{path} is missing: it switches the pipeline to the source {folder.name}")
    root = root or folder.resolve().parent.parent
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, sep, value = text.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name.strip()):
            raise SourceError(f"{path}:{number}: expected NAME=value, got {text!r}")
        value = value.strip().strip('"').strip("'")
        if name.strip() in PATH_VARIABLES and not Path(value).is_absolute():
            value = str(root / value)
        env[name.strip()] = value
    for required in ("MLSYS_HOME", "MLSYS_DBT_PROJECT_DIR", "MLSYS_GX_CONTEXT_DIR"):
        if required not in env:
            raise SourceError(f"{path}: {required} is not set")
    return env
