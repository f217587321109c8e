"""On-demand scoring of a few leads between nightly runs (the `score_on_demand` DAG).

`conf` is `{"leads": [{"lead_id": 123}, ...]}`; each lead is scored from the latest
published features with the current champion. Requests are checked before any work, and a
bad one fails with a structured, readable error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlsys import registry
from mlsys.settings import Settings

MAX_LEADS_PER_REQUEST = 100


@dataclass
class RequestError(ValueError):
    """A request a client must fix; `str()` is JSON a client can parse from the task log."""

    code: str
    message: str
    details: dict[str, Any] | None = None

    def __str__(self) -> str:
        return json.dumps({"error": self.code, "message": self.message, "details": self.details or {}})


def parse_request(conf: Any, max_leads: int = MAX_LEADS_PER_REQUEST) -> list[int]:
    if not isinstance(conf, dict):
        raise RequestError("invalid_request", 'conf must be a JSON object like {"leads": [...]}')
    leads = conf.get("leads")
    if not isinstance(leads, list) or not leads:
        raise RequestError("invalid_request", "conf.leads must be a non-empty list")
    if len(leads) > max_leads:
        raise RequestError(
            "too_many_leads",
            f"at most {max_leads} leads per request, got {len(leads)}",
            {"max": max_leads, "got": len(leads)},
        )
    ids: list[int] = []
    for i, item in enumerate(leads):
        if not isinstance(item, dict) or "lead_id" not in item:
            raise RequestError("invalid_lead", f"leads[{i}] must be an object with lead_id", {"index": i})
        lead_id = item["lead_id"]
        if isinstance(lead_id, bool) or not isinstance(lead_id, int):
            raise RequestError(
                "invalid_lead",
                f"leads[{i}].lead_id must be an integer, got {type(lead_id).__name__}",
                {"index": i},
            )
        ids.append(lead_id)
    return ids


def latest_features_path(settings: Settings) -> Path:
    files = sorted((settings.features_dir / "lead_features").glob("*.parquet"))
    if not files:
        raise RequestError("no_features", "no lead_features have been built yet: run score_leads first")
    return files[-1]


def score_leads(conf: Any, settings: Settings | None = None) -> list[dict[str, Any]]:
    import duckdb

    from mlsys.model import ReasonSpec, linear_contributions, prepare_frame, top_reasons
    from mlsys.score import band_of

    settings = settings or Settings.from_env()
    ids = parse_request(conf)
    path = latest_features_path(settings)
    champion = registry.load_champion(settings)
    con = duckdb.connect()
    # Ids travel as a bound parameter, never formatted into the SQL text.
    frame = con.execute(
        "select * from read_parquet(?) where lead_id in (select unnest(?::bigint[]))",
        [str(path), ids],
    ).df()
    unknown = sorted(set(ids) - set(frame["lead_id"].tolist()))
    if unknown:
        raise RequestError(
            "unknown_leads",
            f"{len(unknown)} lead id(s) not found in {path.name}",
            {"lead_ids": unknown[:20]},
        )
    frame = frame.set_index("lead_id").loc[ids].reset_index()
    x = prepare_frame(frame, champion.numeric, champion.categorical)
    p = champion.model.predict_proba(x)[:, 1]
    reasons_meta = champion.metadata.get("reasons")
    if reasons_meta:
        contributions, names = linear_contributions(champion.model, x, ReasonSpec(**reasons_meta))
        reasons = top_reasons(contributions, names)
    else:
        reasons = [[] for _ in ids]
    bands = band_of(p, champion.metadata["score_bands"])
    return [
        {
            "lead_id": int(lead_id),
            "score": float(score),
            "score_band": str(band),
            "top_reasons": reason,
            "model_name": champion.name,
            "model_version": champion.version,
        }
        for lead_id, score, band, reason in zip(ids, np.asarray(p), bands, reasons, strict=True)
    ]
