"""The feature catalogue (DESIGN section 2b), read from dbt's manifest.

A column of a mart is a model input when its YAML says ``meta: {feature: numeric}`` or
``{feature: categorical}``. Training asks this module, never a hard-coded list, so a data
engineer adds a feature with SQL + YAML only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsys.settings import Settings

FEATURE_KINDS = ("numeric", "categorical")


class CatalogError(RuntimeError):
    pass


@dataclass(frozen=True)
class FeatureCatalog:
    mart: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    manifest_sha256: str

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def _column_kind(column: dict[str, Any]) -> str | None:
    # dbt >= 1.10 also accepts meta under `config:`; read both.
    for meta in (column.get("meta") or {}, (column.get("config") or {}).get("meta") or {}):
        kind = meta.get("feature")
        if kind:
            return str(kind)
    return None


def manifest_path(settings: Settings) -> Path:
    return settings.dbt_target_dir / "manifest.json"


def _origin_path(settings: Settings) -> Path:
    return settings.dbt_target_dir / "mlsys_manifest_origin.json"


def manifest_stamp(settings: Settings) -> tuple[int, int] | None:
    """(mtime, size) of the manifest, to tell whether a dbt call rewrote it."""
    try:
        stat = manifest_path(settings).stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record_manifest_project(settings: Settings) -> None:
    """Note which project the manifest in the target folder was written from.

    The target folder is per MLSYS_HOME, not per project, and the manifest does not name its
    project folder: without this note, pointing MLSYS_DBT_PROJECT_DIR at another copy of the
    project would let the catalogue read the previous project's features.
    """
    path = manifest_path(settings)
    if path.exists():
        origin = {"project_dir": str(settings.dbt_project_dir), "manifest_sha256": _sha256(path)}
        _origin_path(settings).write_text(json.dumps(origin))


def _manifest_is_current(settings: Settings) -> bool:
    path, origin_path = manifest_path(settings), _origin_path(settings)
    if not path.exists() or not origin_path.exists():
        return False
    try:
        origin = json.loads(origin_path.read_text())
    except json.JSONDecodeError:
        return False
    # The hash catches a manifest rewritten by a dbt run this package did not start.
    return bool(
        origin.get("project_dir") == str(settings.dbt_project_dir)
        and origin.get("manifest_sha256") == _sha256(path)
    )


def ensure_manifest(settings: Settings) -> Path:
    """The manifest of the configured project; `dbt parse` writes it when it is missing or
    was written from another project folder.

    A manifest of the right project is used as it is, on purpose: it is the one written by
    the build of the marts being read, so features and catalogue always agree.
    """
    path = manifest_path(settings)
    if not _manifest_is_current(settings):
        from mlsys.features import dbt_args, run_dbt

        # Partial parsing would start from the state of whatever project was parsed last.
        result = run_dbt(dbt_args(settings, "parse", "--no-partial-parse"), settings)
        if not result.success or not path.exists():
            raise CatalogError(
                f"dbt parse of {settings.dbt_project_dir} failed, no manifest at {path}: {result.exception}"
            )
    return path


def load_catalog(mart: str, settings: Settings | None = None) -> FeatureCatalog:
    settings = settings or Settings.from_env()
    path = ensure_manifest(settings)
    raw = path.read_bytes()
    manifest = json.loads(raw)
    nodes = [
        n
        for n in manifest.get("nodes", {}).values()
        if n.get("resource_type") == "model" and n.get("name") == mart
    ]
    if not nodes:
        raise CatalogError(f"model {mart!r} is not in the dbt manifest {path}")
    numeric: list[str] = []
    categorical: list[str] = []
    for name, column in nodes[0].get("columns", {}).items():
        kind = _column_kind(column)
        if kind is None:
            continue
        if kind not in FEATURE_KINDS:
            raise CatalogError(f"{mart}.{name}: meta.feature must be one of {FEATURE_KINDS}, got {kind!r}")
        (numeric if kind == "numeric" else categorical).append(name)
    if not numeric and not categorical:
        raise CatalogError(f"{mart} declares no feature columns (meta.feature) in its schema.yml")
    return FeatureCatalog(mart, tuple(numeric), tuple(categorical), hashlib.sha256(raw).hexdigest())
