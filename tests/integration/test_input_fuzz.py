"""No input crashes a door: property tests of the shared input rules, the on-demand parser
against the published schema, the scorer, the CLI's `--payload` files and the `score_leads`
/ `retrain` conf, on generated inputs (tests/fuzz.py). The live plugin is fuzzed from its
schema in tests/stack/test_live_api.py, the DAG's conf path in tests/integration/test_bad_input.py.

"Crash" means any exception other than the door's designed refusal: InvalidJSON from the
document rules, RequestError/ScoringError from on-demand, ParamValidationError or ConfError
from a DAG's conf. Each refusal must render as the structured JSON clients read.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mlsys import input_rules
from mlsys.on_demand import serving as on_demand_serving
from mlsys.on_demand.request import RequestError, ScoringError, decode_body, parse_request
from mlsys.settings import Settings
from tests.fuzz import (
    EDGE_VALUES,
    JSON_VALUES,
    PAYLOAD,
    REPRODUCTIONS,
    REQUESTS,
    as_bytes,
    edge_requests,
    edge_timestamps,
    fuzz_settings,
    score_bodies,
)

AS_OF = date(2026, 6, 1)
DEEP_BODY = b"[" * 100_000 + b"]" * 100_000


def refusal(exc: ScoringError) -> dict[str, Any]:
    """The error as a client reads it; it must be small and encodable whatever the input."""
    body = json.loads(on_demand_serving.render(exc.to_dict()))
    assert set(body) == {"error", "message", "details"} and isinstance(body["details"], dict)
    assert len(json.dumps(body)) < 10_000
    return body


# -- the shared document and value rules ---------------------------------------------------------


@fuzz_settings(300)
@given(data=st.binary(max_size=300) | JSON_VALUES.map(as_bytes) | st.text(max_size=300).map(str.encode))
@example(data=DEEP_BODY)
@example(data=b"[NaN]")
@example(data=b'{"x": 1e400}')
@example(data=b'"\\ud800"')
@example(data=b"\xff\xfe")
def test_decode_json_refuses_or_returns_json(data: bytes) -> None:
    try:
        value = input_rules.decode_json(data, max_bytes=10_000)
    except input_rules.InvalidJSON as exc:
        assert exc.reason in {"too_large", "too_deep", "not_utf8", "not_json", "not_finite"}
        assert len(str(exc)) < 400
        return
    json.dumps(value, allow_nan=False)  # what was accepted is JSON again (finite, not too deep)


@fuzz_settings(300)
@given(value=EDGE_VALUES | edge_timestamps())
def test_value_rules_refuse_with_a_short_message(value: Any) -> None:
    for rule in (
        input_rules.utc_timestamp,
        input_rules.iso_date,
        input_rules.integer,
        input_rules.finite,
        lambda v: input_rules.text(v, 200),
    ):
        try:
            checked = rule(value)
        except ValueError as exc:
            assert len(str(exc)) < 300 and str(exc).encode()
            continue
        if isinstance(checked, datetime):
            # What is accepted is what Arrow and DuckDB hold: naive, years 1-9999.
            assert checked.tzinfo is None and 1 <= checked.year <= 9999
        if isinstance(checked, str):
            checked.encode("utf-8")


# -- the on-demand parser and the published schema -----------------------------------------------


@fuzz_settings(400)
@given(conf=REQUESTS | JSON_VALUES)
def test_parse_request_accepts_or_refuses_with_paths(conf: Any) -> None:
    try:
        request = parse_request(conf)
    except RequestError as exc:
        body = refusal(exc)
        for problem in body["details"].get("problems", []):
            assert re.match(r"leads\[\d+\]", problem["path"]), problem
        return
    for payload in request.payloads:
        for stamp in [payload.attributes["created_at"], *(a[0] for a in payload.activities)]:
            assert stamp.tzinfo is None and 1 <= stamp.year <= 9999


@pytest.mark.parametrize("name", sorted(REPRODUCTIONS))
def test_the_reproductions_are_refused_with_their_path(name: str) -> None:
    conf, path = REPRODUCTIONS[name]
    with pytest.raises(RequestError) as excinfo:
        parse_request(conf)
    body = refusal(excinfo.value)
    assert (excinfo.value.status, body["error"]) == (400, "invalid_lead")
    assert [p["path"] for p in body["details"]["problems"]] == [path]


def test_a_deeply_nested_body_is_refused_before_parsing() -> None:
    with pytest.raises(RequestError) as excinfo:
        decode_body(DEEP_BODY)
    assert (excinfo.value.status, excinfo.value.code) == (400, "invalid_json")
    assert "nests deeper than 32 levels" in excinfo.value.message
    # The same document arriving already parsed (a DAG conf) is refused with its path.
    with pytest.raises(RequestError, match=r"leads\[0\]\.industry.*deeper than 32"):
        parse_request({"leads": [{**PAYLOAD, "industry": json.loads(b"[" * 40 + b"]" * 40)}]})


def test_what_the_schema_refuses_the_parser_refuses(score_openapi: dict[str, Any]) -> None:
    """Negative cases from the published schema: the parser refuses every one, so the schema
    never promises less than the door enforces."""

    @fuzz_settings(150)
    @given(document=score_bodies(score_openapi, "negative"))
    def check(document: Any) -> None:
        with pytest.raises(RequestError) as excinfo:
            parse_request(decode_body(as_bytes(document)))
        refusal(excinfo.value)

    check()


# What a JSON Schema cannot say; the parser alone refuses these in schema-valid documents.
SEMANTIC = re.compile(
    r"appears twice|outside years 0001-9999|is not a valid date|differs from the lead's lead_id|"
    r"written as a float is not exact"
)


def test_what_the_schema_allows_the_parser_accepts(score_openapi: dict[str, Any]) -> None:
    """Positive cases: accepted, or refused only for what the schema cannot express."""

    @fuzz_settings(150)
    @given(document=score_bodies(score_openapi, "positive"))
    def check(document: Any) -> None:
        try:
            parse_request(decode_body(as_bytes(document)))
        except RequestError as exc:
            assert SEMANTIC.search(exc.message), refusal(exc)

    check()


# -- the scorer behind the parser ----------------------------------------------------------------


@pytest.fixture(scope="module")
def scorer(published: Path) -> Any:
    from mlsys import on_demand

    return on_demand.Scorer(Settings.from_env())


def test_the_scorer_answers_or_refuses_every_request(scorer: Any) -> None:
    """Requests at every edge, through the plugin's own answer: never a 500. The accepted ones
    reach the feature SQL and the model with years 1 and 9999, any offset, ids at 2^63-1,
    company sizes at 2^53, and are scored."""
    outcomes: dict[int, int] = {}

    @fuzz_settings(80)
    @given(conf=REQUESTS | edge_requests())
    @example(conf={"leads": [PAYLOAD], "as_of": AS_OF.isoformat()})
    def check(conf: dict[str, Any]) -> None:
        status, body = on_demand_serving.answer_score(scorer, as_bytes(conf), "fuzz")
        answer = json.loads(body)
        assert status < 500, answer
        outcomes[status] = outcomes.get(status, 0) + 1
        if status == 200:
            assert len(answer["results"]) == len(conf["leads"])
            assert all(0.0 <= r["score"] <= 1.0 for r in answer["results"])
        else:
            assert set(answer) == {"error", "message", "details"}

    check()
    assert outcomes.get(200) and outcomes.get(400), outcomes


@pytest.mark.parametrize("name", sorted(REPRODUCTIONS))
def test_the_reproductions_answer_400_through_the_plugin_code(scorer: Any, name: str) -> None:
    conf, path = REPRODUCTIONS[name]
    status, body = on_demand_serving.answer_score(scorer, json.dumps(conf).encode(), "repro")
    answer = json.loads(body)
    assert (status, answer["error"], answer["details"]["problems"][0]["path"]) == (400, "invalid_lead", path)


def test_an_unexpected_failure_is_json_with_a_logged_request_id(
    scorer: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt features file is nothing a request could fix: 500 `internal`, the request
    id in the body and on the logged traceback."""
    day = date(2026, 1, 3)
    path = settings.lead_features_path(day)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not parquet")
    try:
        with caplog.at_level(logging.ERROR, logger="mlsys.on_demand"):
            status, body = on_demand_serving.answer_score(
                scorer, json.dumps({"leads": [{"lead_id": 1}], "as_of": day.isoformat()}).encode(), "rid-42"
            )
    finally:
        path.unlink()
    answer = json.loads(body)
    assert status == 500 and answer["error"] == "internal" and answer["details"] == {"request_id": "rid-42"}
    assert any("rid-42" in r.getMessage() and r.exc_info for r in caplog.records)


# -- the CLI's --payload files -------------------------------------------------------------------

CLI_CODES = (
    "invalid_json|invalid_request|invalid_lead|duplicate_lead|too_many_leads|request_too_large|"
    "unknown_leads|no_features|lead_not_known_at_as_of"
)


@pytest.fixture
def _restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("_restore_root_logging")
def test_cli_payload_files_score_or_exit_1_with_a_code(
    published: Path, score_openapi: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlsys.cli import main

    path = tmp_path / "payload.json"

    @fuzz_settings(40)
    @given(
        content=score_bodies(score_openapi, "negative").map(as_bytes)
        | REQUESTS.map(as_bytes)
        | st.binary(max_size=200)
    )
    @example(content=DEEP_BODY)
    @example(content=json.dumps(REPRODUCTIONS["created_at-overflows-to-utc"][0]).encode())
    @example(content=json.dumps(REPRODUCTIONS["company_size-past-2^53"][0]).encode())
    def check(content: bytes) -> None:
        path.write_bytes(content)
        code = main(["score", "--payload", str(path), "--as-of", AS_OF.isoformat()])
        out, err = capsys.readouterr()
        if code == 0:
            assert isinstance(json.loads(out), list)
            return
        # Log lines (a champion loading) may come first; the reason is the CLI's own line.
        lines = err.strip().splitlines()
        reason = next(i for i, line in enumerate(lines) if line.startswith("mlsys score: "))
        assert code == 1 and re.match(rf"mlsys score: ({CLI_CODES}): ", lines[reason]), err
        assert set(json.loads(lines[reason + 1])) == {"error", "message", "details"}

    check()


# -- score_leads and retrain conf ----------------------------------------------------------------


@pytest.fixture(scope="module")
def scheduler_dags(airflow_db: dict[str, str]) -> dict[str, Any]:
    """The DAGs as the scheduler and the REST API hold them (what validates conf at trigger)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    from mlsys.settings import REPO_ROOT

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    return {
        dag_id: (
            bag.dags[dag_id],
            DagSerialization.deserialize_dag(DagSerialization.serialize_dag(bag.dags[dag_id])),
        )
        for dag_id in ("score_leads", "retrain")
    }


CONF_KEYS = {
    "score_leads": ["as_of"],
    "retrain": ["force", "tune", "use_smote", "class_weights", "estimator", "as_of"],
}


def _dag_conf(dag_id: str) -> st.SearchStrategy[dict[str, Any]]:
    known = CONF_KEYS[dag_id]
    value = EDGE_VALUES | st.sampled_from(
        [True, False, "hgb", "logreg", "2026-06-01", "20260601", "9999-12-31"]
    )
    return st.dictionaries(st.sampled_from(known) | st.text(max_size=6), value, max_size=4)


def _first_task_checks(dag_id: str, conf: dict[str, Any], params: dict[str, Any]) -> None:
    """What the DAG's tasks do with a conf before any work (validate_raw, check_drift,
    train_and_promote): the same functions, on the same values."""
    from mlsys.airflow_support import as_of_from_context, bool_param, check_conf_keys

    context = {
        "dag_run": SimpleNamespace(conf=conf),
        "params": params,
        "logical_date": datetime(2026, 6, 1, tzinfo=UTC),
    }
    check_conf_keys(context, set(CONF_KEYS[dag_id]))
    as_of_from_context(context, Settings.from_env())
    if dag_id == "retrain":
        for key, default in (
            ("force", False),
            ("tune", False),
            ("use_smote", True),
            ("class_weights", False),
        ):
            bool_param(params, key, default)


@pytest.mark.parametrize("dag_id", sorted(CONF_KEYS))
def test_dag_conf_is_refused_at_trigger_or_by_the_first_task(
    scheduler_dags: dict[str, Any], dag_id: str
) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    from mlsys.airflow_support import ConfError

    _, scheduler_dag = scheduler_dags[dag_id]

    @fuzz_settings(150)
    @given(conf=_dag_conf(dag_id))
    def check(conf: dict[str, Any]) -> None:
        try:
            params = scheduler_dag.params.deep_merge(conf)
            params.validate()  # what create_dagrun runs when the REST API triggers
        except ParamValidationError as exc:
            assert len(str(exc)) < 5_000
            return
        try:
            _first_task_checks(dag_id, conf, dict(params.dump()))
        except ConfError as exc:
            assert len(str(exc)) < 500

    check()
