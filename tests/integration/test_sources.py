"""Every source folder under sources/ gets this smoke test by being there: its env file, its gate
(format, dbt project, committed GX files), its output contract and feature catalogue (a real
`dbt parse`), the checks `mlsys source check` runs before any export is landed. `make lint`
lints its SQL the same way (SOURCE_PROJECTS in the Makefile)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsys.onboarding import sources
from mlsys.onboarding.check import contract_findings, gate_findings
from mlsys.settings import REPO_ROOT, Settings

FOLDERS = sources.discover()


def test_the_sources_are_discovered() -> None:
    assert sources.SOURCES_DIR == REPO_ROOT / "sources"
    assert REPO_ROOT / "sources" / "bank_marketing" in FOLDERS


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_a_source_is_ready_before_its_export_lands(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = sources.read_env(folder)
    for name in ("MLSYS_DATA_DIR", "MLSYS_WAREHOUSE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**env, "MLSYS_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    assert settings.dbt_project_dir == folder / "dbt"
    assert settings.gx_context_dir == folder / "great_expectations"
    findings = gate_findings(settings) + contract_findings(settings)
    assert all(f.ok for f in findings), "\n".join(map(str, findings))
    assert any("feature(s)" in f.text for f in findings)
