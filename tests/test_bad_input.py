"""Bad input beyond the GX gate's data cases (docs/reliability.md): malformed `conf` on every
DAG, oversized on-demand requests, SQL in lead ids and strings, unknown columns, huge strings.

Every value reaches SQL as a bound parameter or an Arrow table, never as SQL text: ruff's S608
(in `make lint`) flags string-built SQL in mlsys/, dags/, plugins/, and each remaining case
carries the reason it is safe. The tests here show the behaviour at the doors.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from mlsys import on_demand, registry
from mlsys.on_demand import RequestError
from mlsys.settings import REPO_ROOT, Settings

AS_OF = date(2026, 6, 1)
HUGE = "x" * 1_000_000
SQL = "1; drop table leads; --"


@pytest.fixture(scope="module")
def dagbag(airflow_db: dict[str, str]) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


def _dag_test(dagbag: Any, dag_id: str, conf: dict[str, Any], day: date = AS_OF) -> Any:
    return dagbag.dags[dag_id].test(
        logical_date=datetime(day.year, day.month, day.day, tzinfo=UTC), run_conf=conf
    )


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state).rsplit(".", 1)[-1].lower() for ti in run.get_task_instances()}


# -- conf of the DAGs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dag_id", "conf", "fragment"),
    [
        ("score_leads", {"as_of": f"2026-06-01'; {SQL}"}, "as_of"),
        ("score_leads", {"as_of": 20260601}, "as_of"),
        ("score_leads", {"as_of": HUGE}, "as_of"),
        ("retrain", {"as_of": "2026-06-01 or 1=1"}, "as_of"),
        ("retrain", {"tune": SQL}, "tune"),
        ("retrain", {"estimator": ["logreg", "hgb"]}, "estimator"),
    ],
    ids=["sql-date", "int-date", "huge-date", "sql-date-retrain", "sql-bool", "list-enum"],
)
def test_malformed_params_are_refused_when_the_run_is_created(
    dagbag: Any, published: Path, dag_id: str, conf: dict[str, Any], fragment: str
) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=fragment):
        _dag_test(dagbag, dag_id, conf)


@pytest.mark.parametrize(
    ("dag_id", "conf"),
    [("score_leads", {"as-of": "2026-05-01"}), ("retrain", {"forse": True, SQL: 1})],
    ids=["typo-score_leads", "typo-retrain"],
)
def test_unknown_conf_keys_fail_the_first_task_and_nothing_runs(
    dagbag: Any, published: Path, settings: Settings, dag_id: str, conf: dict[str, Any]
) -> None:
    """A typo would otherwise be ignored: `as-of` would score the logical date instead."""
    before = sorted(p.name for p in settings.scored_dir.iterdir())
    versions = {
        mv.version for mv in registry.client(settings).search_model_versions(f"name='{settings.model_name}'")
    }
    run = _dag_test(dagbag, dag_id, conf, day=date(2026, 5, 1))
    states = _states(run)
    assert states["validate_raw"] == "failed"
    assert all(
        state in ("upstream_failed", "skipped", "none") for t, state in states.items() if t != "validate_raw"
    )
    ti = next(t for t in run.get_task_instances() if t.task_id == "validate_raw")
    assert ti.try_number == 1  # no retry: a conf does not get better
    assert sorted(p.name for p in settings.scored_dir.iterdir()) == before
    after = {
        mv.version for mv in registry.client(settings).search_model_versions(f"name='{settings.model_name}'")
    }
    assert after == versions


def _error_xcom(run: Any) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=run.run_id, key="error", dag_ids="score_on_demand", task_ids="score")
        ).first()
        assert row is not None, "no error XCom"
        value = XComModel.deserialize_value(row)
    return value if isinstance(value, dict) else json.loads(value)


@pytest.mark.parametrize(
    ("conf", "code"),
    [
        ({"leads": SQL}, "invalid_request"),
        ({"leads": [{"lead_id": "1 or 1=1"}]}, "invalid_lead"),
        ({"leads": [{"lead_id": i} for i in range(1, 1002)]}, "too_many_leads"),
        (
            {"leads": [{"lead_id": 1, "created_at": "2026-05-01", "source": "web", "industry": HUGE}]},
            "invalid_lead",
        ),
    ],
    ids=["sql-leads", "sql-lead-id", "oversized", "huge-string"],
)
def test_on_demand_dag_refuses_bad_conf_at_once_with_a_structured_error(
    dagbag: Any, published: Path, conf: dict[str, Any], code: str
) -> None:
    run = _dag_test(dagbag, "score_on_demand", conf)
    assert _states(run) == {"score": "failed"}
    ti = run.get_task_instances()[0]
    assert ti.try_number == 1
    error = _error_xcom(run)
    assert error["error"] == code
    assert len(json.dumps(error)) < 10_000  # a huge input does not make a huge error


# -- on-demand requests: oversized, huge strings, SQL ---------------------------------------------------


def _payload(**overrides: Any) -> dict[str, Any]:
    item = {"lead_id": 900_001, "created_at": "2026-05-20T09:30:00Z", "source": "referral"}
    item.update(overrides)
    return item


@pytest.mark.parametrize("field", ["industry", "source", "country", "job_level"])
def test_huge_strings_are_refused_with_a_short_message(field: str) -> None:
    with pytest.raises(RequestError) as excinfo:
        on_demand.parse_request({"leads": [_payload(**{field: HUGE})]})
    (problem,) = excinfo.value.details["problems"]
    assert problem["path"] == f"leads[0].{field}"
    assert f"at most {on_demand.MAX_TEXT_LENGTH} characters" in problem["message"]
    assert len(str(excinfo.value)) < 1_000


def test_huge_values_elsewhere_are_cut_short_in_errors() -> None:
    for conf in (
        {"leads": [{"lead_id": 1}], "as_of": HUGE},
        {"leads": [_payload(created_at=HUGE)]},
        {"leads": [_payload(activities=[{"occurred_at": "2026-05-01", "activity_type": HUGE}])]},
    ):
        with pytest.raises(RequestError) as excinfo:
            on_demand.parse_request(conf)
        assert len(str(excinfo.value)) < 1_000, conf


def test_too_many_activities_are_refused() -> None:
    activity = {"occurred_at": "2026-05-01T00:00:00", "activity_type": "email_open"}
    with pytest.raises(RequestError) as excinfo:
        on_demand.parse_request(
            {"leads": [_payload(activities=[activity] * (on_demand.MAX_ACTIVITIES_PER_LEAD + 1))]}
        )
    assert "at most 10000 activities" in excinfo.value.details["problems"][0]["message"]


def test_unknown_fields_and_columns_are_refused_not_ignored() -> None:
    for conf, fragment in (
        ({"leads": [_payload(**{SQL: 1})]}, "unknown field(s)"),
        ({"leads": [{"lead_id": 1}], SQL: 1}, "unknown key(s)"),
        (
            {"leads": [_payload(activities=[{"activity_type": "email_open", "note": "x"}])]},
            "unknown field(s)",
        ),
    ):
        with pytest.raises(RequestError, match=r"unknown"):
            on_demand.parse_request(conf)
        try:
            on_demand.parse_request(conf)
        except RequestError as exc:
            assert fragment in str(exc)


def test_lead_ids_reach_sql_as_bound_values(published: Path, settings: Settings) -> None:
    """The id lookup binds its list as a BIGINT[] parameter: text cannot become SQL. Called
    past the request checks, with strings, DuckDB refuses to cast them; nothing else happens."""
    scorer = on_demand.Scorer(settings, cache_features=False)
    path = settings.lead_features_path(AS_OF)
    rows_before = pq.ParquetFile(path).metadata.num_rows
    known = pq.read_table(path, columns=["lead_id"]).column("lead_id").to_pylist()[:2]
    table, missing = scorer.lookup(known, AS_OF, ["n_activities_7d"])
    assert table.column("lead_id").to_pylist() == known and missing == []
    for hostile in ("1) or (1=1", "0 union select * from read_parquet('/etc/passwd')", SQL):
        with pytest.raises(duckdb.Error, match=r"(?i)convert|cast"):
            scorer.lookup([hostile], AS_OF, ["n_activities_7d"])  # type: ignore[list-item]
    assert pq.ParquetFile(path).metadata.num_rows == rows_before


def test_sql_in_payload_strings_is_data(published: Path, settings: Settings) -> None:
    """Payload values go into DuckDB as Arrow tables: a quote-laden industry stays a value."""
    scorer = on_demand.Scorer(settings)
    nasty = "software'); drop table __mlsys_raw_leads; --"
    request = on_demand.parse_request({"leads": [_payload(industry=nasty)], "as_of": AS_OF.isoformat()})
    features = scorer.payload_features(request.payloads, AS_OF)
    assert features.num_rows == 1
    if "industry" in features.column_names:
        assert features.column("industry").to_pylist() == [nasty]
    (result,) = scorer.score({"leads": [_payload(industry=nasty)], "as_of": AS_OF.isoformat()})
    assert 0.0 <= result["score"] <= 1.0


# -- raw landing data: unknown columns and huge strings ------------------------------------------------


def test_unknown_columns_and_huge_strings_in_the_landing_data(isolated_settings: Settings) -> None:
    """The contract allows extra columns (ignored); a huge free-text value is just a category."""
    from mlsys import features, pipeline

    leads = isolated_settings.raw_dir / "leads"
    original = next(leads.glob("*.parquet"))
    widened = leads / "widened.parquet"
    duckdb.sql(
        f"""
        copy (
            select * replace (
                       case when lead_id % 500 = 0 then repeat('y', 100000) else industry end as industry
                   ),
                   '{SQL}' as "{SQL}"
            from read_parquet('{original}')
        ) to '{widened}' (format parquet)
        """
    )
    original.unlink()
    pipeline.gate_raw(AS_OF, isolated_settings)
    built = features.build(AS_OF, isolated_settings)
    table = pq.read_table(built.outputs["lead_features"])
    assert SQL not in table.column_names
    assert table.num_rows == built.rows["lead_features"] > 0
