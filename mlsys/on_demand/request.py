"""On-demand scoring requests: what a request may hold, checked completely before any work.

One parser for every door: the plugin's `POST /mlsys/score` body (:func:`decode_body`, then
:func:`parse_request`), the `score_on_demand` DAG's conf and `mlsys score --lead-id/--payload`
(:func:`parse_request` on what Airflow or the file gave). The values follow the shared rules
of :mod:`mlsys.input_rules`; the published OpenAPI schema (:mod:`mlsys.on_demand.schema`) is
built from the same constants and patterns, and a property test holds the two together.

A request::

    {"leads": [{"lead_id": 42}, {<lead payload>}, ...], "as_of": "2026-06-01"}

An item with only ``lead_id`` is looked up in published features; any other item is a lead
payload in the raw landing contract's fields (:data:`LEAD_FIELDS`, and ``activities`` of
:data:`ACTIVITY_FIELDS`). A bad request raises :class:`RequestError` naming every problem with
its path (``leads[3].activities[0].occurred_at``), so a client fixes them in one round trip.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from mlsys import contract, input_rules
from mlsys.contract import raw_contract
from mlsys.input_rules import FLOAT64_EXACT_MAX, InvalidJSON, shown, type_name
from mlsys.settings import DEFAULT_MAX_BODY_BYTES

MAX_LEADS_PER_REQUEST = 100  # default of Settings.on_demand_max_leads
MAX_ACTIVITIES_PER_LEAD = 10_000
# Free-text attributes (industry) are categories: a longer value is a mistake or an attack.
MAX_TEXT_LENGTH = 200
# company_size is a model input (float64): beyond 2^53 it is no longer the number sent.
MAX_COMPANY_SIZE = FLOAT64_EXACT_MAX
# The default body limit (a server's is Settings.on_demand_max_body_bytes).
MAX_BODY_BYTES = DEFAULT_MAX_BODY_BYTES
COUNTRY_PATTERN = r"[A-Z]{2}"
_COUNTRY = re.compile(COUNTRY_PATTERN)

# The raw landing contract (declared in the dbt project, read by mlsys.contract): the fields a
# payload may carry, and those it must.
_LEADS = raw_contract().table(contract.LEADS)
LEAD_FIELDS = _LEADS.names
REQUIRED_LEAD_FIELDS = _LEADS.required
# An activity's lead_id is its lead's: optional in a payload, equal when given.
ACTIVITY_FIELDS = tuple(n for n in raw_contract().table(contract.ACTIVITIES).names if n != "lead_id")
REQUEST_KEYS = ("leads", "as_of")


class ScoringError(Exception):
    """A failure a client can read: `code` for programs, `message` for people, `details`."""

    status = 400

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "details": self.details}

    def __str__(self) -> str:
        return json.dumps(self.to_dict(), default=str)


class RequestError(ScoringError):
    """The request is wrong; the client must change it (HTTP 4xx)."""

    def __init__(
        self, code: str, message: str, details: dict[str, Any] | None = None, *, status: int = 400
    ) -> None:
        super().__init__(code, message, details)
        self.status = status


class UnavailableError(ScoringError):
    """The request is fine but the scorer cannot serve it yet (no champion, no features)."""

    status = 503


@dataclass(frozen=True)
class LeadRef:
    index: int
    lead_id: int | str  # the source's id type: BIGINT or VARCHAR


@dataclass(frozen=True)
class LeadPayload:
    index: int
    lead_id: int
    attributes: dict[str, Any]  # LEAD_FIELDS, typed (timestamps as naive UTC datetimes)
    activities: list[tuple[datetime, str]]


@dataclass(frozen=True)
class ScoreRequest:
    items: list[LeadRef | LeadPayload]
    as_of: date | None = None

    @property
    def refs(self) -> list[LeadRef]:
        return [i for i in self.items if isinstance(i, LeadRef)]

    @property
    def payloads(self) -> list[LeadPayload]:
        return [i for i in self.items if isinstance(i, LeadPayload)]


def vocabularies() -> dict[str, tuple[str, ...]]:
    """The contract's value sets (what the gate holds a nightly CRM export to), by field."""
    found = {
        column: raw_contract().values_of(table, column)
        for table, column in (
            (contract.LEADS, "source"),
            (contract.LEADS, "job_level"),
            (contract.ACTIVITIES, "activity_type"),
        )
    }
    return {column: values for column, values in found.items() if values is not None}


class Problems:
    """Collects every problem of a request so a client fixes them in one round trip."""

    LIMIT = 20

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.total = 0

    def add(self, path: str, message: str) -> None:
        self.total += 1
        if len(self.items) < self.LIMIT:
            self.items.append({"path": path, "message": message})

    def check(self, path: str, rule: Any, value: Any) -> Any:
        """rule(value), or None after recording the rule's refusal at `path`."""
        try:
            return rule(value)
        except ValueError as exc:
            self.add(path, str(exc))
            return None

    def raise_if_any(self) -> None:
        if not self.total:
            return
        first = self.items[0]
        more = f" (and {self.total - 1} more)" if self.total > 1 else ""
        raise RequestError(
            "invalid_lead",
            f"{first['path']}: {first['message']}{more}",
            {"problems": self.items, "count": self.total},
        )


def _names(keys: list[Any]) -> str:
    """Unknown keys as a message lists them: the first five, each cut short and encodable."""
    plain = (isinstance(k, str) and len(k) <= 40 and k.isprintable() and input_rules.is_utf8(k) for k in keys)
    shown_keys = [k if ok else shown(k, 40) for k, ok in zip(keys, plain, strict=True)]
    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
    return ", ".join(shown_keys[:5]) + more


def _company_size(value: Any) -> int:
    try:
        return input_rules.integer(value, 1, MAX_COMPANY_SIZE)
    except ValueError:
        raise ValueError(
            f"must be a positive integer at most 2^53 ({MAX_COMPANY_SIZE:,}) or null, got {shown(value)}"
        ) from None


def _country(value: Any) -> str:
    checked = input_rules.text(value, MAX_TEXT_LENGTH)
    if not _COUNTRY.fullmatch(checked):
        raise ValueError(f"must be an ISO-3166 alpha-2 code like 'DE', got {shown(value)}")
    return checked


def _one_of(vocabulary: tuple[str, ...]) -> Any:
    def rule(value: Any) -> str:
        if isinstance(value, str):
            input_rules.text(value, MAX_TEXT_LENGTH)  # a huge value is refused by its size
        if not isinstance(value, str) or value not in vocabulary:
            raise ValueError(f"must be one of {', '.join(vocabulary)}; got {shown(value)}")
        return value

    return rule


def _parse_payload(i: int, item: dict[str, Any], problems: Problems) -> LeadPayload | None:
    where = f"leads[{i}]"
    vocab = vocabularies()
    before = problems.total
    unknown = [k for k in item if k not in (*LEAD_FIELDS, "activities")]
    if unknown:
        problems.add(
            where,
            f"unknown field(s) {_names(unknown)}; a payload has {', '.join(LEAD_FIELDS)} and activities",
        )
    for name in REQUIRED_LEAD_FIELDS:
        if item.get(name) is None:
            problems.add(f"{where}.{name}", "is required")
    lead_id = 0
    if item.get("lead_id") is not None:
        lead_id = problems.check(f"{where}.lead_id", input_rules.integer, item["lead_id"]) or 0
    attrs: dict[str, Any] = {"lead_id": lead_id}
    rules = {
        "created_at": input_rules.utc_timestamp,
        "source": _one_of(vocab["source"]),
        "industry": lambda v: input_rules.text(v, MAX_TEXT_LENGTH),
        "country": _country,
        "company_size": _company_size,
        "job_level": _one_of(vocab["job_level"]),
    }
    for name, rule in rules.items():
        value = item.get(name)
        attrs[name] = None if value is None else problems.check(f"{where}.{name}", rule, value)
    activities: list[tuple[datetime, str]] = []
    raw = item.get("activities", [])
    if not isinstance(raw, list):
        problems.add(f"{where}.activities", f"must be a list, got {type_name(raw)}")
        raw = []
    if len(raw) > MAX_ACTIVITIES_PER_LEAD:
        problems.add(
            f"{where}.activities", f"at most {MAX_ACTIVITIES_PER_LEAD} activities per lead, got {len(raw)}"
        )
        raw = []
    activity_type = _one_of(vocab["activity_type"])
    for j, activity in enumerate(raw):
        at = f"{where}.activities[{j}]"
        if not isinstance(activity, dict):
            problems.add(at, f"must be an object, got {type_name(activity)}")
            continue
        extra = [k for k in activity if k not in (*ACTIVITY_FIELDS, "lead_id")]
        if extra:
            allowed = ", ".join(ACTIVITY_FIELDS)
            problems.add(at, f"unknown field(s) {_names(extra)}; an activity has {allowed}")
        if "lead_id" in activity:
            own = problems.check(f"{at}.lead_id", input_rules.integer, activity["lead_id"])
            if own is not None and own != lead_id:
                problems.add(f"{at}.lead_id", "differs from the lead's lead_id")
        kind = problems.check(f"{at}.activity_type", activity_type, activity.get("activity_type"))
        if kind is None:
            continue
        occurred_at = problems.check(
            f"{at}.occurred_at", input_rules.utc_timestamp, activity.get("occurred_at")
        )
        if occurred_at is not None:
            activities.append((occurred_at, kind))
    if problems.total > before:
        return None
    return LeadPayload(i, lead_id, attrs, activities)


def parse_request(conf: Any, max_leads: int = MAX_LEADS_PER_REQUEST) -> ScoreRequest:
    """Check a request completely before any work; raises RequestError naming every problem."""
    if not isinstance(conf, dict):
        raise RequestError(
            "invalid_request",
            f'the request must be a JSON object like {{"leads": [...]}}, got {type_name(conf)}',
        )
    deep = input_rules.too_deep(conf)
    if deep is not None:
        raise RequestError(
            "invalid_request",
            f"{deep}: nested deeper than {input_rules.MAX_JSON_DEPTH} levels",
            {"path": deep, "max_depth": input_rules.MAX_JSON_DEPTH},
        )
    unknown = [k for k in conf if k not in REQUEST_KEYS]
    if unknown:
        raise RequestError(
            "invalid_request",
            f"unknown key(s) {_names(unknown)}; a request has leads and optionally as_of",
            {"unknown": [shown(k, 40) if not isinstance(k, str) else k[:40] for k in unknown[:5]]},
        )
    as_of = None
    if conf.get("as_of") is not None:
        try:
            as_of = input_rules.iso_date(conf["as_of"])
        except ValueError as exc:
            raise RequestError("invalid_request", f"as_of {exc}") from None
    leads = conf.get("leads")
    if not isinstance(leads, list) or not leads:
        raise RequestError("invalid_request", "leads must be a non-empty list of lead objects")
    if len(leads) > max_leads:
        raise RequestError(
            "too_many_leads",
            f"at most {max_leads} leads per request, got {len(leads)}",
            {"max": max_leads, "got": len(leads)},
            status=413,
        )
    problems = Problems()
    items: list[LeadRef | LeadPayload] = []
    for i, item in enumerate(leads):
        if not isinstance(item, dict):
            problems.add(f"leads[{i}]", f"must be an object, got {type_name(item)}")
            continue
        if "lead_id" not in item:
            problems.add(f"leads[{i}].lead_id", "is required")
            continue
        if set(item) == {"lead_id"}:
            lead_id = problems.check(f"leads[{i}].lead_id", input_rules.lead_id, item["lead_id"])
            if lead_id is not None:
                items.append(LeadRef(i, lead_id))
            continue
        payload = _parse_payload(i, item, problems)
        if payload is not None:
            items.append(payload)
    problems.raise_if_any()
    seen: dict[int | str, int] = {}
    for item in items:
        if item.lead_id in seen:
            raise RequestError(
                "duplicate_lead",
                f"lead_id {item.lead_id} appears twice (leads[{seen[item.lead_id]}] and leads[{item.index}])",
                {"lead_id": item.lead_id},
            )
        seen[item.lead_id] = item.index
    return ScoreRequest(items, as_of)


def decode_body(body: bytes, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """A request body as JSON under the shared document rules; RequestError otherwise."""
    try:
        return input_rules.decode_json(body, max_bytes=max_bytes)
    except InvalidJSON as exc:
        if exc.reason == "too_large":
            raise RequestError("request_too_large", str(exc), {"max_bytes": max_bytes}, status=413) from None
        raise RequestError("invalid_json", str(exc), {"reason": exc.reason}) from None
