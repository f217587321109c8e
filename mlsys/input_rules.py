"""The value rules of every door: what a value from outside may be before any code uses it.

On-demand requests (`POST /mlsys/score`, the `score_on_demand` DAG's conf, `mlsys score
--payload`), the `score_leads`/`retrain` conf and the CLI's files all go through these
functions, so a timestamp, an integer or a piece of text means the same at each door and is
refused the same way: a :class:`ValueError` whose message says what is wrong with the value
(the caller adds where it is, e.g. ``leads[3].created_at``).

The limits follow what the values must survive downstream:

* Timestamps: ISO 8601 as :data:`TIMESTAMP_PATTERN` spells it (the OpenAPI schema publishes
  the same pattern), any UTC offset, converted to naive UTC (the contract's TIMESTAMP). The
  UTC instant must lie in years 1-9999: what Python's datetime holds (DuckDB and Arrow's
  microsecond timestamps hold more), so ``0001-01-01T00:00:00+01:00`` is refused rather
  than overflowing in the conversion.
* Integers: ints (not booleans; 42.0 counts as 42 up to 2^53, where floats stop being exact),
  within the contract type's range. An
  integer that becomes a model input is a float64, exact only up to 2^53: such fields are
  bounded by :data:`FLOAT64_EXACT_MAX` (Arrow refuses the cast beyond it).
* Floats: finite. JSON has no NaN or Infinity; Python's parser accepts both, and ``1e400``
  as infinity, so :func:`decode_json` refuses them.
* Text: valid UTF-8. A JSON ``\\ud800`` escape decodes to a lone surrogate that no UTF-8
  writer (Arrow, DuckDB, a JSON response) can encode.
* JSON documents: at most :data:`MAX_JSON_DEPTH` levels of nesting, checked before parsing
  (Python's parser recurses and fails with RecursionError on ``[[[[...``), and a byte limit
  the caller chooses, checked before decoding.

Nothing here imports more than the standard library at module level: plugins, DAG files and
the CLI import it.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Integers a float64 holds exactly: what a numeric model input may be.
FLOAT64_EXACT_MAX = 2**53
# A scoring request nests 4 levels ({leads: [{activities: [{...}]}]}): 32 is generous and
# far below what makes Python's recursive JSON parser (or repr) fail.
MAX_JSON_DEPTH = 32
# ASCII digits on purpose: Python's \d also matches other scripts' digits, JSON Schema's does not.
DATE_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
TIMESTAMP_PATTERN = (
    DATE_PATTERN + r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?)?(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)
_DATE = re.compile(DATE_PATTERN)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
SHOWN_LENGTH = 60


class InvalidJSON(ValueError):
    """A document that is not acceptable JSON: `reason` is a short code (`too_large`,
    `too_deep`, `not_utf8`, `not_json`, `not_finite`), the message says what to fix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- showing a value in an error -------------------------------------------------------------


def type_name(value: Any) -> str:
    """The JSON name of a value's type, for messages ("got list")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return {dict: "object", list: "list", str: "str", int: "int", float: "float"}.get(
        type(value), type(value).__name__
    )


def shown(value: Any, limit: int = SHOWN_LENGTH) -> str:
    """A value as an error may echo it: short, encodable, never recursing into containers
    (a 100,000-deep list would make repr() fail), never huge (a 1 MB string stays 60 chars)."""
    if isinstance(value, str):
        # repr() escapes lone surrogates and control characters: the message stays encodable.
        head = repr(value[:limit])
        return head if len(value) <= limit else f"{head}... ({len(value):,} characters)"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        digits = str(value) if value.bit_length() < 200 else f"an integer of {value.bit_length()} bits"
        return digits if len(digits) <= limit else f"{digits[:limit]}..."
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | dict):
        return f"a {type_name(value)} of {len(value):,} item(s)"
    return f"a {type_name(value)}"


# -- scalar values ---------------------------------------------------------------------------


def utc_timestamp(value: Any) -> datetime:
    """ISO 8601 text -> naive UTC datetime; naive text is taken as UTC."""
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO 8601 timestamp string, got {type_name(value)}")
    if not _TIMESTAMP.fullmatch(value):
        raise ValueError(f"is not an ISO 8601 timestamp like 2026-05-20T09:30:00Z: {shown(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"is not a valid date and time: {shown(value)}") from None
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise ValueError(f"falls outside years 0001-9999 once converted to UTC: {shown(value)}") from None
    return parsed


def iso_date(value: Any) -> date:
    """A calendar date written YYYY-MM-DD (years 0001-9999)."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError(f"must be a date YYYY-MM-DD, got {shown(value)}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"is not a valid date: {shown(value)}") from None


def integer(value: Any, low: int = INT64_MIN, high: int = INT64_MAX, *, what: str = "an integer") -> int:
    """An int in [low, high]. Not a bool; a float only when it is a whole number a float64
    holds exactly (42.0 is 42, as JSON and JSON Schema see it; 1e18 may not be the id sent)."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= FLOAT64_EXACT_MAX:
        value = int(value)
    elif isinstance(value, float) and value.is_integer():
        raise ValueError(f"must be {what}; {shown(value)} written as a float is not exact beyond 2^53")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be {what}, got {type_name(value)}")
    if not low <= value <= high:
        if (low, high) == (INT64_MIN, INT64_MAX):
            raise ValueError(f"is out of the BIGINT range (64-bit signed): {shown(value)}")
        raise ValueError(f"must be between {low:,} and {high:,}, got {shown(value)}")
    return value


def finite(value: Any) -> float:
    """A JSON number that is a real float64 value (no NaN, no infinity, no bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, got {type_name(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"is too large for a float64: {shown(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number, got {shown(value)}")
    return number


def text(value: Any, max_length: int) -> str:
    """A string of at most `max_length` characters that UTF-8 can encode."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type_name(value)}")
    if len(value) > max_length:
        raise ValueError(f"at most {max_length} characters, got {len(value):,}")
    if not is_utf8(value):
        raise ValueError(f"is not valid UTF-8 text (a lone surrogate escape?): {shown(value)}")
    return value


# A text lead id (UUID, 18-character Salesforce id, any CRM key): 1-128 characters, none of
# them an ASCII control character, no ASCII space at either end (a padded id never joins back
# to the CRM).
MAX_TEXT_ID_LENGTH = 128
# Explicit ranges, no \s: Python's and JSON Schema's (ECMA) \s disagree (NEL, BOM), and the
# OpenAPI schema publishes this same pattern.
TEXT_ID_PATTERN = r"[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]{0,126}[^\x00-\x20\x7f])?"
_TEXT_ID = re.compile(TEXT_ID_PATTERN)


def lead_id(value: Any) -> int | str:
    """A lead id as the CRM has it: a BIGINT (as :func:`integer`) or a text id (as
    :data:`TEXT_ID_PATTERN`). Which of the two a source uses is its features' business."""
    if isinstance(value, str):
        text(value, MAX_TEXT_ID_LENGTH)
        if not _TEXT_ID.fullmatch(value):
            raise ValueError(
                f"must be 1-{MAX_TEXT_ID_LENGTH} characters without control characters or spaces "
                f"at either end, got {shown(value)}"
            )
        return value
    return integer(value, what="an integer or a string")


def is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- documents -------------------------------------------------------------------------------


def too_deep(value: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """The path of the first container nested deeper than `max_depth` in a decoded document
    (a DAG conf, which Airflow already parsed), or None. Iterative: no recursion to exhaust."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        if not isinstance(node, dict | list):
            continue
        if depth > max_depth:
            return path or "(the document)"
        if isinstance(node, dict):
            stack.extend((v, f"{path}.{str(k)[:60]}".lstrip("."), depth + 1) for k, v in node.items())
        else:
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node))
    return None


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """The nesting depth of a JSON text without parsing it: brackets outside strings."""
    import numpy as np

    brackets = np.frombuffer(_JSON_STRING.sub(b'""', data), dtype=np.uint8)
    steps = np.zeros(len(brackets), dtype=np.int32)
    steps[(brackets == ord("[")) | (brackets == ord("{"))] = 1
    steps[(brackets == ord("]")) | (brackets == ord("}"))] = -1
    return int(np.cumsum(steps).max(initial=0))


def _refuse_constant(name: str) -> Any:
    raise InvalidJSON("not_finite", f"{name} is not a JSON number: send finite numbers only")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise InvalidJSON("not_finite", f"the number {shown(literal)} is too large for a float64")
    return number


def decode_json(
    data: bytes | str,
    *,
    max_bytes: int,
    max_depth: int = MAX_JSON_DEPTH,
    what: str = "the body",
) -> Any:
    """Parse a JSON document from outside, refusing before any work what would fail later:
    more than `max_bytes`, nesting deeper than `max_depth`, bytes that are not UTF-8,
    NaN/Infinity, numbers beyond float64. Raises InvalidJSON."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise InvalidJSON("too_large", f"{what} is larger than {max_bytes:,} bytes ({len(raw):,})")
    depth = json_depth(raw)
    if depth > max_depth:
        raise InvalidJSON("too_deep", f"{what} nests deeper than {max_depth} levels ({depth:,})")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJSON("not_utf8", f"{what} is not UTF-8 at byte {exc.start:,}") from None
    try:
        return json.loads(decoded, parse_constant=_refuse_constant, parse_float=_finite_float)
    except InvalidJSON:
        raise
    except (ValueError, RecursionError) as exc:
        # RecursionError cannot happen below max_depth; kept so no input ever escapes as one.
        raise InvalidJSON("not_json", f"{what} is not JSON: {str(exc)[:200]}") from None
