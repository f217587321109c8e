"""The doors of on-demand scoring around one :class:`~mlsys.on_demand.Scorer`: what the
plugin (`plugins/mlsys_scoring.py`) and the `score_on_demand` DAG do with a request, kept here
so both are thin and testable without a server.

* :func:`answer_score`: a `POST /mlsys/score` body -> (HTTP status, JSON bytes). Every failure
  is a ``{"error", "message", "details"}`` body: refusals with their status, anything
  unexpected as 500 ``internal`` whose ``details.request_id`` is on the logged traceback.
* :func:`score_task`: the DAG task. A refused request pushes XCom ``error`` and fails the try
  with no retry; an unexpected failure pushes ``error`` = ``internal`` and raises (Airflow
  retries once).
* :class:`WarmUp`: the api-server loads the champion, compiles the feature SQL and reads the
  published features at start-up (the plugin app's lifespan), so the first request is as fast
  as the next; :meth:`WarmUp.readiness` is what `GET /mlsys-health/ready` answers.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from time import perf_counter
from typing import Any

from mlsys.on_demand.request import (
    MAX_BODY_BYTES,
    RequestError,
    ScoringError,
    UnavailableError,
    decode_body,
)
from mlsys.settings import Settings

log = logging.getLogger("mlsys.on_demand")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id(headers: Any) -> str:
    """The caller's X-Request-ID when it is a short plain token (Airflow's access log binds
    the same header), else a new one."""
    given = headers.get("x-request-id") if headers is not None else None
    return given if isinstance(given, str) and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def render(payload: Any) -> bytes:
    """JSON for an answer: ASCII (no text can fail to encode), and no NaN/Infinity, which
    are not JSON (a ValueError here is a bug to report as 500, never an invalid body)."""
    return json.dumps(payload, allow_nan=False).encode()


def internal_error(exc: BaseException, rid: str, log_name: str = "the api-server log") -> dict[str, Any]:
    """The answer to a failure nobody planned for: its class, where its traceback is, its id."""
    return {
        "error": "internal",
        "message": f"unexpected {type(exc).__name__}: {log_name} has the traceback under request_id {rid}",
        "details": {"request_id": rid},
    }


def answer_score(
    scorer: Any, body: bytes | None, rid: str, max_bytes: int = MAX_BODY_BYTES
) -> tuple[int, bytes]:
    """The plugin's answer to a `POST /mlsys/score` body (None: larger than `max_bytes`)."""
    try:
        if body is None:
            raise RequestError(
                "request_too_large",
                f"the body is larger than {max_bytes:,} bytes",
                {"max_bytes": max_bytes},
                status=413,
            )
        conf = decode_body(body, max_bytes) if body else None
        return 200, render({"results": scorer.score(conf)})
    except ScoringError as exc:
        return exc.status, render(exc.to_dict())
    except Exception as exc:
        # The contract: JSON with a request id, never a bare 500 (log.exception logs the rest).
        log.exception("on-demand scoring failed: request_id=%s", rid)
        return 500, render(internal_error(exc, rid))


def answer_model(scorer: Any, warm_up: WarmUp, rid: str) -> tuple[int, bytes]:
    """`GET /mlsys/model`: the champion served and the readiness of this server."""
    try:
        info = scorer.describe()
        info["readiness"] = warm_up.readiness()
        return 200, render(info)
    except ScoringError as exc:
        error = exc.to_dict()
        error["details"] = {**error["details"], "readiness": warm_up.readiness()}
        return exc.status, render(error)
    except Exception as exc:
        log.exception("describing the champion failed: request_id=%s", rid)
        return 500, render(internal_error(exc, rid))


# -- the DAG's task ---------------------------------------------------------------------------


def score_task(context: dict[str, Any], settings: Settings) -> list:
    """The `score_on_demand` task: the results, or a structured XCom `error` and a failure."""
    from airflow.sdk.exceptions import AirflowFailException

    from mlsys.on_demand.scorer import score_leads

    conf = getattr(context.get("dag_run"), "conf", None)
    ti = context["ti"]
    try:
        # One request per task process: read only the requested feature rows.
        return score_leads(conf, settings, cache_features=False)
    except ScoringError as exc:
        # XCom first, so a client reads a structured error instead of parsing the log; a bad
        # request will not get better by retrying.
        ti.xcom_push(key="error", value=exc.to_dict())
        raise AirflowFailException(str(exc)) from exc
    except Exception as exc:
        # The run id is the request id here: the task log of that run has the traceback.
        run_id = getattr(context.get("dag_run"), "run_id", None) or "unknown"
        ti.xcom_push(key="error", value=internal_error(exc, str(run_id), "the task log"))
        raise


# -- warm-up and readiness ---------------------------------------------------------------------


class WarmUp:
    """Loads what the first request would otherwise wait for, once, on a thread of its own.

    Ready means the warm-up has finished: the champion is in memory (or known to be missing:
    requests then answer 503 at once rather than wait), the feature SQL compiled, the newest
    published features read. A server with no champion yet is ready too, or a fresh stack
    whose healthcheck waits for this would never start the scheduler that trains one."""

    def __init__(self, scorer: Any, *, payloads: bool = True, freeze_gc: bool = True) -> None:
        self.scorer = scorer
        self.payloads = payloads
        self.freeze_gc = freeze_gc  # a server's choice; a test process keeps its collector
        self.steps: dict[str, str] = {}
        self.seconds: float | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the warm-up thread (once; later calls do nothing)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self.run, name="mlsys-warm-up", daemon=True)
            self._thread.start()

    def run(self) -> dict[str, str]:
        start = perf_counter()
        steps: list[tuple[str, Callable[[], Any]]] = [("champion", self.scorer.champion)]
        if self.payloads:
            steps.append(("feature_sql", self.scorer.feature_sql))
        steps.append(("published_features", self._published_features))
        steps.append(("probe", self._probe))
        for name, step in steps:
            try:
                step()
                self.steps[name] = "ready"
            except UnavailableError as exc:
                self.steps[name] = f"{exc.code}: {exc.message}"
            except Exception as exc:  # noqa: BLE001 - best effort; requests report their own errors
                log.warning("on-demand warm-up: %s failed: %s", name, exc)
                self.steps[name] = f"failed: {type(exc).__name__}: {exc}"
        self.seconds = round(perf_counter() - start, 3)
        log.info("on-demand scorer warmed up in %.1fs: %s", self.seconds, self.steps)
        # From now on the alias, the dbt project and the partitions are checked off the
        # request path; a promotion reaches this server within MLSYS_ON_DEMAND_REFRESH_SECONDS.
        self.scorer.start_refresher()
        # What is loaded by now (Airflow, the model, the compiled SQL) lives as long as the
        # server: out of the collector's generations, full collections inside a request no
        # longer walk it (a one-lead request's p99 roughly halves here).
        if self.freeze_gc:
            gc.freeze()
        self._done.set()
        return self.steps

    def _published_features(self) -> None:
        """The newest published lead_features file into the scorer's memory (lead id lookups)."""
        as_of = self.scorer.latest_published()
        champion = self.scorer.champion()
        self.scorer.lookup([], as_of, [*champion.numeric, *champion.categorical])

    def _probe(self) -> None:
        """A lead id and a payload scored end to end, off the record: the first calls of the
        model, the explainer and DuckDB cost tens of milliseconds that no client should wait for."""
        import pyarrow.parquet as pq

        from mlsys.on_demand.request import vocabularies

        as_of = self.scorer.latest_published()
        first = pq.ParquetFile(self.scorer.settings.lead_features_path(as_of)).read_row_group(
            0, columns=["lead_id"]
        )
        leads: list[dict[str, Any]] = [{"lead_id": first.column("lead_id")[0].as_py()}]
        if self.payloads:
            source = vocabularies()["source"][0]
            leads.append({"lead_id": -1, "created_at": "2000-01-01T00:00:00Z", "source": source})
        self.scorer.score({"leads": leads, "as_of": as_of.isoformat()}, record=False)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def readiness(self) -> dict[str, Any]:
        """What `GET /mlsys/model` reports (behind the login): state, version, each step."""
        version = self.scorer.loaded_version()
        return {
            "status": "ready" if self._done.is_set() else "loading",
            "champion_loaded": version is not None,
            "model_version": version,
            "steps": dict(self.steps),
            "warm_up_seconds": self.seconds,
        }

    def public_readiness(self) -> tuple[int, dict[str, Any]]:
        """What the unauthenticated probe gets: 200 once warmed up, 503 before; no version,
        no paths, nothing beyond whether the champion is loaded."""
        state = self.readiness()
        answer = {"status": state["status"], "champion_loaded": state["champion_loaded"]}
        return (200 if state["status"] == "ready" else 503), answer
