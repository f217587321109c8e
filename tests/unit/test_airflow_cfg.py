"""The local Airflow's configuration file and what a process finds from it (docs/operating.md):
`write_airflow_cfg` is idempotent and keeps what it does not own, a process with only
AIRFLOW_HOME gets the home's settings from `[mlsys]`, undated runs and the landing manifest,
and the asset-event helpers. Fast: no Airflow process."""

from __future__ import annotations

import configparser
import json
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlsys import airflow_support
from mlsys.settings import REPO_ROOT, Settings, recorded_environ
from mlsys_local.airflow_env import airflow_cfg, airflow_config, write_airflow_cfg


@pytest.fixture
def home_settings(tmp_path: Path) -> Settings:
    base = Settings.from_env()
    home = tmp_path / "var"
    return replace(
        base,
        home=home,
        data_dir=home / "data",
        warehouse=home / "warehouse.duckdb",
        mlflow_artifact_root=home / "mlartifacts",
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        snapshot_weeks=7,
    )


def read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    return parser


def test_the_cfg_names_the_repo_dags_and_the_home(home_settings: Settings) -> None:
    cfg = read(write_airflow_cfg(home_settings, port=18123))
    assert cfg["core"]["dags_folder"] == str(REPO_ROOT / "dags")
    assert cfg["core"]["plugins_folder"] == str(REPO_ROOT / "plugins")
    assert cfg["core"]["executor"] == "LocalExecutor"
    db = home_settings.home / "airflow" / "airflow.db"
    assert cfg["database"]["sql_alchemy_conn"] == f"sqlite:///{db}?timeout=60"
    assert cfg["core"]["execution_api_server_url"] == "http://127.0.0.1:18123/execution/"
    assert cfg["mlsys"]["mlsys_snapshot_weeks"] == "7"
    assert set(airflow_config(home_settings)) <= set(cfg.sections())


def test_rewrites_keep_user_options_the_port_and_the_secrets(home_settings: Settings) -> None:
    path = write_airflow_cfg(home_settings, host="0.0.0.0", port=18124)
    text = path.read_text()
    path.write_text(
        text + "\n[webserver]\ninstance_name = my laptop\n[logging]\nlog_format = %%(asctime)s %%(message)s\n"
    )
    first = read(path)
    # make demo: no address given, the running make airflow's is kept; a wildcard bind is
    # reached through the loopback.
    second = read(write_airflow_cfg(home_settings))
    assert (second["api"]["host"], second["api"]["port"]) == ("0.0.0.0", "18124")
    assert second["core"]["execution_api_server_url"] == "http://127.0.0.1:18124/execution/"
    assert second["webserver"]["instance_name"] == "my laptop"
    assert second["logging"]["log_format"] == "%%(asctime)s %%(message)s"
    assert second["core"]["fernet_key"] == first["core"]["fernet_key"]
    assert second["api_auth"]["jwt_secret"] == first["api_auth"]["jwt_secret"]
    # The [mlsys] section is replaced whole: a setting dropped from the environment goes.
    path.write_text(path.read_text().replace("[mlsys]\n", "[mlsys]\nmlsys_gone = 1\n"))
    assert "mlsys_gone" not in read(write_airflow_cfg(home_settings))["mlsys"]


def test_an_older_homes_secret_files_move_into_the_cfg(home_settings: Settings) -> None:
    folder = home_settings.home / "airflow"
    folder.mkdir(parents=True)
    (folder / ".fernet_key").write_text("a" * 43 + "=\n")
    (folder / ".jwt_secret").write_text("j" * 80)
    cfg = read(write_airflow_cfg(home_settings))
    assert cfg["core"]["fernet_key"] == "a" * 43 + "="
    assert cfg["api_auth"]["jwt_secret"] == "j" * 80
    assert not (folder / ".fernet_key").exists() and not (folder / ".jwt_secret").exists()


def test_a_process_with_only_airflow_home_gets_the_homes_settings(
    home_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_airflow_cfg(home_settings)
    for name in list(home_settings.environ()):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AIRFLOW_CONFIG", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(airflow_cfg(home_settings).parent))
    assert Settings.from_env() == home_settings
    # Its own environment still wins, one variable at a time.
    monkeypatch.setenv("MLSYS_SCORE_SHARDS", "3")
    assert Settings.from_env() == replace(home_settings, score_shards=3)
    # With MLSYS_HOME the environment is the whole truth: the section is not read.
    monkeypatch.setenv("MLSYS_HOME", str(home_settings.home))
    assert recorded_environ() == {}
    assert Settings.from_env().snapshot_weeks == 12


def test_undated_runs_follow_the_landing_manifest(home_settings: Settings) -> None:
    assert home_settings.default_as_of(date(2026, 12, 6)) == date(2026, 12, 6)
    home_settings.raw_dir.mkdir(parents=True)
    home_settings.landing_manifest.write_text(json.dumps({"complete_as_of": "2026-06-01"}))
    assert home_settings.landing_complete_as_of() == date(2026, 6, 1)
    assert home_settings.default_as_of(date(2026, 12, 6)) == date(2026, 6, 1)
    assert home_settings.default_as_of(date(2026, 5, 1)) == date(2026, 5, 1)
    home_settings.landing_manifest.write_text('{"complete_as_of": "yesterday"}')
    with pytest.raises(ValueError, match="complete_as_of = YYYY-MM-DD"):
        home_settings.default_as_of()


def test_a_dag_run_after_the_landing_is_skipped(home_settings: Settings) -> None:
    assert airflow_support.not_landed(date(2030, 1, 1), home_settings) is None  # no manifest: all landed
    home_settings.raw_dir.mkdir(parents=True)
    home_settings.landing_manifest.write_text(json.dumps({"complete_as_of": "2026-06-01"}))
    assert airflow_support.not_landed(date(2026, 6, 1), home_settings) is None
    reason = airflow_support.not_landed(date(2026, 12, 6), home_settings)
    assert reason and "nothing landed for 2026-12-06" in reason and "2026-06-01" in reason
    # A manual run without a date: the manifest's day, not the trigger's.
    run = SimpleNamespace(run_after=datetime(2026, 12, 6, 19, 0))
    context = {"dag_run": run, "params": {}}
    assert airflow_support.as_of_from_context(context, home_settings) == date(2026, 6, 1)


def test_asset_event_extras_and_their_consumer() -> None:
    published = {
        "as_of": "2026-06-01",
        "model_name": "lead_scoring",
        "model_version": 3,
        "rows": 3000,
        "partition_relative": "scored_leads/score_date=2026-06-01",
    }
    extra = airflow_support.scored_leads_event(published)
    assert extra == {
        "score_date": "2026-06-01",
        "model_name": "lead_scoring",
        "model_version": "3",
        "rows": 3000,
        "partition": "scored_leads/score_date=2026-06-01",
    }
    events = [SimpleNamespace(extra=extra), SimpleNamespace(extra={**extra, "score_date": "2026-05-31"})]
    assert airflow_support.score_dates_of_events([*events, events[0]]) == [
        date(2026, 5, 31),
        date(2026, 6, 1),
    ]
    with pytest.raises(airflow_support.ConfError, match="no score_date"):
        airflow_support.score_dates_of_events([SimpleNamespace(extra={}, source_dag_id="someone")])
    trained = {
        "model_name": "m",
        "version": 4,
        "promoted": True,
        "champion_version": "4",
        "as_of": "2026-06-01",
    }
    assert airflow_support.model_event(trained) == {**trained, "version": "4"}
