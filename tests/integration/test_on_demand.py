"""On-demand scoring without servers: request checks, lookups, payload features from the
nightly SQL (parity with the published partition), the champion cache, metrics, the CLI."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlsys import champion as champion_model
from mlsys import on_demand, registry
from mlsys.on_demand import RequestError
from mlsys.settings import Settings

AS_OF = date(2026, 6, 1)


def _payload(lead_id: int = 900_001, **overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "lead_id": lead_id,
        "created_at": "2026-05-20T09:30:00Z",
        "source": "referral",
        "industry": "software",
        "country": "DE",
        "company_size": 120,
        "job_level": "director",
        "activities": [
            {"occurred_at": "2026-05-25T10:00:00Z", "activity_type": "pricing_page_view"},
            {"occurred_at": "2026-05-28T11:00:00+02:00", "activity_type": "demo_requested"},
        ],
    }
    item.update(overrides)
    return item


# -- request checks (no model needed) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("conf", "code", "status", "fragment"),
    [
        (None, "invalid_request", 400, "must be a JSON object"),
        ([{"lead_id": 1}], "invalid_request", 400, "got list"),
        ({}, "invalid_request", 400, "non-empty list"),
        ({"leads": []}, "invalid_request", 400, "non-empty list"),
        ({"leads": [{"lead_id": 1}], "when": "now"}, "invalid_request", 400, "unknown key(s) when"),
        ({"leads": [{"lead_id": 1}], "as_of": "06/01/2026"}, "invalid_request", 400, "YYYY-MM-DD"),
        ({"leads": [{"lead_id": i} for i in range(101)]}, "too_many_leads", 413, "at most 100"),
        (
            {"leads": [{"lead_id": " 1"}]},
            "invalid_lead",
            400,
            "leads[0].lead_id: must be 1-128 characters without control characters or spaces at either end",
        ),
        ({"leads": [{"lead_id": "a\x00b"}]}, "invalid_lead", 400, "without control characters"),
        ({"leads": [{"lead_id": True}]}, "invalid_lead", 400, "got bool"),
        ({"leads": [{"lead_id": 1.5}]}, "invalid_lead", 400, "got float"),
        ({"leads": [{"lead_id": 2**64}]}, "invalid_lead", 400, "BIGINT"),
        ({"leads": ["42"]}, "invalid_lead", 400, "leads[0]: must be an object"),
        ({"leads": [{"id": 42}]}, "invalid_lead", 400, "leads[0].lead_id: is required"),
        ({"leads": [{"lead_id": 1}, {"lead_id": 1}]}, "duplicate_lead", 400, "appears twice"),
    ],
)
def test_bad_requests_get_a_clear_structured_error(conf: Any, code: str, status: int, fragment: str) -> None:
    with pytest.raises(RequestError) as excinfo:
        on_demand.parse_request(conf)
    err = excinfo.value
    assert (err.code, err.status) == (code, status)
    assert fragment in err.message
    assert json.loads(str(err)) == {"error": code, "message": err.message, "details": err.details}


@pytest.mark.parametrize(
    ("overrides", "path", "fragment"),
    [
        ({"created_at": None}, "leads[0].created_at", "is required"),
        ({"created_at": "yesterday"}, "leads[0].created_at", "not an ISO 8601"),
        ({"created_at": 1717200000}, "leads[0].created_at", "got int"),
        ({"source": "carrier_pigeon"}, "leads[0].source", "must be one of"),
        ({"job_level": "intern"}, "leads[0].job_level", "must be one of"),
        ({"country": "Germany"}, "leads[0].country", "alpha-2"),
        ({"company_size": -3}, "leads[0].company_size", "positive integer"),
        ({"company_size": "12"}, "leads[0].company_size", "positive integer"),
        ({"industy": "software"}, "leads[0]", "unknown field(s) industy"),
        ({"activities": {"a": 1}}, "leads[0].activities", "must be a list"),
        ({"activities": [{"occurred_at": "2026-05-01", "activity_type": "fax"}]}, "activity_type", "fax"),
        ({"activities": [{"occurred_at": "soon", "activity_type": "email_open"}]}, "occurred_at", "soon"),
        ({"activities": [{"activity_type": "email_open", "lead_id": 5}]}, "lead_id", "differs"),
    ],
)
def test_payload_problems_name_the_field(overrides: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(RequestError) as excinfo:
        on_demand.parse_request({"leads": [_payload(**overrides)]})
    problems = excinfo.value.details["problems"]
    assert any(path in p["path"] and fragment in p["message"] for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    conf = {"leads": [_payload(source="x"), {"lead_id": " a"}, _payload(lead_id=3, company_size=0)]}
    with pytest.raises(RequestError) as excinfo:
        on_demand.parse_request(conf)
    assert excinfo.value.details["count"] == 3
    assert excinfo.value.message.endswith("(and 2 more)")


def test_parsed_payload_is_typed_in_utc() -> None:
    request = on_demand.parse_request({"leads": [{"lead_id": 7}, _payload()], "as_of": "2026-06-01"})
    assert request.as_of == AS_OF
    assert [r.lead_id for r in request.refs] == [7]
    (payload,) = request.payloads
    assert payload.attributes["created_at"] == datetime(2026, 5, 20, 9, 30)
    assert payload.activities[1] == (datetime(2026, 5, 28, 9, 0), "demo_requested")


def test_the_limit_is_configurable() -> None:
    with pytest.raises(RequestError, match="at most 2 leads"):
        on_demand.parse_request({"leads": [{"lead_id": i} for i in range(3)]}, max_leads=2)


# -- against the published partition ---------------------------------------------------------------


@pytest.fixture(scope="module")
def partition(published: Path) -> dict[int, dict[str, Any]]:
    return {r["lead_id"]: r for r in pq.read_table(published).to_pylist()}


@pytest.fixture(scope="module")
def scorer(published: Path, settings: Settings, partition: dict[int, dict[str, Any]]) -> on_demand.Scorer:
    # Pinned to the version that scored the partition: other tests may promote a new champion.
    version = next(iter(partition.values()))["model_version"]
    return on_demand.Scorer(settings, model_version=version)


def _assert_same(result: dict[str, Any], nightly: dict[str, Any]) -> None:
    assert result["score"] == pytest.approx(nightly["score"], abs=1e-9)
    assert result["score_band"] == nightly["score_band"]
    assert result["model_version"] == nightly["model_version"]
    assert [r["feature"] for r in result["top_reasons"]] == [r["feature"] for r in nightly["top_reasons"]]
    for mine, theirs in zip(result["top_reasons"], nightly["top_reasons"], strict=True):
        assert mine["contribution"] == pytest.approx(theirs["contribution"], abs=1e-9)


def test_lead_ids_score_like_the_nightly_partition(
    scorer: on_demand.Scorer, partition: dict[int, dict[str, Any]]
) -> None:
    ids = sorted(partition)[::37][:60]
    results = scorer.score({"leads": [{"lead_id": i} for i in ids]})
    assert [r["lead_id"] for r in results] == ids
    for result in results:
        assert result["as_of"] == AS_OF.isoformat()
        _assert_same(result, partition[result["lead_id"]])
    assert any(r["top_reasons"] for r in results)


def test_payloads_score_like_the_nightly_partition(
    scorer: on_demand.Scorer, settings: Settings, partition: dict[int, dict[str, Any]]
) -> None:
    """Parity: a lead's attributes and all its activities before as_of, sent as a payload and
    featurized by the compiled dbt SQL in memory, score as the nightly partition scored them."""
    ids = sorted(partition)[5::29][:80]
    payloads = on_demand.payloads_from_raw(settings, ids, AS_OF)
    assert len(payloads) == len(ids)
    assert any(not p["activities"] for p in payloads) or any(len(p["activities"]) > 20 for p in payloads)
    results = scorer.score({"leads": payloads, "as_of": AS_OF.isoformat()})
    assert [r["lead_id"] for r in results] == ids
    for result in results:
        _assert_same(result, partition[result["lead_id"]])


def test_mixed_request_keeps_request_order(scorer: on_demand.Scorer, partition: dict[int, Any]) -> None:
    first, second = sorted(partition)[:2]
    results = scorer.score({"leads": [{"lead_id": first}, _payload(), {"lead_id": second}]})
    assert [r["lead_id"] for r in results] == [first, 900_001, second]
    # Lookups use the published date, payloads the next nightly cut-off (tomorrow UTC).
    assert results[0]["as_of"] == AS_OF.isoformat()
    assert results[1]["as_of"] == (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    assert 0.0 <= results[1]["score"] <= 1.0


def test_activity_on_or_after_as_of_is_ignored(scorer: on_demand.Scorer) -> None:
    def features(activities: list[dict[str, str]]) -> dict[str, Any]:
        request = on_demand.parse_request({"leads": [_payload(activities=activities)]})
        return scorer.payload_features(request.payloads, AS_OF).to_pylist()[0]

    demo = {"activity_type": "demo_requested"}
    base = features(_payload()["activities"])
    assert base["n_demo_requested_7d"] == 1 and base["n_activities_total"] == 2
    assert features([*_payload()["activities"], {**demo, "occurred_at": "2026-06-01T00:00:00"}]) == base
    hot = features([*_payload()["activities"], {**demo, "occurred_at": "2026-05-31T23:59:59"}])
    assert hot["n_demo_requested_7d"] == 2 and hot["days_since_last_activity"] == pytest.approx(1 / 86400)


def test_unknown_and_too_new_leads_are_errors(scorer: on_demand.Scorer) -> None:
    with pytest.raises(RequestError) as excinfo:
        scorer.score({"leads": [{"lead_id": 1}, {"lead_id": 987_654_321}]})
    assert (excinfo.value.code, excinfo.value.status) == ("unknown_leads", 404)
    assert excinfo.value.details["lead_ids"] == [987_654_321]
    with pytest.raises(RequestError) as excinfo:
        scorer.score({"leads": [_payload(created_at="2026-06-02T08:00:00")], "as_of": "2026-06-01"})
    assert excinfo.value.code == "lead_not_known_at_as_of"
    with pytest.raises(RequestError) as excinfo:
        scorer.score({"leads": [{"lead_id": 1}], "as_of": "2020-01-01"})
    assert (excinfo.value.code, excinfo.value.status) == ("no_features", 404)
    # A text id (well-formed as text) for a source keyed by integers: refused with the reason.
    with pytest.raises(RequestError) as excinfo:
        scorer.score({"leads": [{"lead_id": 1}, {"lead_id": "1; drop table x"}]})
    assert (excinfo.value.code, excinfo.value.status) == ("invalid_lead", 400)
    assert excinfo.value.message == (
        "leads[1].lead_id: must be an integer: this source's lead ids are integers (BIGINT), got str"
    )


def test_cached_and_uncached_lookups_agree(
    scorer: on_demand.Scorer, settings: Settings, partition: dict[int, Any]
) -> None:
    ids = sorted(partition)[-25:]
    conf = {"leads": [{"lead_id": i} for i in ids]}
    uncached = on_demand.Scorer(settings, model_version=scorer.pinned_version, cache_features=False)
    uncached._champion = scorer._champion  # the loaded model, not a second load
    assert uncached.score(conf) == scorer.score(conf)


def test_model_frame_is_the_nightly_model_input(scorer: on_demand.Scorer, settings: Settings) -> None:
    import pandas as pd

    from mlsys.model import prepare_frame

    champion = scorer.champion()
    table = pq.read_table(settings.lead_features_path(AS_OF)).slice(0, 300)
    expected = prepare_frame(table.to_pandas(), champion.numeric, champion.categorical)
    pd.testing.assert_frame_equal(
        champion_model.model_frame(table, champion.numeric, champion.categorical), expected
    )


def test_split_scoring_is_exactly_the_nightly_computation(
    scorer: on_demand.Scorer, settings: Settings
) -> None:
    champion = scorer.champion()
    assert champion.split_scoring, "the logistic champion should use split scoring"
    table = pq.read_table(settings.lead_features_path(AS_OF)).slice(0, 500)
    p, reasons, _ = champion.predict(table)
    # The nightly computation: predict_proba and the explainer on the pandas frame.
    x = champion_model.model_frame(table, champion.numeric, champion.categorical)
    assert np.array_equal(p, champion.loaded.model.predict_proba(x)[:, 1])
    assert champion.explainer is not None
    assert reasons == champion.explainer.top_reasons(x)


def _registry_copy(settings: Settings, folder: Path) -> Settings:
    """Settings on a copy of the session's MLflow store, free to move aliases in."""
    import sqlite3

    db = folder / "mlflow.db"
    source_db = settings.mlflow_tracking_uri.removeprefix("sqlite:///")
    with sqlite3.connect(source_db) as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    return dataclasses.replace(settings, mlflow_tracking_uri=f"sqlite:///{db}")


def test_no_champion_is_unavailable(published: Path, settings: Settings, tmp_path: Path) -> None:
    """503 at once; and a server's warm-up finishes anyway and says ready without a champion,
    so a healthcheck waiting for it cannot block the stack that would train the first one."""
    from mlsys.on_demand.serving import WarmUp

    copy = _registry_copy(settings, tmp_path)
    registry.client(copy).delete_registered_model_alias(copy.model_name, registry.CHAMPION)
    scorer = on_demand.Scorer(copy)
    try:
        with pytest.raises(on_demand.UnavailableError) as excinfo:
            scorer.score({"leads": [{"lead_id": 1}]})
        warm_up = WarmUp(scorer, payloads=False, freeze_gc=False)
        assert warm_up.public_readiness() == (503, {"status": "loading", "champion_loaded": False})
        warm_up.start()
        assert warm_up.wait(120)
    finally:
        scorer.stop_refresher()
        registry.configure(settings)  # MLflow's global tracking URI back to the session's store
    assert (excinfo.value.code, excinfo.value.status) == ("no_champion", 503)
    assert "retrain" in excinfo.value.message
    assert warm_up.public_readiness() == (200, {"status": "ready", "champion_loaded": False})
    assert warm_up.readiness()["steps"]["champion"].startswith("no_champion:")


def test_champion_reloads_when_the_alias_moves(
    published: Path, settings: Settings, tmp_path: Path, partition: dict[int, Any]
) -> None:
    """On a copy of the registry: a new version takes the alias, the running scorer follows."""
    copy = _registry_copy(settings, tmp_path)
    client = registry.client(copy)
    current = client.get_model_version_by_alias(copy.model_name, registry.CHAMPION)
    scorer = on_demand.Scorer(copy, refresh_seconds=0)
    lead = {"leads": [{"lead_id": sorted(partition)[0]}]}
    assert scorer.score(lead)[0]["model_version"] == str(current.version)
    newer = client.create_model_version(copy.model_name, current.source, run_id=current.run_id)
    client.set_registered_model_alias(copy.model_name, registry.CHAMPION, newer.version)
    moved = scorer.score(lead)[0]
    assert moved["model_version"] == str(newer.version) != str(current.version)
    assert scorer.describe()["model_version"] == str(newer.version)
    # A scorer that checks rarely keeps its loaded version until the next check.
    lazy = on_demand.Scorer(copy, refresh_seconds=3600)
    assert lazy.score(lead)[0]["model_version"] == str(newer.version)
    client.set_registered_model_alias(copy.model_name, registry.CHAMPION, current.version)
    assert lazy.score(lead)[0]["model_version"] == str(newer.version)
    assert scorer.score(lead)[0]["model_version"] == str(current.version)
    registry.configure(settings)  # MLflow's global tracking URI back to the session's store


def test_refresher_thread_follows_the_alias(
    published: Path, settings: Settings, tmp_path: Path, partition: dict[int, Any]
) -> None:
    """A server's scorer: the alias is checked off the request path, requests keep scoring
    with the loaded version until the new one is in."""
    import time

    copy = _registry_copy(settings, tmp_path)
    client = registry.client(copy)
    current = client.get_model_version_by_alias(copy.model_name, registry.CHAMPION)
    scorer = on_demand.Scorer(copy, refresh_seconds=0.2)
    lead = {"leads": [{"lead_id": sorted(partition)[0]}]}
    try:
        assert scorer.score(lead)[0]["model_version"] == str(current.version)
        scorer.start_refresher()
        newer = client.create_model_version(copy.model_name, current.source, run_id=current.run_id)
        client.set_registered_model_alias(copy.model_name, registry.CHAMPION, newer.version)
        deadline = time.monotonic() + 120
        versions = set()
        while time.monotonic() < deadline:
            versions.add(scorer.score(lead)[0]["model_version"])
            if str(newer.version) in versions:
                break
            time.sleep(0.1)
        assert versions <= {str(current.version), str(newer.version)}
        assert str(newer.version) in versions
        client.delete_registered_model_alias(copy.model_name, registry.CHAMPION)
        time.sleep(1.0)
        with pytest.raises(on_demand.UnavailableError, match="no version"):
            scorer.score(lead)
    finally:
        scorer.stop_refresher()
        registry.configure(settings)


# -- the compiled feature SQL ------------------------------------------------------------------


def test_feature_sql_is_cached_per_project_version(scorer: on_demand.Scorer, settings: Settings) -> None:
    sql = scorer.feature_sql()
    cached = settings.home / "dbt" / "on_demand" / f"lead_features-{sql.project_hash}.json"
    assert cached.exists()
    assert "read_parquet" not in sql.sql and "__mlsys_raw_activities" in sql.sql
    assert f"'{on_demand.SENTINELS[0]}'" in sql.sql
    assert "'2026-06-01'" in sql.render(AS_OF) and on_demand.SENTINELS[0] not in sql.render(AS_OF)


def test_as_of_used_other_than_as_a_literal_is_refused(settings: Settings, tmp_path: Path) -> None:
    project = tmp_path / "sql"
    shutil.copytree(settings.dbt_project_dir, project, ignore=shutil.ignore_patterns("target", "logs"))
    mart = project / "models" / "marts" / "lead_features.sql"
    shifted = "(modules.datetime.date.fromisoformat(var('as_of')) - modules.datetime.timedelta(days=1))"
    mart.write_text(
        mart.read_text().replace("as as_of,", f"as as_of,\n    '{{{{ {shifted} }}}}' as day_before,")
    )
    copy = dataclasses.replace(settings, dbt_project_dir=project, home=tmp_path / "home")
    assert on_demand.project_hash(copy) != on_demand.project_hash(settings)
    with pytest.raises(on_demand.UnavailableError, match="other than as a date literal"):
        on_demand.compile_feature_sql(copy)


# -- metrics -----------------------------------------------------------------------------------


def test_metrics_of_every_request(scorer: on_demand.Scorer, settings: Settings) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(2.0)
    try:
        port = listener.getsockname()[1]
        metered = on_demand.Scorer(
            dataclasses.replace(settings, statsd_port=port), model_version=scorer.pinned_version
        )
        metered._champion = scorer._champion  # the loaded model, not a second load
        metered.score({"leads": [{"lead_id": 1}, {"lead_id": 2}]})
        with pytest.raises(RequestError):
            metered.score({"leads": "all of them"})
        received: list[str] = []
        while len([line for line in received if line]) < 5:
            received += listener.recv(4096).decode().split("\n")
    finally:
        listener.close()
    names = {line.split(":")[0]: line.split("|")[1] for line in received if line}
    assert names == {
        "mlsys.predictions.success": "c",
        "mlsys.predictions.error": "c",
        "mlsys.prediction.duration": "ms",
        "mlsys.prediction.batch_size": "h",
    }
    assert "mlsys.prediction.batch_size:2.0|h" in received or "mlsys.prediction.batch_size:2|h" in received


# -- the CLI, in-process ------------------------------------------------------------------------


def test_cli_scores_lead_ids_and_payload_files(
    published: Path, tmp_path: Path, partition: dict[int, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from mlsys.cli import main

    lead = sorted(partition)[3]
    payload_file = tmp_path / "lead.json"
    payload_file.write_text(json.dumps(_payload()))
    assert main(["score", "--lead-id", str(lead), "--payload", str(payload_file)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["lead_id"] for r in results] == [lead, 900_001]

    payload_file.write_text(json.dumps(_payload(source="fax")))
    assert main(["score", "--payload", str(payload_file)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("mlsys score: invalid_lead: leads[0].source")
    assert json.loads(err[1])["error"] == "invalid_lead"

    assert main(["score", "--lead-id", "1", "--sync"]) == 2
    assert "--sync needs --api" in capsys.readouterr().err
