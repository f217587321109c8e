"""Generators the fuzz and property tests share: schemathesis's cases from the plugin's own
OpenAPI schema (positive: what the schema allows; negative: what it refuses), arbitrary JSON,
and the values at the edges of every rule (timestamps near years 1 and 9999 with any offset,
integers around 2^53 and 2^63, lone surrogates, deep nesting).

Example counts are bounded so `make test` stays fast; `FUZZ_EXAMPLES=<n>` scales every test
here up for a longer hunt (e.g. `FUZZ_EXAMPLES=2000 .venv/bin/pytest tests/test_input_fuzz.py`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SCALE = int(os.environ.get("FUZZ_EXAMPLES", "0"))


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
    import schemathesis

    return schemathesis.openapi.from_dict(openapi)["/score"]["POST"]


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
