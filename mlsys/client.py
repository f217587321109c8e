"""A small client of on-demand scoring over Airflow's REST API (standard library only).

    from mlsys.client import Client
    api = Client("http://localhost:8080", username="admin", password="...")
    api.score([{"lead_id": 42}])                  # through the score_on_demand DAG
    api.score([{"lead_id": 42}], sync=True)       # POST /mlsys/score on the api-server
    api.model()                                   # GET /mlsys/model

The DAG path: `POST /auth/token` for a JWT, a check that the DAG is not paused (a run of a
paused DAG stays queued for good: the client says so at once, naming the call that unpauses
it), `POST /api/v2/dags/score_on_demand/dagRuns`, poll the run, then read the `score` task's
XCom `return_value`, or its XCom `error` (the structured error the task pushes before it
fails) when the run failed.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DAG_ID = "score_on_demand"
TASK_ID = "score"
FINISHED = {"success", "failed"}
UNPAUSE = f'PATCH /api/v2/dags/{DAG_ID} with {{"is_paused": false}}'
# How long a run may sit queued before the client looks whether the DAG was paused meanwhile.
PAUSE_CHECK_SECONDS = 5.0


class ClientError(RuntimeError):
    """The API refused or failed. `error` is the server's structured error when it sent one:
    `{"error": code, "message": ..., "details": {...}}`."""

    def __init__(self, message: str, *, status: int | None = None, error: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.error = error or {}

    @property
    def code(self) -> str:
        return str(self.error.get("error", "http_error" if self.status else "client_error"))


class Client:
    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        poll_interval: float = 0.2,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ClientError(f"the API URL must start with http:// or https://, got {base_url!r}")
        if token is None and (username is None or password is None):
            raise ClientError("give a token, or a username and a password for POST /auth/token")
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self._token = token
        self.timeout = timeout
        self.poll_interval = poll_interval

    # -- HTTP ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            headers = {"Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            if auth:
                headers["Authorization"] = f"Bearer {self.token()}"
            # http(s) only: the constructor refuses any other scheme.
            req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)  # noqa: S310 - http(s) only
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - http(s) only
                    raw = resp.read()
                    return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                payload = _json_or_none(exc.read())
                # An expired token: log in again once (only when we hold a password).
                if exc.code == 401 and auth and attempt == 1 and self.password is not None:
                    self._token = None
                    continue
                error = payload if isinstance(payload, dict) and "error" in payload else None
                plain = payload.get("detail") if isinstance(payload, dict) else None
                detail = (error or {}).get("message") or plain or exc.reason
                raise ClientError(
                    f"{method} {path} -> HTTP {exc.code}: {detail}", status=exc.code, error=error
                ) from None
            except urllib.error.URLError as exc:
                raise ClientError(f"cannot reach {self.base_url}: {exc.reason}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def token(self) -> str:
        if self._token is None:
            answer = self._request(
                "POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False
            )
            self._token = str(answer["access_token"])
        return self._token

    # -- scoring ---------------------------------------------------------------------------

    @staticmethod
    def request_body(leads: list[dict[str, Any]], as_of: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"leads": leads}
        if as_of is not None:
            body["as_of"] = as_of
        return body

    def score(
        self,
        leads: list[dict[str, Any]],
        *,
        as_of: str | None = None,
        sync: bool = False,
        wait: float = 300.0,
    ) -> list[dict[str, Any]]:
        """Scores in request order; raises ClientError with the server's error otherwise."""
        body = self.request_body(leads, as_of)
        if sync:
            return list(self._request("POST", "/mlsys/score", body)["results"])
        self.check_not_paused()
        run_id = self.trigger(body)
        state = self.wait(run_id, wait)
        return self.result(run_id, state)

    def check_not_paused(self, run_id: str | None = None) -> None:
        """Raise ClientError `dag_paused` when score_on_demand is paused: its runs would stay
        queued until someone unpauses it. A token that may not read the DAG skips the check."""
        try:
            dag = self._request("GET", f"/api/v2/dags/{DAG_ID}")
        except ClientError as exc:
            if exc.status == 404:
                raise ClientError(
                    f"the {DAG_ID} DAG is not deployed on {self.base_url} (GET /api/v2/dags/{DAG_ID} -> 404)",
                    status=404,
                    error={"error": "dag_not_found", "message": str(exc), "details": {}},
                ) from None
            if exc.status == 403:
                return
            raise
        if not dag.get("is_paused"):
            return
        waiting = f" (run {run_id} is queued behind the pause)" if run_id else ""
        message = (
            f"the {DAG_ID} DAG is paused, so a run would stay queued{waiting}: unpause it with "
            f"{UNPAUSE} (or `airflow dags unpause {DAG_ID}`, or the toggle in the UI)"
        )
        unpause = {"method": "PATCH", "path": f"/api/v2/dags/{DAG_ID}", "body": {"is_paused": False}}
        raise ClientError(
            message, error={"error": "dag_paused", "message": message, "details": {"unpause": unpause}}
        )

    def trigger(self, conf: dict[str, Any]) -> str:
        run = self._request("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def run_path(self, run_id: str) -> str:
        return f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}"

    def wait(self, run_id: str, timeout: float = 300.0) -> str:
        start = time.monotonic()
        deadline = start + timeout
        next_pause_check = start + PAUSE_CHECK_SECONDS
        while True:
            state = str(self._request("GET", self.run_path(run_id))["state"])
            if state in FINISHED:
                return state
            now = time.monotonic()
            if state == "queued" and now > next_pause_check:
                # Paused after the run was created (or by another client): say so now.
                self.check_not_paused(run_id)
                next_pause_check = now + PAUSE_CHECK_SECONDS
            if now > deadline:
                raise ClientError(f"run {run_id} still {state} after {timeout:.0f}s")
            time.sleep(self.poll_interval)

    def xcom(self, run_id: str, key: str) -> Any:
        entry = self._request("GET", f"{self.run_path(run_id)}/taskInstances/{TASK_ID}/xcomEntries/{key}")
        value = entry["value"]
        # The entry holds the value as stored: JSON text for what the task returned.
        return json.loads(value) if isinstance(value, str) else value

    def result(self, run_id: str, state: str) -> list[dict[str, Any]]:
        if state == "success":
            return list(self.xcom(run_id, "return_value"))
        try:
            error = self.xcom(run_id, "error")
        except ClientError as exc:
            if exc.status != 404:
                raise
            raise ClientError(
                f"run {run_id} {state} without a scoring error: see the task log at "
                f"{self.run_path(run_id)}/taskInstances/{TASK_ID}/logs/1",
                error={"error": "run_failed", "message": f"run {run_id} {state}", "details": {}},
            ) from None
        raise ClientError(f"{error.get('error')}: {error.get('message')}", error=error)

    def model(self) -> dict[str, Any]:
        return dict(self._request("GET", "/mlsys/model"))


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
