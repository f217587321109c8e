"""On-demand scoring: a few leads now, with the champion and the nightly feature SQL.

Two front doors share one scorer (:class:`Scorer`): the ``score_on_demand`` DAG (REST
trigger, result in the task's XCom ``return_value``) and ``POST /mlsys/score`` on the Airflow
api-server (``plugins/mlsys_scoring.py``), which answers synchronously.

A request (the DAG run's ``conf``, or the POST body)::

    {"leads": [{"lead_id": 42}, {<lead payload>}, ...], "as_of": "2026-06-01"}

* ``{"lead_id": 42}`` is looked up in published features: the lead_features file of
  ``as_of``; without ``as_of``, of the newest published scored partition (features the GX
  gate passed). Its score equals that partition's score for the same champion.
* A lead payload carries the lead's attributes and its activities in the raw landing
  contract's fields (docs/contracts.md)::

      {"lead_id": 42, "created_at": "2026-05-20T09:30:00Z", "source": "web",
       "industry": "software", "country": "DE", "company_size": 120, "job_level": "manager",
       "activities": [{"occurred_at": "2026-05-28T10:00:00Z", "activity_type": "pricing_page_view"}]}

  Its features come from the compiled SQL of the dbt project, the same text the nightly
  ``dbt build`` runs, executed in an in-memory DuckDB whose raw sources are tables built from
  the payload. Without ``as_of`` a payload is scored as of tomorrow (UTC): the cut-off of the
  next nightly run, the first one whose features include everything that happened today
  (features as of D use only rows before D). So a lead created an hour ago gets a score, and
  it is the score tonight's run will give it unless more happens today.

Every result is ``{lead_id, score, score_band, top_reasons, model_name, model_version,
as_of}`` in request order. A bad request raises :class:`RequestError` (requests are parsed
by :mod:`mlsys.on_demand.request`; the doors' shared code is :mod:`mlsys.on_demand.serving`), a
scorer that cannot serve yet (no champion, no published features) :class:`UnavailableError`;
both carry a code, a message and details that ``to_dict()`` / ``str()`` render as JSON.

Why not run dbt per request: dbt's start-up alone is about 4.5 s. The project is compiled
once per version of its files (``dbt compile`` in a subprocess, cached on disk under
``$MLSYS_HOME/dbt/on_demand/``), with ``var('as_of')`` set to a sentinel date that the scorer
replaces by the request's date. Compiling twice with two sentinels and comparing proves that
``as_of`` reaches the SQL only as that literal; otherwise the scorer refuses payloads rather
than compute features that differ from the nightly ones.

The package, by job: ``request`` (the request, its parser and errors), ``schema`` (the
published OpenAPI models), ``feature_sql`` (the dbt project's lead_features SQL, compiled once
per version), ``scorer`` (:class:`Scorer`), ``serving`` (what the plugin and the DAG task
share: answers, warm-up, request ids). Importing the package is cheap: its names load their
module on first use, so a DAG file that imports a constant parses fast.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module that defines it.
_EXPORTS = {
    "Scorer": "scorer",
    "score_leads": "scorer",
    "payloads_from_raw": "scorer",
    "published_dates": "scorer",
    "FeatureSQL": "feature_sql",
    "SENTINELS": "feature_sql",
    "compile_feature_sql": "feature_sql",
    "load_feature_sql": "feature_sql",
    "project_hash": "feature_sql",
    "LEAD_FIELDS": "request",
    "MAX_ACTIVITIES_PER_LEAD": "request",
    "MAX_LEADS_PER_REQUEST": "request",
    "MAX_TEXT_LENGTH": "request",
    "LeadPayload": "request",
    "LeadRef": "request",
    "RequestError": "request",
    "ScoreRequest": "request",
    "ScoringError": "request",
    "UnavailableError": "request",
    "parse_request": "request",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
