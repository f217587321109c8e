"""The `mlsys` command line: exit codes and one-line reasons."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsys.cli import main


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """main() installs the CLI's logfmt handler on the root logger, as a CLI process should;
    in the test process it would outlive the test and re-format every later test's logs
    (whether Airflow's first dag.test() happens to replace it depends on test order)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["score", "--as-of", "yesterday"])
    assert excinfo.value.code == 2
    assert "not a date" in capsys.readouterr().err


def test_score_without_features_exits_1_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLSYS_HOME", str(tmp_path))
    monkeypatch.delenv("MLSYS_DATA_DIR", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["score", "--as-of", "2026-06-01"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mlsys score: no features for 2026-06-01")


def test_generate_then_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLSYS_HOME", str(tmp_path))
    monkeypatch.delenv("MLSYS_DATA_DIR", raising=False)
    assert main(["generate", "--leads", "500", "--seed", "3"]) == 0
    assert (tmp_path / "data" / "raw" / "leads" / "leads.parquet").exists()
    assert main(["features", "--as-of", "2026-06-01"]) == 0
    assert '"lead_features"' in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("mlsys")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    for command in ("generate", "features", "validate", "train", "score", "drift"):
        assert command in out.stdout
