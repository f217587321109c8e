"""The on-demand request and answers as pydantic models: the OpenAPI schema `POST /mlsys/score`
publishes (`GET /mlsys/openapi.json`), so a client, a generator or a fuzzer knows every
constraint without reading Python.

The models are built from the constants and patterns :mod:`mlsys.on_demand.request` and
:mod:`mlsys.input_rules` check with, and they validate nothing at the door: the hand-written
parser does, because its errors name every problem with its path in the
``{"error", "message", "details"}`` shape clients already read. What a JSON Schema cannot say
is only in the parser: lead ids unique in a request, a timestamp's UTC instant within years
1-9999, a real calendar date, an activity's lead_id equal to its lead's.
``tests/integration/test_input_fuzz.py`` checks that the two agree on generated documents (every document
the models refuse, the parser refuses) and ``tests/stack/test_live_api.py`` fuzzes the live plugin
from this schema.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlsys.input_rules import (
    DATE_PATTERN,
    INT64_MAX,
    INT64_MIN,
    MAX_TEXT_ID_LENGTH,
    TEXT_ID_PATTERN,
    TIMESTAMP_PATTERN,
)
from mlsys.on_demand.request import (
    COUNTRY_PATTERN,
    MAX_ACTIVITIES_PER_LEAD,
    MAX_COMPANY_SIZE,
    MAX_LEADS_PER_REQUEST,
    MAX_TEXT_LENGTH,
    vocabularies,
)

# Strict: a JSON string is not a number, 1.0 is not an integer, true is not 1 (as in the parser).
_REQUEST = ConfigDict(extra="forbid", strict=True)
# Answers may gain fields without breaking clients.
_ANSWER = ConfigDict(extra="allow")

_VALUES = vocabularies()
Source = StrEnum("Source", {name: name for name in _VALUES["source"]})  # type: ignore[misc]
JobLevel = StrEnum("JobLevel", {name: name for name in _VALUES["job_level"]})  # type: ignore[misc]
ActivityType = StrEnum("ActivityType", {name: name for name in _VALUES["activity_type"]})  # type: ignore[misc]

LeadId = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX, description="The lead's id (BIGINT).")]
TextLeadId = Annotated[
    str,
    Field(
        pattern=f"^{TEXT_ID_PATTERN}$",
        max_length=MAX_TEXT_ID_LENGTH,
        description="The lead's id, for a source keyed by text (VARCHAR: UUIDs, Salesforce ids).",
        examples=["00Q5e00000AbCdEfGH"],
    ),
]
Timestamp = Annotated[
    str,
    Field(
        pattern=f"^{TIMESTAMP_PATTERN}$",
        description="ISO 8601, e.g. 2026-05-20T09:30:00Z; any UTC offset, none means UTC. The UTC "
        "instant must fall within years 0001-9999.",
        examples=["2026-05-20T09:30:00Z"],
    ),
]
IsoDate = Annotated[str, Field(pattern=f"^{DATE_PATTERN}$", examples=["2026-06-01"])]


def _without_default(schema: dict[str, Any]) -> None:
    # An optional key that may not be null: absent is fine, `null` is refused.
    schema.pop("default", None)


class Activity(BaseModel):
    """One activity of a lead (raw landing contract)."""

    model_config = _REQUEST
    occurred_at: Timestamp
    activity_type: ActivityType
    # Absent is fine, null is not: the default never reaches validation or the schema.
    lead_id: LeadId = Field(  # type: ignore[assignment]
        default=None,
        description="Optional; when given, equal to the lead's lead_id.",
        json_schema_extra=_without_default,
    )


class LeadRef(BaseModel):
    """A lead the nightly run knows: its features are looked up in the published ones. Its id
    has the source's type: an integer, or a string for a source keyed by text."""

    model_config = _REQUEST
    lead_id: LeadId | TextLeadId


class LeadPayload(BaseModel):
    """A lead's attributes and activities (raw landing contract); features from the nightly SQL."""

    model_config = _REQUEST
    lead_id: LeadId
    created_at: Timestamp
    source: Source
    industry: Annotated[str, Field(max_length=MAX_TEXT_LENGTH)] | None = None
    country: Annotated[str, Field(pattern=f"^{COUNTRY_PATTERN}$", description="ISO-3166 alpha-2")] | None = (
        None
    )
    company_size: Annotated[int, Field(ge=1, le=MAX_COMPANY_SIZE, description="Employees")] | None = None
    job_level: JobLevel | None = None
    activities: list[Activity] = Field(default_factory=list, max_length=MAX_ACTIVITIES_PER_LEAD)


class ScoreRequest(BaseModel):
    """`POST /mlsys/score` body, and the `score_on_demand` DAG's conf. Lead ids unique."""

    model_config = _REQUEST
    leads: list[LeadRef | LeadPayload] = Field(min_length=1, max_length=MAX_LEADS_PER_REQUEST)
    as_of: IsoDate | None = Field(
        default=None,
        description="Feature cut-off. Lead ids: the newest published partition when omitted; "
        "payloads: tomorrow (UTC), the next nightly run's cut-off.",
    )


class Reason(BaseModel):
    model_config = _ANSWER
    feature: str
    contribution: float


class ScoreResult(BaseModel):
    model_config = _ANSWER
    lead_id: int | str
    score: Annotated[float, Field(ge=0.0, le=1.0)]
    score_band: str
    top_reasons: list[Reason]
    model_name: str
    model_version: str
    as_of: IsoDate


class ScoreResponse(BaseModel):
    model_config = _ANSWER
    results: list[ScoreResult]


class ErrorBody(BaseModel):
    """Every refusal and failure: `error` for programs, `message` for people."""

    model_config = _ANSWER
    error: str
    message: str
    details: dict[str, Any]


class ModelInfo(BaseModel):
    """`GET /mlsys/model`: the champion this api-server scores with."""

    model_config = _ANSWER
    model_name: str
    model_version: str
    max_leads_per_request: int
    lead_id_features_as_of: IsoDate | None
    readiness: dict[str, Any]


class Readiness(BaseModel):
    """`GET /mlsys-health/ready`: 200 once the warm-up has finished, 503 while it runs."""

    model_config = _ANSWER
    status: Literal["loading", "ready"]
    champion_loaded: bool


# Statuses `POST /mlsys/score` answers with an ErrorBody, and when.
ERROR_STATUSES: dict[int, str] = {
    400: "A bad request: invalid_json, invalid_request, invalid_lead (every problem with its path), "
    "duplicate_lead, lead_not_known_at_as_of.",
    404: "unknown_leads (not in the features as of that date), no_features (no file for as_of).",
    413: "too_many_leads, request_too_large (the body).",
    500: "internal: an unexpected failure; details.request_id is in the api-server log.",
    503: "no_champion, feature_sql, feature_mismatch, no_features: the scorer cannot serve yet.",
}


def request_schema(max_leads: int = MAX_LEADS_PER_REQUEST) -> dict[str, Any]:
    """ScoreRequest as a JSON Schema whose `$ref`s point at OpenAPI components, with this
    deployment's lead limit (MLSYS_ON_DEMAND_MAX_LEADS)."""
    schema = ScoreRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schema["properties"]["leads"]["maxItems"] = max_leads
    return schema


def openapi_components(max_leads: int = MAX_LEADS_PER_REQUEST) -> dict[str, Any]:
    """The request's models (ScoreRequest and what it refers to) as OpenAPI components."""
    schema = request_schema(max_leads)
    components = dict(schema.pop("$defs", {}))
    components["ScoreRequest"] = schema
    return components
