"""What a validation found: the report, the gate's exception, and the translation of GX's
results into both (with the guard against checks that passed without looking at data)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from mlsys.validation.suites import ERROR, WARNING

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpectationFailure:
    expectation: str
    column: str | None
    observed: object
    unexpected_sample: list[Any]
    severity: str  # "error" | "warning"
    detail: str = ""  # expected range / set / reason, for the summary line


@dataclass
class ValidationReport:
    suite: str
    success: bool
    evaluated: int
    failures: list[ExpectationFailure]
    warnings: list[ExpectationFailure]
    data_docs: str | None
    row_count: int | None
    source: str = ""  # the Parquet file(s) validated
    # One entry per evaluated expectation: expectation, column, severity, success, observed.
    checks: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        status = "PASSED" if self.success else "FAILED"
        rows = "?" if self.row_count is None else f"{self.row_count:,}"
        lines = [
            f"GX suite {self.suite!r}: {status} - {len(self.failures)} blocking failure(s), "
            f"{len(self.warnings)} warning(s), {self.evaluated} expectation(s) evaluated on "
            f"{rows} row(s) of {self.source or '?'}"
        ]
        for failure in self.failures:
            lines.append("  ERROR   " + failure_line(failure))
        for warning in self.warnings:
            lines.append("  WARNING " + failure_line(warning))
        if self.data_docs:
            docs = self.data_docs
        elif self.success and self.evaluated == 0:
            docs = "not built (GX did not run: no file landed since the last pass)"
        else:
            docs = "not built (GX did not run: the input failed the checks above)"
        lines.append(f"  Data Docs: {docs}")
        return "\n".join(lines)


def with_failure_first(report: ValidationReport, failure: ExpectationFailure) -> ValidationReport:
    """The report of a suite that GX ran, failed by a check made before it (a column of the
    wrong type, read by GX with TRY_CAST): that failure first, then GX's own."""
    mistyped = set((failure.column or "").split(", "))
    # A check of a mistyped column that observed nothing (every value unreadable, so null) is
    # the same problem as the type failure, not a vacuous pass of GX's.
    others = [f for f in report.failures if not (f.column in mistyped and f.detail == VACUOUS)]
    return replace(
        report,
        success=False,
        failures=[failure, *others],
        checks=[
            _check(failure.expectation, failure.column, failure.severity, False, failure.observed),
            *report.checks,
        ],
    )


class DataValidationError(RuntimeError):
    """The gate failed: ``str(err)`` is the summary of every failed report.

    ``report`` is the first failed report, ``reports`` all of them (a gate over several
    suites reports every failing suite at once, so one run tells the whole story).
    """

    def __init__(self, report: ValidationReport, *more: ValidationReport) -> None:
        self.report = report
        self.reports = [report, *more]
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.reports) == 1:
            return self.report.summary()
        suites = ", ".join(r.suite for r in self.reports)
        head = f"data quality gate FAILED in {len(self.reports)} suites ({suites})"
        return "\n".join([head, *(r.summary() for r in self.reports)])

    def __reduce__(self) -> tuple[Any, ...]:
        # The default pickling would call __init__ with the message string, not the reports.
        return (type(self), tuple(self.reports))


VACUOUS = "treated as failed"  # the detail of a check that observed nothing
_OBSERVATION_KEYS = ("observed_value", "unexpected_count", "element_count")


def _has_observation(result: Mapping[str, Any] | None, success: bool = False) -> bool:
    if not result:
        return False
    if (
        success
        and result.get("observed_value", 0) is None
        and not any(k in result for k in _OBSERVATION_KEYS[1:])
    ):
        # A success "observing" nothing (observed_value None, no counts) looked at no data.
        return False
    return any(k in result for k in _OBSERVATION_KEYS)


def _exception_message(exception_info: Any) -> str | None:
    if not exception_info:
        return None
    infos: list[Any] = [exception_info]
    if isinstance(exception_info, Mapping) and "raised_exception" not in exception_info:
        infos = list(exception_info.values())
    for info in infos:
        if isinstance(info, Mapping) and info.get("raised_exception"):
            message = str(info.get("exception_message") or "exception").strip()
            return message.splitlines()[0] if message else "exception"
    return None


def _column_of(config: Any) -> str | None:
    kwargs = config.kwargs or {}
    if kwargs.get("column"):
        return str(kwargs["column"])
    if kwargs.get("column_A"):
        return f"{kwargs['column_A']}, {kwargs.get('column_B')}"
    if kwargs.get("column_list"):
        return ", ".join(str(c) for c in kwargs["column_list"])
    meta = config.meta or {}
    return str(meta["column"]) if meta.get("column") else None


def _expectation_name(config: Any) -> str:
    check = (config.meta or {}).get("check")
    return f"{config.type}:{check}" if check else str(config.type)


def _severity_of(config: Any) -> str:
    meta = config.meta or {}
    declared = str(meta.get("severity") or getattr(config, "severity", "") or ERROR).lower()
    return WARNING if declared == WARNING else ERROR


def _expected_text(config: Any) -> str:
    kwargs = config.kwargs or {}
    parts = []
    if "value_set" in kwargs:
        parts.append(f"in {list(kwargs['value_set'])}")
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None or high is not None:
        parts.append(f"between {'-inf' if low is None else low} and {'+inf' if high is None else high}")
    if kwargs.get("column_set"):
        parts.append("required columns present")
    if kwargs.get("mostly") is not None:
        parts.append(f"mostly={kwargs['mostly']}")
    return "expected " + ", ".join(parts) if parts else ""


def _observed(result: Mapping[str, Any]) -> object:
    if "observed_value" in result:
        return result["observed_value"]
    return {
        "unexpected_count": result.get("unexpected_count"),
        "element_count": result.get("element_count"),
        "unexpected_percent": result.get("unexpected_percent"),
    }


def _unexpected_sample(result: Mapping[str, Any], limit: int = 5) -> list[Any]:
    """Distinct unexpected values, most frequent first (nulls are not worth showing)."""
    values: list[Any] = []
    counts = result.get("partial_unexpected_counts") or []
    candidates = [c.get("value") for c in counts if isinstance(c, Mapping)] or list(
        result.get("partial_unexpected_list") or []
    )
    for value in candidates:
        if value is not None and value not in values:
            values.append(value)
        if len(values) == limit:
            break
    return values


def build_report(
    suite: str,
    suite_result: Any,
    *,
    source: str = "",
    data_docs: str | None = None,
    previous_row_count: int | None = None,
    sample_rows: Any = None,
) -> ValidationReport:
    failures: list[ExpectationFailure] = []
    warnings: list[ExpectationFailure] = []
    checks: list[dict[str, Any]] = []
    row_count: int | None = None
    vacuous: list[str] = []
    for r in suite_result.results:
        config = r.expectation_config
        result: Mapping[str, Any] = r.result or {}
        name = _expectation_name(config)
        column = _column_of(config)
        severity = _severity_of(config)
        if config.type == "expect_table_row_count_to_be_between" and "observed_value" in result:
            row_count = int(result["observed_value"])
        if not _has_observation(result, bool(r.success)):
            # The guard: no observed value means GX did not really look at the data.
            vacuous.append(name)
            error = _exception_message(r.exception_info)
            observed: object = (
                "no observed value: the check passed vacuously (GX+DuckDB returned no metric)"
                + (f"; GX raised: {error}" if error else "")
            )
            failure = ExpectationFailure(name, column, observed, [], ERROR, VACUOUS)
            failures.append(failure)
            checks.append(_check(name, column, ERROR, False, None))
            continue
        checks.append(_check(name, column, severity, bool(r.success), _observed(result)))
        if r.success:
            continue
        detail = _expected_text(config) or str(getattr(config, "description", None) or "").rstrip(".")
        if name.endswith(":row_drop_vs_previous_run") and previous_row_count is not None:
            detail += f" (previous successful run: {previous_row_count:,} rows)"
        sample = _unexpected_sample(result)
        query = (config.kwargs or {}).get("unexpected_rows_query")
        if not sample and isinstance(query, str) and sample_rows is not None:
            sample = sample_rows(query)
        failure = ExpectationFailure(
            expectation=name,
            column=column,
            observed=_observed(result),
            unexpected_sample=sample,
            severity=severity,
            detail=detail,
        )
        (warnings if severity == WARNING else failures).append(failure)
    if vacuous:
        logger.error(
            "GX suite %s: %d expectation(s) returned no observed value (%s): the check passed "
            "vacuously, validation treated as FAILED",
            suite,
            len(vacuous),
            ", ".join(vacuous[:5]),
        )
    return ValidationReport(
        suite=suite,
        success=not failures,
        evaluated=len(suite_result.results),
        failures=failures,
        warnings=warnings,
        data_docs=data_docs,
        row_count=row_count,
        source=source,
        checks=checks,
    )


def _check(name: str, column: str | None, severity: str, success: bool, observed: object) -> dict[str, Any]:
    return {
        "expectation": name,
        "column": column,
        "severity": severity,
        "success": success,
        "observed": observed,
    }


def _short(value: object, limit: int = 120) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _value_text(value: object) -> str:
    # Timestamps read better as ISO text than as datetime.datetime(2031, 1, 1, 0, 0).
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return repr(value)


def failure_line(f: ExpectationFailure) -> str:
    observed = f.observed
    if isinstance(observed, Mapping) and "unexpected_count" in observed:
        bad, total = observed.get("unexpected_count"), observed.get("element_count")
        pct_text = (
            f" ({100.0 * bad / total:.2f}%)"
            if isinstance(bad, int) and isinstance(total, int) and total
            else ""
        )
        count_text = (
            f"{bad:,} of {total:,}"
            if isinstance(bad, int) and isinstance(total, int)
            else f"{bad} of {total}"
        )
        observed_text = f"{count_text} rows unexpected{pct_text}"
    elif f.expectation.startswith("unexpected_rows_expectation") and isinstance(observed, int):
        observed_text = f"{observed} unexpected row(s)"
    else:
        observed_text = _short(observed, 300)
    line = f"{f.column or '<table>'}: {f.expectation} observed {observed_text}"
    if f.detail:
        line += f"; {f.detail}"
    if f.unexpected_sample:
        shown = ", ".join(_short(_value_text(v), 80) for v in f.unexpected_sample[:5])
        line += f"; unexpected e.g. [{shown}]"
    return line


# --------------------------------------------------------------------------------------------
# Internals: row-count state of the previous successful run
# --------------------------------------------------------------------------------------------
