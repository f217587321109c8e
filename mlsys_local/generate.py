"""Synthetic CRM data with a known answer: the raw landing contract plus an oracle.

Why synthetic: the pipeline (dbt features, training, scoring, monitoring) must be
exercisable end to end at realistic volume without real customer data, and a model can only
be judged against "the best possible score" when that score is known. So the data come from
an explicit, analytically tractable generative model, and the generator also writes the
oracle probability every lead had of converting within the horizon.

Generative model (time ``t`` in days, lead ``i`` created at ``c_i``):

* Latent state per lead: engagement ``z_i`` (lognormal, heavy tailed, mean about 1, shifted
  a little by source and job level), lifecycle decay time ``tau_i`` (log-uniform on
  20..120 days) and a conversion propensity ``beta_i = s * exp(attribute effects + noise)``
  (referral/event sources, vp/director contacts and larger companies convert more).
* Intensity ``I_i(t) = z_i * exp(-(t - c_i) / tau_i)`` for ``t >= c_i``.
* Conversion hazard ``h_i(t) = beta_i * I_i(t)``; its cumulative hazard is closed form,
  ``H_i(t) = beta_i * z_i * tau_i * (1 - exp(-(t - c_i) / tau_i))``, and the conversion time
  is drawn by inverting it against an Exp(1) draw (censored at ``end_date``).
* Activities are a Poisson process with rate ``alpha * I_i(t)``; times come from the inverse
  CDF of the truncated exponential. After a lead converts, only ``POST_CONVERSION_KEEP``
  (20 %) of the activity rate remains (customers still open mail, but most marketing
  touches stop). Each activity is "hot" with probability ``sigmoid(a + b * log z_i)`` and then
  drawn from a hot mix (pricing pages, demos, webinars, forms) or a cold mix (email opens,
  page views). Activities do not feed back into the hazard, so the oracle below is exact.
* Oracle: ``P(convert in [D, D + H) | latent state, not converted before D)
  = 1 - exp(-(H_i(D + H) - H_i(D)))``, written for ``D = end_date - horizon_days`` (the
  last date whose labels are fully observed) and for ``D = end_date`` (the scoring date).

Two global constants are calibrated, not hand tuned, on a fixed reference population drawn
with its own seed (so they depend on ``history_days``/``horizon_days``/``activities_per_lead``
only, never on ``seed`` or ``n_leads``): the hazard scale ``s`` so the expected positive rate
at the evaluation date is ``TARGET_POSITIVE_RATE``, and the activity scale ``alpha`` so the
expected number of activities per lead is ``activities_per_lead``. Both expectations are
closed form, so the calibration is a one-dimensional bisection plus a ratio.

Lead ids are 1..n in creation order (like an auto-increment key). Everything is vectorised;
activities are produced in chunks of leads, each chunk written as its own part file, so
memory stays bounded at 1M leads / 30M activities. All randomness comes from one
``SeedSequence(seed)``, so the same arguments give the same files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.random import PCG64, Generator, SeedSequence
from numpy.typing import NDArray

from mlsys.contract import ACTIVITIES, CONVERSIONS, LEADS, raw_contract
from mlsys.progress import Progress
from mlsys_local.daily_files import DailyFiles

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
CodeArray = NDArray[np.int8]
BoolArray = NDArray[np.bool_]

# Categorical attributes as {value: (share, effect on log hazard[, effect on log engagement])}.
# Referral/event leads and vp/director contacts convert more; outbound leads engage less.
_SOURCE: Final[dict[str, tuple[float, float, float]]] = {
    "web": (0.35, 0.0, 0.0),
    "referral": (0.10, 0.8, 0.2),
    "event": (0.08, 0.5, 0.3),
    "paid_search": (0.18, -0.1, -0.1),
    "social": (0.12, -0.4, 0.0),
    "outbound": (0.17, -0.6, -0.5),
}
_JOB_LEVEL: Final[dict[str, tuple[float, float, float]]] = {
    "c_level": (0.05, 0.3, -0.4),
    "vp": (0.10, 0.6, -0.1),
    "director": (0.20, 0.5, 0.0),
    "manager": (0.30, 0.1, 0.1),
    "individual": (0.35, -0.4, 0.2),
}
_INDUSTRY: Final[dict[str, tuple[float, float]]] = {
    "software": (0.22, 0.3),
    "financial_services": (0.12, 0.2),
    "healthcare": (0.10, -0.1),
    "manufacturing": (0.10, 0.0),
    "retail": (0.08, -0.1),
    "education": (0.06, -0.3),
    "government": (0.04, -0.4),
    "media": (0.06, 0.0),
    "telecom": (0.05, 0.1),
    "logistics": (0.05, -0.1),
    "energy": (0.04, 0.0),
    "professional_services": (0.08, 0.1),
}
_COUNTRY: Final[dict[str, tuple[float, float]]] = {
    "US": (0.34, 0.1),
    "GB": (0.10, 0.1),
    "DE": (0.09, 0.05),
    "FR": (0.07, 0.0),
    "NL": (0.04, 0.05),
    "IN": (0.08, -0.3),
    "BR": (0.06, -0.2),
    "CA": (0.06, 0.1),
    "AU": (0.05, 0.05),
    "ES": (0.04, -0.05),
    "SE": (0.02, 0.0),
    "JP": (0.02, -0.1),
    "MX": (0.02, -0.2),
    "IT": (0.01, -0.1),
}
# Activity type: (share in the cold mix, share in the hot mix).
_ACTIVITY: Final[dict[str, tuple[float, float]]] = {
    "email_open": (0.46, 0.14),
    "email_click": (0.10, 0.12),
    "page_view": (0.32, 0.20),
    "pricing_page_view": (0.03, 0.18),
    "form_submit": (0.02, 0.10),
    "content_download": (0.05, 0.08),
    "webinar_attended": (0.015, 0.10),
    "demo_requested": (0.005, 0.08),
}

# The generator's own order of each category (its codes); the values are the contract's.
SOURCES: Final = tuple(_SOURCE)
JOB_LEVELS: Final = tuple(_JOB_LEVEL)
INDUSTRIES: Final = tuple(_INDUSTRY)
COUNTRIES: Final = tuple(_COUNTRY)
ACTIVITY_TYPES: Final = tuple(_ACTIVITY)


def _column(table: Mapping[str, tuple[float, ...]], i: int) -> FloatArray:
    """Column ``i`` of a category table, in the category order used for codes."""
    return np.array([row[i] for row in table.values()], dtype=np.float64)


NULL_SHARE: Final = {
    "industry": 0.03,
    "country": 0.02,
    "company_size": 0.05,
    "job_level": 0.03,
}

TARGET_POSITIVE_RATE: Final = 0.09
POST_CONVERSION_KEEP: Final = 0.2
ENGAGEMENT_SIGMA: Final = 1.1
BETA_NOISE_SIGMA: Final = 0.6
COMPANY_SIZE_LOG_MEDIAN: Final = math.log(80.0)
COMPANY_SIZE_LOG_SIGMA: Final = 1.6
COMPANY_SIZE_BETA: Final = 0.15  # per unit of log(employees) around the median
TAU_RANGE_DAYS: Final = (20.0, 120.0)
HOT_INTERCEPT: Final = -1.0
HOT_SLOPE: Final = 1.2
# Lead creation density grows by a factor e^RECENT_GROWTH over the history window.
RECENT_GROWTH: Final = 0.5

CALIBRATION_SEED: Final = 20_260_601
CALIBRATION_LEADS: Final = 100_000
# Expected rows per activity part file; bounds the memory of one chunk.
ACTIVITIES_PER_CHUNK: Final = 3_000_000
MAX_LEADS_PER_CHUNK: Final = 1_000_000  # 2 segments per lead must fit in 63 - 40 bits
_UNIFORM_BITS: Final = 40
ROW_GROUP_SIZE: Final = 1_000_000
COMPRESSION: Final = "zstd"

SECONDS_PER_DAY: Final = 86_400
US_PER_DAY: Final = 86_400_000_000
_EPOCH: Final = datetime(1970, 1, 1)

# The landing files follow the raw contract declared in the dbt project (mlsys.contract).
_CONTRACT: Final = raw_contract()
LEADS_SCHEMA: Final = _CONTRACT.table(LEADS).arrow_schema()
ACTIVITIES_SCHEMA: Final = _CONTRACT.table(ACTIVITIES).arrow_schema()
CONVERSIONS_SCHEMA: Final = _CONTRACT.table(CONVERSIONS).arrow_schema()
GROUND_TRUTH_SCHEMA: Final = pa.schema(
    [
        ("lead_id", pa.int64()),
        ("as_of", pa.date32()),
        ("true_probability", pa.float64()),
    ]
)


@dataclass(frozen=True)
class GenerateResult:
    """What a caller needs to log a run and to find the oracle afterwards.

    ``positive_rate`` is the realised share of conversions within the horizon among the
    oracle's population at ``end_date - horizon_days`` (NaN if that population is empty).
    """

    out_dir: Path
    n_leads: int
    n_activities: int
    n_conversions: int
    positive_rate: float
    truth_path: Path

    def summary(self) -> str:
        """Two lines for a CLI, so a run can be sanity-checked at a glance."""
        rate = "n/a" if math.isnan(self.positive_rate) else f"{self.positive_rate:.2%}"
        return (
            f"{self.n_leads:,} leads, {self.n_activities:,} activities, "
            f"{self.n_conversions:,} conversions -> {self.out_dir}\n"
            f"positive rate at the evaluation date: {rate} (oracle: {self.truth_path})"
        )


@dataclass(frozen=True)
class _Leads:
    """Latent state and attributes of a population, in creation order.

    ``created_days`` is measured from the start of the history window and is a whole number
    of seconds, so the float the model uses and the timestamp written agree exactly.
    """

    created_days: FloatArray
    engagement: FloatArray
    tau: FloatArray
    propensity: FloatArray  # beta_i / s: the attribute part of the hazard scale
    source: CodeArray
    industry: CodeArray
    country: CodeArray
    job_level: CodeArray
    company_size: IntArray

    def take(self, rows: slice | IntArray) -> _Leads:
        """The same arrays restricted to ``rows`` (a chunk or a sub-population)."""
        return _Leads(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


def _inverse_cdf(weights: FloatArray, u: FloatArray) -> CodeArray:
    """Category codes for uniforms ``u`` (weights need not sum to 1): a vectorised draw."""
    cum = np.cumsum(weights)
    idx = np.searchsorted(cum / cum[-1], u, side="right")
    return np.minimum(idx, len(weights) - 1).astype(np.int8)


def _codes(rng: Generator, n: int, table: Mapping[str, tuple[float, ...]]) -> CodeArray:
    return _inverse_cdf(_column(table, 0), rng.random(n))


def _draw_leads(rng: Generator, n: int, history_days: int) -> _Leads:
    """Draw attributes first, then the latent state conditioned on them."""
    span_s = history_days * SECONDS_PER_DAY
    # Density proportional to exp(g * u) on u in [0, 1): a growing business.
    u = np.log1p(rng.random(n) * math.expm1(RECENT_GROWTH)) / RECENT_GROWTH
    created_s = np.minimum(np.floor(u * span_s), span_s - 1).astype(np.int64)
    created_s.sort()

    source = _codes(rng, n, _SOURCE)
    industry = _codes(rng, n, _INDUSTRY)
    country = _codes(rng, n, _COUNTRY)
    job_level = _codes(rng, n, _JOB_LEVEL)
    log_size = rng.normal(COMPANY_SIZE_LOG_MEDIAN, COMPANY_SIZE_LOG_SIGMA, n)
    company_size = np.maximum(np.rint(np.exp(log_size)), 1.0).astype(np.int64)

    log_z = (
        rng.normal(-0.5 * ENGAGEMENT_SIGMA**2, ENGAGEMENT_SIGMA, n)
        + _column(_SOURCE, 2)[source]
        + _column(_JOB_LEVEL, 2)[job_level]
    )
    lo, hi = TAU_RANGE_DAYS
    tau = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    log_beta = (
        _column(_SOURCE, 1)[source]
        + _column(_INDUSTRY, 1)[industry]
        + _column(_COUNTRY, 1)[country]
        + _column(_JOB_LEVEL, 1)[job_level]
        + COMPANY_SIZE_BETA * (np.log(company_size) - COMPANY_SIZE_LOG_MEDIAN)
        + rng.normal(0.0, BETA_NOISE_SIGMA, n)
    )
    return _Leads(
        created_days=created_s / SECONDS_PER_DAY,
        engagement=np.exp(log_z),
        tau=tau,
        propensity=np.exp(log_beta),
        source=source,
        industry=industry,
        country=country,
        job_level=job_level,
        company_size=company_size,
    )


def _exposure(leads: _Leads, start: float, stop: float) -> FloatArray:
    """Integral of the intensity I_i over [start, stop) (clipped to the lead's lifetime).

    Multiplying by ``s * propensity`` gives the cumulative hazard increment; by ``alpha``,
    the expected number of activities.
    """
    c, tau = leads.created_days, leads.tau
    a = np.maximum(start - c, 0.0)
    b = np.maximum(stop - c, 0.0)
    return leads.engagement * tau * (np.exp(-a / tau) - np.exp(-b / tau))


def _calibrate(history_days: int, horizon_days: int, activities_per_lead: float) -> tuple[float, float]:
    """Hazard scale ``s`` and activity scale ``alpha`` from a fixed reference population.

    Done on a reference draw (not the generated sample) so the constants, and hence the
    meaning of a lead's latent state, do not change with ``seed`` or ``n_leads``.
    """
    ref = _draw_leads(Generator(PCG64(CALIBRATION_SEED)), CALIBRATION_LEADS, history_days)
    eval_day = float(history_days - horizon_days)
    in_pop = ref.created_days < eval_day
    k = ref.propensity[in_pop]
    before = k * _exposure(ref, 0.0, eval_day)[in_pop]
    during = k * _exposure(ref, eval_day, float(history_days))[in_pop]

    def expected_rate(log_s: float) -> float:
        # Survivors at eval_day are weighted by their probability of not having converted.
        s = math.exp(log_s)
        log_survive = -s * before
        weights = np.exp(log_survive - log_survive.max())
        return float(np.sum(weights * -np.expm1(-s * during)) / np.sum(weights))

    lo, hi = -20.0, 10.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if expected_rate(mid) < TARGET_POSITIVE_RATE:
            lo = mid
        else:
            hi = mid
    s = math.exp(0.5 * (lo + hi))

    # Expected activities of a lead: alpha * m * (f + keep * (1 - f)) where m is the
    # lifetime exposure and f = E[H(min(T, end))] / H(end) = (1 - e^-h) / h, h = s k m.
    m = _exposure(ref, 0.0, float(history_days))
    h = s * ref.propensity * m
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(h > 1e-12, -np.expm1(-h) / h, 1.0)
    per_alpha = float(np.mean(m * (f + POST_CONVERSION_KEEP * (1.0 - f))))
    return s, activities_per_lead / per_alpha


def _conversion_delays(rng: Generator, leads: _Leads, s: float, history_days: int) -> FloatArray:
    """Days from creation to conversion by inverting the cumulative hazard; inf if censored."""
    # k is the cumulative hazard as t -> inf, h_end the one reached by end_date.
    k = s * leads.propensity * leads.engagement * leads.tau
    life = history_days - leads.created_days
    h_end = k * -np.expm1(-life / leads.tau)
    e = rng.exponential(1.0, len(k))
    converts = e < h_end
    delay = np.full(len(k), np.inf)
    delay[converts] = -leads.tau[converts] * np.log1p(-e[converts] / k[converts])
    return delay


def _to_us(base_us: IntArray, delay_days: FloatArray, end_us: int) -> IntArray:
    """Microsecond timestamps ``delay_days`` after ``base_us``, kept strictly before ``end_us``.

    Adding a floored integer offset (rather than converting absolute float days) keeps an
    event never earlier than the creation it follows.
    """
    us = base_us + np.floor(delay_days * US_PER_DAY).astype(np.int64)
    return np.minimum(us, end_us - 1)


def _strings(values: tuple[str, ...], codes: CodeArray, null: BoolArray | None = None) -> pa.Array:
    """Plain (not dictionary) string column built in Arrow, without Python objects per row."""
    return pc.take(pa.array(values, pa.string()), pa.array(codes, pa.int8(), mask=null))


def _timestamps(us: IntArray) -> pa.Array:
    return pa.array(us.view("datetime64[us]"), pa.timestamp("us"))


def _activities_chunk(
    rng: Generator,
    leads: _Leads,
    lead_ids: IntArray,
    created_us: IntArray,
    conv_delay: FloatArray,
    alpha: float,
    history_days: int,
    end_us: int,
) -> pa.Table:
    """All activities of a slice of leads, sorted by (lead_id, occurred_at).

    Each lead has two segments, before and after conversion (the second thinned to
    ``POST_CONVERSION_KEEP``). Sorting the uniforms within a segment before the monotone
    inverse CDF yields time-ordered activities without a sort on timestamps.
    """
    z, tau = leads.engagement, leads.tau
    life = history_days - leads.created_days
    split = np.minimum(conv_delay, life)
    pre = alpha * z * tau * -np.expm1(-split / tau)
    post = POST_CONVERSION_KEEP * alpha * z * tau * (np.exp(-split / tau) - np.exp(-life / tau))
    counts = rng.poisson(np.stack([pre, np.maximum(post, 0.0)], axis=1).ravel())
    n_seg = counts.size
    seg_lo = np.stack([np.zeros_like(split), split], axis=1).ravel()
    seg_hi = np.stack([split, life], axis=1).ravel()

    # Uniforms as 40-bit integers packed under the segment number: one integer sort orders
    # them within each segment exactly (a float key seg + u would lose precision).
    seg = np.repeat(np.arange(n_seg, dtype=np.int64), counts)
    key = (seg << _UNIFORM_BITS) | rng.integers(0, 1 << _UNIFORM_BITS, seg.size, dtype=np.int64)
    key.sort()
    u = ((key & ((1 << _UNIFORM_BITS) - 1)) + 0.5) / float(1 << _UNIFORM_BITS)
    del key
    seg_tau = np.repeat(np.repeat(tau, 2), counts)
    lo = seg_lo[seg]
    width = seg_hi[seg] - lo
    delay = lo - seg_tau * np.log1p(u * np.expm1(-width / seg_tau))
    del u, width, lo, seg_tau

    lead_of = seg // 2
    occurred = _to_us(created_us[lead_of], delay, end_us)
    del delay

    p_hot = 1.0 / (1.0 + np.exp(-(HOT_INTERCEPT + HOT_SLOPE * np.log(z))))
    hot = rng.random(seg.size) < p_hot[lead_of]
    pick = rng.random(seg.size)
    kind = np.where(
        hot,
        _inverse_cdf(_column(_ACTIVITY, 1), pick),
        _inverse_cdf(_column(_ACTIVITY, 0), pick),
    )
    return pa.table(
        {
            "lead_id": pa.array(lead_ids[lead_of], pa.int64()),
            "occurred_at": _timestamps(occurred),
            "activity_type": _strings(ACTIVITY_TYPES, kind),
        },
        schema=ACTIVITIES_SCHEMA,
    )


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression=COMPRESSION, row_group_size=ROW_GROUP_SIZE)


def _check_args(
    n_leads: int,
    seed: int,
    end_date: date,
    horizon_days: int,
    history_days: int,
    activities_per_lead: float,
) -> None:
    """Fail early with a message naming the argument, not deep inside numpy.

    Out-of-range values raise ``ValueError``; an ``end_date`` that is not a plain date (a
    ``datetime`` would silently shift every timestamp) raises ``TypeError``.
    """

    def is_int(value: object) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not is_int(n_leads) or n_leads < 1:
        raise ValueError(f"n_leads must be an integer >= 1, got {n_leads!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(end_date, datetime) or not isinstance(end_date, date):
        raise TypeError(f"end_date must be a datetime.date (midnight UTC is implied), got {end_date!r}")
    if not is_int(horizon_days) or horizon_days < 1:
        raise ValueError(f"horizon_days must be an integer >= 1, got {horizon_days!r}")
    if not is_int(history_days) or history_days <= horizon_days:
        raise ValueError(
            f"history_days must be an integer > horizon_days ({horizon_days}), got {history_days!r}"
        )
    if not isinstance(activities_per_lead, (int, float)) or not (0.0 < float(activities_per_lead) < math.inf):
        raise ValueError(f"activities_per_lead must be a finite number > 0, got {activities_per_lead!r}")


def _check_vocabularies() -> None:
    """Every value the contract accepts needs the generator's parameters, and the generator
    must not write a value the contract refuses."""
    ours = {"lead_sources": SOURCES, "job_levels": JOB_LEVELS, "activity_types": ACTIVITY_TYPES}
    for var, values in ours.items():
        declared = _CONTRACT.vocabularies[var]
        if set(values) != set(declared):
            raise ValueError(
                f"the contract's {var} ({', '.join(declared)}) differ from the generator's "
                f"({', '.join(values)}): give mlsys_local/generate.py parameters for the new values"
            )


def generate(
    out_dir: Path,
    n_leads: int = 100_000,
    seed: int = 42,
    end_date: date = date(2026, 6, 1),
    horizon_days: int = 30,
    history_days: int = 365,
    activities_per_lead: float = 30.0,
    daily_files: int = 0,
) -> GenerateResult:
    """Write the raw landing contract and the oracle under ``out_dir``.

    ``daily_files`` > 0: the activities of the last that many days before ``end_date`` go to
    one file per day, ``activities/day-<date>.parquet``, as a CRM landing one export a night
    would leave them; the rest stay in the part files. Moving the last day's file aside and
    back is how the benchmarks land "one more day" (benchmarks/README.md). Progress goes to
    `mlsys.progress` (a bar on a terminal, a line every few seconds otherwise).

    Leads are created over ``[end_date - history_days, end_date)``; the oracle is written for
    ``end_date - horizon_days`` (labels fully observed, for judging models) and for
    ``end_date`` (the date the pipeline scores). Existing files of a previous run in the same
    folders are replaced, including surplus activity part files.
    """
    _check_args(n_leads, seed, end_date, horizon_days, history_days, activities_per_lead)
    _check_vocabularies()
    out_dir = Path(out_dir)
    n_leads = int(n_leads)
    horizon_days, history_days = int(horizon_days), int(history_days)

    start = datetime.combine(end_date - timedelta(days=history_days), datetime.min.time())
    start_us = (start - _EPOCH) // timedelta(microseconds=1)
    end_us = start_us + history_days * US_PER_DAY
    eval_day = history_days - horizon_days

    s, alpha = _calibrate(history_days, horizon_days, float(activities_per_lead))
    lead_ss, conv_ss, null_ss, act_ss = SeedSequence(seed).spawn(4)
    leads = _draw_leads(Generator(PCG64(lead_ss)), n_leads, history_days)
    lead_ids = np.arange(1, n_leads + 1, dtype=np.int64)
    created_us = start_us + np.rint(leads.created_days * SECONDS_PER_DAY).astype(np.int64) * 1_000_000

    # Leads. Missing values are a recording problem only: the latent model used the true value.
    null_rng = Generator(PCG64(null_ss))
    nulls = {col: null_rng.random(n_leads) < share for col, share in NULL_SHARE.items()}
    leads_table = pa.table(
        {
            "lead_id": pa.array(lead_ids, pa.int64()),
            "created_at": _timestamps(created_us),
            "source": _strings(SOURCES, leads.source),
            "industry": _strings(INDUSTRIES, leads.industry, nulls["industry"]),
            "country": _strings(COUNTRIES, leads.country, nulls["country"]),
            "company_size": pa.array(leads.company_size, pa.int64(), mask=nulls["company_size"]),
            "job_level": _strings(JOB_LEVELS, leads.job_level, nulls["job_level"]),
        },
        schema=LEADS_SCHEMA,
    )
    _write(leads_table, out_dir / "raw" / "leads" / "leads.parquet")
    del leads_table, nulls

    # Conversions.
    conv_delay = _conversion_delays(Generator(PCG64(conv_ss)), leads, s, history_days)
    converted = np.isfinite(conv_delay)
    conv_us = np.full(n_leads, np.iinfo(np.int64).max, dtype=np.int64)
    conv_us[converted] = _to_us(created_us[converted], conv_delay[converted], end_us)
    _write(
        pa.table(
            {
                "lead_id": pa.array(lead_ids[converted], pa.int64()),
                "converted_at": _timestamps(conv_us[converted]),
            },
            schema=CONVERSIONS_SCHEMA,
        ),
        out_dir / "raw" / "conversions" / "conversions.parquet",
    )

    # Activities, chunk by chunk.
    act_dir = out_dir / "raw" / "activities"
    act_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*act_dir.glob("part-*.parquet"), *act_dir.glob("day-*.parquet")]:
        stale.unlink()
    per_chunk = int(min(max(ACTIVITIES_PER_CHUNK // activities_per_lead, 1_000), MAX_LEADS_PER_CHUNK))
    n_chunks = -(-n_leads // per_chunk)
    n_activities = 0
    daily = DailyFiles(act_dir, end_date, daily_files, compression=COMPRESSION, row_group_size=ROW_GROUP_SIZE)
    progress = Progress("generate: activities", total=n_leads, unit="leads")
    for part, chunk_ss in enumerate(act_ss.spawn(n_chunks)):
        sl = slice(part * per_chunk, min((part + 1) * per_chunk, n_leads))
        chunk = leads.take(sl)
        table = _activities_chunk(
            Generator(PCG64(chunk_ss)),
            chunk,
            lead_ids[sl],
            created_us[sl],
            conv_delay[sl],
            alpha,
            history_days,
            end_us,
        )
        n_activities += table.num_rows
        _write(daily.take(table), act_dir / f"part-{part:05d}.parquet")
        del table
        progress.advance(sl.stop - sl.start)
    daily.close()
    progress.finish()

    # Oracle, at the evaluation date and at end_date.
    truth_parts: list[pa.Table] = []
    positive_rate = float("nan")
    horizon = float(horizon_days)
    for day in (eval_day, history_days):
        day_us = start_us + day * US_PER_DAY
        pop = (created_us < day_us) & (conv_us >= day_us)
        idx = np.flatnonzero(pop)
        sub = leads.take(idx)
        prob = -np.expm1(-s * sub.propensity * _exposure(sub, float(day), day + horizon))
        if day == eval_day:
            label = conv_us[idx] < day_us + horizon_days * US_PER_DAY
            positive_rate = float(label.mean()) if idx.size else float("nan")
        as_of = (end_date - timedelta(days=history_days - day) - _EPOCH.date()).days
        truth_parts.append(
            pa.table(
                {
                    "lead_id": pa.array(lead_ids[idx], pa.int64()),
                    "as_of": pa.array(np.full(idx.size, as_of, dtype=np.int32), pa.date32()),
                    "true_probability": pa.array(prob, pa.float64()),
                },
                schema=GROUND_TRUTH_SCHEMA,
            )
        )
    truth_path = out_dir / "ground_truth" / "ground_truth.parquet"
    _write(pa.concat_tables(truth_parts), truth_path)
    # The landing is complete for a cut-off of end_date (Settings.default_as_of): a run given no
    # date scores this export as of end_date, not as of a today it never reached.
    (out_dir / "raw" / "landing.json").write_text(json.dumps({"complete_as_of": end_date.isoformat()}) + "\n")

    return GenerateResult(
        out_dir=out_dir,
        n_leads=n_leads,
        n_activities=n_activities,
        n_conversions=int(converted.sum()),
        positive_rate=positive_rate,
        truth_path=truth_path,
    )
