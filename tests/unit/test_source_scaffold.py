"""`mlsys source new`: what it reads from an export (DuckDB over the whole file), what it decides,
and how it refuses bad input. The whole path to a scored partition: tests/integration/test_onboarding.py."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import yaml

from mlsys import cli
from mlsys.onboarding import sources
from mlsys.onboarding.files import new_source
from mlsys.onboarding.scaffold import inspect_export, plan, snake_case
from mlsys.onboarding.sources import SourceError
from mlsys.validation import load_gate_spec


@pytest.mark.parametrize(
    ("raw", "snake"),
    [
        ("Lead Source", "lead_source"),
        ("LeadID", "lead_id"),
        ("leadSource", "lead_source"),
        ("HTTPStatus", "http_status"),
        ("2nd call", "c_2nd_call"),
        ("  Größe (€) ", "gr_e"),
        ("%%", "column"),
    ],
)
def test_snake_case(raw: str, snake: str) -> None:
    assert snake_case(raw) == snake


def test_types_come_from_the_whole_file_not_a_sample(tmp_path: Path) -> None:
    # DuckDB samples 20,480 rows by default: the text in the last row would go unseen.
    rows = [f"{i}|{i % 7}|web" for i in range(1, 30_001)] + ["30001|n/a|web"]
    path = tmp_path / "export.csv.gz"
    path.write_bytes(gzip.compress(("Id|Score|Channel\n" + "\n".join(rows) + "\n").encode()))
    export = inspect_export(path)
    assert export.delimiter == "|" and export.rows == 30_001
    assert {c.raw_name: c.duckdb_type for c in export.columns} == {
        "Id": "BIGINT",
        "Score": "VARCHAR",
        "Channel": "VARCHAR",
    }


def _export(tmp_path: Path) -> Path:
    lines = ["Contact Ref,Stage,Visits,Notes,Created"]
    lines += [
        f"{i},{'won' if i % 3 else 'lost'},{i % 11},free text {i},2026-01-0{1 + i % 9}" for i in range(200)
    ]
    path = tmp_path / "crm.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_plan_guesses_the_id_and_leaves_out_text_and_dates(tmp_path: Path) -> None:
    export = inspect_export(_export(tmp_path))
    chosen = plan("crm", export, id_column=None, label="Stage")
    assert chosen.id_column.raw_name == "Contact Ref"
    assert chosen.label is not None and chosen.label.name == "stage"
    assert [c.name for c in chosen.features] == ["visits"]
    assert {c.name: why for c, why in chosen.left_out}.keys() == {"notes", "created"}
    with pytest.raises(SourceError, match="no column 'Nope'; it has Contact Ref, Stage"):
        plan("crm", export, id_column="Nope", label=None)


def test_the_scaffold_writes_a_loadable_source_and_refuses_to_overwrite(tmp_path: Path) -> None:
    raw = _export(tmp_path)
    folder = tmp_path / "sources" / "crm"
    assert (
        cli.main(["source", "new", "crm", "--raw", str(raw), "--sources-dir", str(tmp_path / "sources")]) == 0
    )
    assert sources.discover(tmp_path / "sources") == [folder]
    env = sources.read_env(folder)
    assert env["MLSYS_HOME"] == str(tmp_path / "var" / "crm") and env["MLSYS_SPLIT"] == "random"
    spec = load_gate_spec(folder / "great_expectations")
    assert spec.suites["raw_crm"].input == "raw/crm/*.csv*"
    assert set(spec.suites) == {"raw_crm", "lead_features", "training_snapshots"}
    assert spec.suites["lead_features"].columns.keys() == {"lead_id", "as_of", "stage", "visits"}
    marts = yaml.safe_load((folder / "dbt" / "models" / "marts" / "_marts.yml").read_text())
    snapshot_columns = [c["name"] for c in marts["models"][1]["columns"]]
    assert snapshot_columns == ["lead_id", "as_of", "stage", "visits", "label"]  # aliases resolve
    before = (folder / "crm.env").read_text()
    with pytest.raises(SourceError, match="exists already"):
        new_source("crm", raw, sources_dir=tmp_path / "sources")
    assert (folder / "crm.env").read_text() == before


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("Bad-Name", "crm.csv", "lower-case letters"),
        ("crm", "missing.csv", "no such file"),
        ("crm", "crm.json", "expected a CSV"),
    ],
)
def test_bad_input_is_refused_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, raw: str, message: str
) -> None:
    (tmp_path / "crm.json").write_text("{}")
    _export(tmp_path)
    assert (
        cli.main(["source", "new", name, "--raw", str(tmp_path / raw), "--sources-dir", str(tmp_path)]) == 1
    )
    assert message in capsys.readouterr().err


def test_env_files_are_read_strictly(tmp_path: Path) -> None:
    folder = tmp_path / "sources" / "x"
    folder.mkdir(parents=True)
    with pytest.raises(SourceError, match=r"x\.env is missing"):
        sources.read_env(folder)
    (folder / "x.env").write_text("MLSYS_HOME=var/x\nnot a setting\n")
    with pytest.raises(SourceError, match=r"x\.env:2: expected NAME=value"):
        sources.read_env(folder)
    (folder / "x.env").write_text("MLSYS_HOME=var/x\n")
    with pytest.raises(SourceError, match="MLSYS_DBT_PROJECT_DIR is not set"):
        sources.read_env(folder)
