"""The feature catalogue, read from dbt's manifest (docs/contracts.md).

A column of a mart is a model input when its YAML says ``meta: {feature: numeric}`` or
``{feature: categorical}``. Training asks this module, never a hard-coded list, so a data
engineer adds a feature with SQL + YAML only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from mlsys import dbt
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


def load_catalog(mart: str, settings: Settings) -> FeatureCatalog:
    try:
        path = dbt.ensure_manifest(settings)
    except dbt.ManifestError as exc:
        raise CatalogError(str(exc)) from exc
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
