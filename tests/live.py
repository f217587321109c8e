"""What the tests that start real servers share: free ports, JSON over HTTP, child processes
in process groups of their own (killed as a group, whatever the test's outcome), waiting, and
a webhook receiver that records what is posted to it."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    method: str, url: str, body: Any = None, token: str | None = None, basic: tuple[str, str] | None = None
) -> tuple[int, Any]:
    """(status, parsed JSON body, or the text when it is not JSON) without raising on 4xx/5xx.
    `token`: a bearer token (Airflow); `basic`: (user, password) for HTTP basic auth (MLflow)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(basic).encode()).decode()
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


@dataclass
class Procs:
    """Child processes, each in its own process group, with a log file each."""

    logdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - closed below
        try:
            self.procs[name] = subprocess.Popen(
                args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.logdir
            )
        finally:
            log.close()

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return f"--- {name}\n" + "\n".join(text.splitlines()[-lines:])

    def tails(self) -> str:
        return "\n".join(self.tail(name) for name in self.procs)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        # Children (executor workers, task processes, uvicorn workers) share the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)


def wait_for(what: str, probe: Any, timeout: float, procs: Procs, interval: float = 0.5) -> Any:
    """Call `probe` until it returns something truthy; fail with the logs when a process died."""
    deadline = time.monotonic() + timeout
    while True:
        procs.check_alive()
        with contextlib.suppress(OSError, urllib.error.URLError, ConnectionError):
            result = probe()
            if result:
                return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s\n{procs.tails()}")
        time.sleep(interval)


class WebhookReceiver:
    """An HTTP server on a free loopback port that answers 200 to every POST and keeps its JSON
    body (Alertmanager's webhook, mlsys' Airflow notifier). A context manager."""

    def __init__(self) -> None:
        self.posts: list[Any] = []
        self._condition = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._condition:
                    receiver.posts.append(json.loads(body))
                    receiver._condition.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received(self, since: int = 0) -> list[Any]:
        with self._condition:
            return list(self.posts[since:])

    def wait_for(self, what: str, match: Callable[[Any], bool], timeout: float, since: int = 0) -> Any:
        """The first post from index `since` on that `match`es, waiting at most `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for post in self.posts[since:]:
                    if match(post):
                        return post
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no post with {what} after {timeout:.0f}s: {self.posts}")
                self._condition.wait(left)
