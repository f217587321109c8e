"""Generators the fuzz and property tests share: schemathesis's cases from the plugin's own
OpenAPI schema (positive: what the schema allows; negative: what it refuses), arbitrary JSON,
and the values at the edges of every rule (timestamps near years 1 and 9999 with any offset,
integers around 2^53 and 2^63, lone surrogates, deep nesting).

Example counts are bounded so `make test` stays fast; `FUZZ_EXAMPLES=<n>` scales every test
here up for a longer hunt (e.g. `FUZZ_EXAMPLES=2000 .venv/bin/pytest tests/integration/test_input_fuzz.py`).
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SCALE = int(os.environ.get("FUZZ_EXAMPLES", "0"))

PAYLOAD = {
    "lead_id": 900_001,
    "created_at": "2026-05-20T09:30:00Z",
    "source": "web",
    "company_size": 10,
    "activities": [{"occurred_at": "2026-05-25T10:00:00Z", "activity_type": "email_open"}],
}
# The reproductions: each gave a 500 (or a retried task) before the shared rules.
REPRODUCTIONS = {
    "created_at-overflows-to-utc": (
        {"leads": [{**PAYLOAD, "created_at": "0001-01-01T00:00:00+01:00"}]},
        "leads[0].created_at",
    ),
    "occurred_at-overflows-to-utc": (
        {
            "leads": [
                {
                    **PAYLOAD,
                    "activities": [
                        {"occurred_at": "9999-12-31T23:59:59-01:00", "activity_type": "email_open"}
                    ],
                }
            ]
        },
        "leads[0].activities[0].occurred_at",
    ),
    "company_size-past-2^63": (
        {"leads": [{**PAYLOAD, "company_size": 99999999999999999999}]},
        "leads[0].company_size",
    ),
    "company_size-past-2^53": (
        {"leads": [{**PAYLOAD, "company_size": 9223372036854775807}]},
        "leads[0].company_size",
    ),
}


def fuzz_settings(examples: int) -> settings:
    """Bounded examples, no per-example deadline (a scorer call may take 50 ms under load),
    no database of past failures (each run starts from the seedless generators)."""
    return settings(
        max_examples=max(examples, SCALE),
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much,
        ],
    )


def score_operation(openapi: dict[str, Any]) -> Any:
    """`POST /score` of the schema, generated as tests/schemathesis.toml configures the live
    fuzz (no Authorization headers: the body is what is under test)."""
    import schemathesis

    from mlsys.settings import REPO_ROOT

    config = schemathesis.Config.from_path(REPO_ROOT / "tests" / "schemathesis.toml")
    return schemathesis.openapi.from_dict(openapi, config=config)["/score"]["POST"]


def score_bodies(openapi: dict[str, Any], mode: str) -> st.SearchStrategy[Any]:
    """Bodies of `POST /mlsys/score` cases, 'positive' or 'negative', as the live fuzzer makes them."""
    from schemathesis import GenerationMode

    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    return score_operation(openapi).as_strategy(generation_mode=generation).map(lambda case: case.body)


def as_bytes(body: Any) -> bytes:
    """A generated body as the bytes an HTTP client sends: raw bytes as they are, anything
    else as JSON (ASCII-escaped, so a lone surrogate travels as a \\udxxx escape)."""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


# -- values at the edges -------------------------------------------------------------------------

EDGE_INTEGERS = st.sampled_from(
    [
        0,
        1,
        -1,
        2**31,
        2**53,
        2**53 + 1,
        2**63 - 1,
        2**63,
        -(2**63),
        -(2**63) - 1,
        10**20,
        99999999999999999999,
    ]
)
OFFSETS = st.sampled_from(
    ["", "Z", "+00:00", "+01:00", "-01:00", "+14:00", "-12:00", "+23:59", "-23:59", "+24:00"]
)


@st.composite
def edge_timestamps(draw: st.DrawFn) -> str:
    year = draw(st.sampled_from([0, 1, 2, 1969, 1970, 2026, 9998, 9999]) | st.integers(0, 9999))
    month = draw(st.integers(0, 13))
    day = draw(st.integers(0, 32))
    clock = draw(st.sampled_from(["", "T00:00:00", "T23:59:59", "T23:59:59.999999", "T12:30", " 00:00:00.1"]))
    return f"{year:04d}-{month:02d}-{day:02d}{clock}{draw(OFFSETS) if clock else ''}"


TEXT = st.text(max_size=20) | st.sampled_from(["\ud800", "a\x00b", "DE", "x" * 201, "", " web"])
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | EDGE_INTEGERS
    | st.floats(allow_nan=False, allow_infinity=False)
) | TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


DEEP = st.integers(30, 300).map(nested)
EDGE_VALUES = JSON_VALUES | edge_timestamps() | EDGE_INTEGERS | DEEP


@st.composite
def lead_items(draw: st.DrawFn) -> dict[str, Any]:
    """A lead item close to valid: the contract's fields, each valid or at an edge."""
    from mlsys.validation import ACTIVITY_TYPES, SOURCES

    valid: dict[str, st.SearchStrategy[Any]] = {
        "lead_id": st.integers(1, 10**6) | EDGE_INTEGERS,
        "created_at": edge_timestamps(),
        "source": st.sampled_from(SOURCES),
        "industry": st.none() | TEXT,
        "country": st.none() | st.sampled_from(["DE", "US", "de", "D1", "\ud800\ud800"]),
        "company_size": st.none() | st.integers(1, 10**6) | EDGE_INTEGERS,
        "job_level": st.none() | st.sampled_from(["vp", "manager", "intern"]),
    }
    item = {
        name: draw(strategy if draw(st.integers(0, 9)) else EDGE_VALUES) for name, strategy in valid.items()
    }
    if draw(st.booleans()):
        del item[draw(st.sampled_from(sorted(item)))]
    activity = st.fixed_dictionaries(
        {"occurred_at": edge_timestamps(), "activity_type": st.sampled_from(ACTIVITY_TYPES) | TEXT}
    )
    item["activities"] = draw(st.lists(activity | EDGE_VALUES, max_size=4) | EDGE_VALUES)
    return item


REQUESTS = st.fixed_dictionaries(
    {
        "leads": st.lists(
            lead_items() | st.fixed_dictionaries({"lead_id": EDGE_VALUES}), min_size=1, max_size=4
        )
    },
    optional={
        "as_of": st.none() | edge_timestamps() | st.sampled_from(["2026-06-01", "0001-01-01", "9999-12-31"])
    },
)


@st.composite
def valid_timestamps(draw: st.DrawFn) -> str:
    """Timestamps the rules accept, spread over years 1-9999 and every offset."""
    moment = draw(
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
        | st.sampled_from(
            [datetime(1, 1, 2), datetime(9999, 12, 30, 23, 59, 59, 999999), datetime(1970, 1, 1)]
        )
    )
    return moment.isoformat() + draw(
        st.sampled_from(["", "Z", "+00:00", "+01:00", "-01:00", "+23:59", "-23:59"])
    )


@st.composite
def edge_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Requests the parser accepts (lead ids unique), with every value at an edge of its rule:
    what reaches the feature SQL and the model."""
    from mlsys.validation import ACTIVITY_TYPES, JOB_LEVELS, SOURCES

    ids = draw(
        st.lists(
            st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, 2**63 - 1, -(2**63)]),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    leads = []
    for lead_id in ids:
        activity = st.fixed_dictionaries(
            {"occurred_at": valid_timestamps(), "activity_type": st.sampled_from(ACTIVITY_TYPES)}
        )
        leads.append(
            {
                "lead_id": lead_id,
                "created_at": draw(valid_timestamps()),
                "source": draw(st.sampled_from(SOURCES)),
                "industry": draw(st.none() | st.text(max_size=200).filter(lambda t: "\x00" not in t)),
                "country": draw(st.none() | st.from_regex(r"\A[A-Z]{2}\Z")),
                "company_size": draw(st.none() | st.integers(1, 2**53) | st.sampled_from([1, 2**53])),
                "job_level": draw(st.none() | st.sampled_from(JOB_LEVELS)),
                "activities": draw(st.lists(activity, max_size=5)),
            }
        )
    request: dict[str, Any] = {"leads": leads}
    as_of = draw(
        st.none()
        | st.dates(min_value=date(1, 1, 2))
        | st.sampled_from([date(2026, 6, 1), date(9999, 12, 31)])
    )
    if as_of is not None:
        request["as_of"] = as_of.isoformat()
    return request
