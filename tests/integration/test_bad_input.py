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
from tests.fuzz import REPRODUCTIONS, nested

AS_OF = date(2026, 6, 1)
HUGE = "x" * 1_000_000
SQL = "1; drop table leads; --"


@pytest.fixture(scope="module")
def dagbag(airflow_db: dict[str, str]) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


def _dag_test(dagbag: Any, dag_id: str, conf: Any, day: date = AS_OF) -> Any:
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
        ("score_on_demand", {"leads": SQL}, "leads"),
        ("score_on_demand", {"leads": ["42"]}, "leads"),
        ("score_on_demand", {"leads": [{"lead_id": 1}], "as_of": "06/01/2026"}, "as_of"),
        ("score_on_demand", {}, "leads"),
    ],
    ids=[
        "sql-date",
        "int-date",
        "huge-date",
        "sql-date-retrain",
        "sql-bool",
        "list-enum",
        "on-demand-sql-leads",
        "on-demand-leads-not-objects",
        "on-demand-bad-as-of",
        "on-demand-no-leads",
    ],
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
        ({"leads": [{"lead_id": 1}], "when": SQL}, "invalid_request"),
        ({"leads": [{"lead_id": "1 or 1=1"}]}, "invalid_lead"),
        ({"leads": [{"lead_id": i} for i in range(1, 1002)]}, "too_many_leads"),
        (
            {"leads": [{"lead_id": 1, "created_at": "2026-05-01", "source": "web", "industry": HUGE}]},
            "invalid_lead",
        ),
    ],
    ids=["sql-key", "sql-lead-id", "oversized", "huge-string"],
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


def _on_demand_outcome(dagbag: Any, conf: Any) -> tuple[str, Any]:
    """('refused', ParamValidationError) when Airflow refuses the conf at trigger time, else
    ('failed', the task's XCom error) after asserting the one failed try, or ('success', run)."""
    from airflow.sdk.exceptions import ParamValidationError

    try:
        run = _dag_test(dagbag, "score_on_demand", conf)
    except ParamValidationError as exc:
        return "refused", exc
    states = _states(run)
    if states == {"score": "success"}:
        return "success", run
    assert states == {"score": "failed"}, states
    assert run.get_task_instances()[0].try_number == 1  # no retry: a request does not get better
    return "failed", _error_xcom(run)


@pytest.mark.parametrize(
    "name", ["created_at-to-utc", "occurred_at-to-utc", "past-2^63", "past-2^53", "deep"]
)
def test_the_reproductions_fail_the_dag_once_with_their_error(
    dagbag: Any, published: Path, name: str
) -> None:
    """The issue's four 500s, as DAG conf: one failed try, XCom `error` naming the field."""
    reproductions = {
        "created_at-to-utc": REPRODUCTIONS["created_at-overflows-to-utc"],
        "occurred_at-to-utc": REPRODUCTIONS["occurred_at-overflows-to-utc"],
        "past-2^63": REPRODUCTIONS["company_size-past-2^63"],
        "past-2^53": REPRODUCTIONS["company_size-past-2^53"],
        # 100 levels, far past the rules' 32. (Airflow's task runner cannot read a conf past
        # about 200: pydantic's JSON recursion limit, before any mlsys code runs.)
        "deep": ({"leads": [{"lead_id": 1, "industry": nested(100)}]}, None),
    }
    conf, path = reproductions[name]
    outcome, error = _on_demand_outcome(dagbag, conf)
    assert outcome == "failed"
    if path is None:
        assert error["error"] == "invalid_request" and "deeper than 32 levels" in error["message"]
    else:
        assert error["error"] == "invalid_lead"
        assert [p["path"] for p in error["details"]["problems"]] == [path]


def test_what_the_plugin_refuses_fails_the_dag_once_with_the_same_error(
    dagbag: Any, published: Path, score_openapi: dict[str, Any]
) -> None:
    """The live fuzzer's generators drive the DAG's conf path through real `dag.test()` runs:
    a request the plugin refuses is refused at trigger time (its shape) or fails the task once
    with the plugin's error code in XCom `error`; never a retry, never another exception."""
    from hypothesis import given

    from mlsys import on_demand
    from mlsys.on_demand import serving as on_demand_serving
    from tests.fuzz import as_bytes, fuzz_settings, score_bodies

    scorer = on_demand.Scorer(Settings.from_env(), cache_features=False)
    seen: set[str] = set()

    # Objects only: Airflow's trigger API takes `conf` as a JSON object (anything else is its 422).
    @fuzz_settings(25)
    @given(body=score_bodies(score_openapi, "negative").filter(lambda b: isinstance(b, dict)))
    def check(body: Any) -> None:
        status, answer = on_demand_serving.answer_score(scorer, as_bytes(body), "dag-fuzz")
        refused = json.loads(answer)
        assert 400 <= status < 500, refused
        outcome, error = _on_demand_outcome(dagbag, body)
        seen.add(outcome)
        if outcome == "failed":
            assert error["error"] == refused["error"], (error, refused)

    check()
    assert seen <= {"refused", "failed"} and seen, seen


def test_an_unexpected_failure_in_the_dag_leaves_an_internal_error(
    dagbag: Any, published: Path, settings: Settings
) -> None:
    """Not a bad request (a corrupt features file): XCom `error` = `internal` naming the run
    whose task log has the traceback, and the task is retried, not failed for good."""
    day = date(2026, 1, 7)
    path = settings.lead_features_path(day)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not parquet")
    try:
        run = _dag_test(dagbag, "score_on_demand", {"leads": [{"lead_id": 1}], "as_of": day.isoformat()})
    finally:
        path.unlink()
    ti = run.get_task_instances()[0]
    assert str(ti.state).rsplit(".", 1)[-1].lower() in ("up_for_retry", "failed")
    assert ti.max_tries == 1  # the DAG's one retry is kept for what a retry may fix
    error = _error_xcom(run)
    assert error["error"] == "internal" and error["details"] == {"request_id": run.run_id}
    assert "the task log" in error["message"]


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
