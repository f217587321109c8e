"""Alerts reach a person, live: the stack's own rules (docker/prometheus/alerts.yml) and routing
(docker/alertmanager/alertmanager.yml, rendered by its entrypoint) run by Debian's `prometheus`
and `prometheus-alertmanager`, delivering to a webhook receiver in this process.

* `amtool check-config` accepts the rendered config; `amtool config routes test` sends a
  critical alert to `oncall` (mail + webhook) and a warning to `team` (webhook).
* A metrics source serves what statsd-exporter makes of a failed gate
  (`mlsys.validation.raw_activities.success` = 0 through docker/statsd/mapping.yml):
  DataValidationGateFailed fires and the webhook gets it with the rule's labels and
  annotations, and a mail reaches the SMTP relay (logged in with the password from the 0600
  file); the gate passes again and both get the resolution; a silence made with the documented
  `amtool silence add` (Alertmanager's v2 API) keeps the next firing from being sent.
* Alerts posted to Alertmanager's API: a critical alert holds back the warning of its
  `condition`, not an unrelated warning.

What the test changes, and only that: ports, the receiver URL, the SMTP relay (a sink in this
process, without TLS, so `smtp_require_tls` is false here), Prometheus' scrape target and 1 s
scrape/evaluation intervals, Alertmanager's group_wait/group_interval (1 s). About 15 s.
Missing Debian packages skip the module on a laptop and FAIL on CI (CI=true).
"""

from __future__ import annotations

import base64
import email
import os
import re
import shlex
import shutil
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_observability import Mapper
from tests.live import Procs, WebhookReceiver, free_port, http, wait_for
from tests.stack.test_stack_static import template_variables

REPO = Path(__file__).resolve().parents[2]
ALERTMANAGER_DIR = REPO / "docker" / "alertmanager"
PROMETHEUS_DIR = REPO / "docker" / "prometheus"
MAPPING = REPO / "docker" / "statsd" / "mapping.yml"
DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"
GATE_ALERT = "DataValidationGateFailed"
# A suite of the GX context; its gauge as mlsys.validation.report_metrics sends it.
SUITE = "raw_activities"
STATSD_GAUGE = f"mlsys.validation.{SUITE}.success"
WAIT = 30.0  # seconds: a notification arrives within ~3 s here; this bounds a slow machine

# The metrics source: serves a file as Prometheus' text format (rewritten by the test).
EXPORTER = r"""
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port, path = int(sys.argv[1]), sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        with open(path, "rb") as handle:
            body = handle.read()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is missing: `make test` installs it via .ci/install-system-deps.sh"
        if on_ci():
            pytest.fail(message)
        pytest.skip(message)
    return str(path)


def smtp_and_webhook_env(webhook_url: str, smarthost: str = "smtp.example.com:587") -> dict[str, str]:
    """Values for every variable the template names."""
    return {
        "ALERT_EMAIL_TO": "oncall@example.com",
        "ALERT_EMAIL_FROM": "alertmanager@example.com",
        "ALERT_SMTP_SMARTHOST": smarthost,
        "ALERT_SMTP_USERNAME": "alertmanager",
        "ALERT_SMTP_PASSWORD": 'a "quoted" pass\\word $HOME',  # pragma: allowlist secret
        "ALERT_WEBHOOK_URL": webhook_url,
    }


def render(tmp: Path, env: dict[str, str], template: Path = ALERTMANAGER_DIR / "alertmanager.yml") -> Path:
    """The entrypoint's rendering only (ALERTMANAGER_RENDER_ONLY=1), as the container does it."""
    config = tmp / "rendered" / "alertmanager.yml"
    done = subprocess.run(
        ["sh", str(ALERTMANAGER_DIR / "entrypoint.sh")],
        env={
            "PATH": os.environ["PATH"],
            **env,
            "ALERTMANAGER_TEMPLATE": str(template),
            "ALERTMANAGER_CONFIG": str(config),
            "ALERTMANAGER_RENDER_ONLY": "1",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return config


def alert_rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


# -- the config, checked by amtool -----------------------------------------------------------


def documented_env() -> dict[str, str]:
    """The ALERT_* lines docs/deployment.md tells people to put in .env."""
    lines = re.findall(r"^(ALERT_[A-Z_]+)=(.*)$", DEPLOYMENT_DOC.read_text(), flags=re.MULTILINE)
    return dict(lines)


def test_the_documented_settings_are_what_the_test_renders_and_delivers_with() -> None:
    documented = documented_env()
    tested = smtp_and_webhook_env(documented["ALERT_WEBHOOK_URL"])
    assert set(documented) == set(tested) == template_variables(ALERTMANAGER_DIR / "alertmanager.yml")
    # Copied from what the tests configure: all but the password (a placeholder there).
    assert documented["ALERT_SMTP_PASSWORD"] == "CHANGE_ME"  # pragma: allowlist secret
    assert {k: v for k, v in documented.items() if k != "ALERT_SMTP_PASSWORD"} == {
        k: v for k, v in tested.items() if k != "ALERT_SMTP_PASSWORD"
    }


def test_amtool_checks_the_rendered_config(tmp_path: Path) -> None:
    amtool = binary("amtool")
    env = smtp_and_webhook_env(documented_env()["ALERT_WEBHOOK_URL"])
    config = render(tmp_path, env)
    done = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "1 inhibit rules" in done.stdout
    # The password is in a 0600 file beside the config, never in the config itself.
    text = config.read_text()
    assert env["ALERT_SMTP_PASSWORD"] not in text
    secret = config.parent / "ALERT_SMTP_PASSWORD"
    assert secret.read_text() == env["ALERT_SMTP_PASSWORD"]
    assert secret.stat().st_mode & 0o777 == 0o600
    assert f'smtp_auth_password_file: "{secret}"' in text
    # Routing: critical pages (mail + webhook), warning goes to the webhook only.
    for labels, receiver in (
        (["alertname=DataValidationGateFailed", "severity=critical"], "oncall"),
        (["alertname=FeatureDriftDetected", "severity=warning"], "team"),
    ):
        done = subprocess.run(
            [
                amtool,
                "config",
                "routes",
                "test",
                f"--config.file={config}",
                f"--verify.receivers={receiver}",
                *labels,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and done.stdout.strip() == receiver, done.stdout + done.stderr


def test_the_entrypoint_refuses_what_would_break_the_config(tmp_path: Path) -> None:
    env = smtp_and_webhook_env('https://hooks.example.com/a"b')
    done = subprocess.run(
        ["sh", str(ALERTMANAGER_DIR / "entrypoint.sh")],
        env={"PATH": os.environ["PATH"], **env, "ALERTMANAGER_CONFIG": str(tmp_path / "am.yml")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "ALERT_WEBHOOK_URL holds a quote" in done.stderr and not (tmp_path / "am.yml").exists()


def test_every_threshold_pair_shares_a_condition() -> None:
    """Inhibition needs the critical and the warning of one measure to carry the same
    `condition`; an alert without a pair carries none (it would inhibit or be inhibited)."""
    rules = alert_rules()
    by_condition: dict[str, set[str]] = {}
    for rule in rules.values():
        labels = rule.get("labels") or {}
        if "condition" in labels:
            by_condition.setdefault(labels["condition"], set()).add(labels["severity"])
    assert len(by_condition) >= 4
    for condition, severities in by_condition.items():
        assert severities == {"critical", "warning"}, condition


# -- live: Prometheus -> Alertmanager -> webhook ---------------------------------------------


class SmtpSink(socketserver.ThreadingTCPServer):
    """An SMTP relay that accepts every mail (and any AUTH PLAIN login) and keeps it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.mails: list[email.message.Message] = []
        self.logins: list[tuple[str, str]] = []
        super().__init__(("127.0.0.1", 0), SmtpSession)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def smarthost(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class SmtpSession(socketserver.StreamRequestHandler):
    server: SmtpSink

    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 sink ESMTP")
        while line := self.rfile.readline():
            command = line.decode(errors="replace").strip()
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME")
            elif verb == "AUTH":
                _, user, password = base64.b64decode(command.split()[-1]).decode().split("\0")
                self.server.logins.append((user, password))
                self.reply("235 2.7.0 accepted")
            elif verb == "DATA":
                self.reply("354 go on")
                lines = []
                while (data := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                    lines.append(data[1:] if data.startswith(b"..") else data)
                self.server.mails.append(email.message_from_bytes(b"".join(lines)))
                self.reply("250 2.0.0 kept")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 OK")


@dataclass
class AlertStack:
    root: Path
    procs: Procs
    webhook: WebhookReceiver
    smtp: SmtpSink
    metrics_file: Path
    metrics_line: Callable[[int], str]
    prometheus: str
    alertmanager: str

    def serve_gate(self, success: int) -> None:
        tmp = self.metrics_file.with_suffix(".tmp")
        tmp.write_text(self.metrics_line(success) + "\n")
        os.replace(tmp, self.metrics_file)


def exporter_line(success: int) -> str:
    """The series statsd-exporter makes of the gate's gauge, as docker/statsd/mapping.yml maps it."""
    mapped = Mapper(MAPPING).map(STATSD_GAUGE, "g")
    assert mapped is not None, f"{STATSD_GAUGE} is not mapped"
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(mapped.labels.items()))
    return f"{mapped.name}{{{labels}}} {success}"


def prometheus_config(exporter: str, alertmanager: str) -> dict[str, Any]:
    """The stack's prometheus.yml: its rules, external labels and alerting block, with this
    machine's targets and 1 s intervals."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    (manager,) = config["alerting"]["alertmanagers"]
    assert manager["static_configs"] == [{"targets": ["alertmanager:9093"]}]
    manager["static_configs"] = [{"targets": [alertmanager]}]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "statsd-exporter"]
    config["scrape_configs"] = [{"job_name": job["job_name"], "static_configs": [{"targets": [exporter]}]}]
    return config


def fast_template(tmp: Path) -> Path:
    """The stack's template with 1 s grouping (only the timers change; an hour between repeats
    keeps a still-firing alert from being sent twice during the test) and plain SMTP."""
    template = yaml.safe_load((ALERTMANAGER_DIR / "alertmanager.yml").read_text())
    assert template["global"]["smtp_require_tls"] is True
    template["global"]["smtp_require_tls"] = False
    for route in [template["route"], *template["route"].get("routes", [])]:
        route |= {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
    path = tmp / "alertmanager.template.yml"
    path.write_text(yaml.safe_dump(template, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def alert_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertStack]:
    prometheus_bin = binary("prometheus")
    alertmanager_bin = binary("prometheus-alertmanager")
    root = tmp_path_factory.mktemp("alerts")
    procs = Procs(root)
    webhook = WebhookReceiver()
    smtp = SmtpSink()
    try:
        url = webhook.url
        exporter_port, prometheus_port, alertmanager_port = free_port(), free_port(), free_port()
        metrics_file = root / "metrics"
        stack = AlertStack(
            root,
            procs,
            webhook,
            smtp,
            metrics_file,
            exporter_line,
            f"http://127.0.0.1:{prometheus_port}",
            f"http://127.0.0.1:{alertmanager_port}",
        )
        stack.serve_gate(1)
        procs.spawn("exporter", [sys.executable, "-c", EXPORTER, str(exporter_port), str(metrics_file)], {})
        # The container's command line (docker-compose.yaml), with this machine's binary and port.
        procs.spawn(
            "alertmanager",
            [
                "sh",
                str(ALERTMANAGER_DIR / "entrypoint.sh"),
                f"--storage.path={root / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{alertmanager_port}",
                "--cluster.listen-address=",
            ],
            {
                "PATH": os.environ["PATH"],
                **smtp_and_webhook_env(url, smtp.smarthost),
                "ALERTMANAGER_TEMPLATE": str(fast_template(root)),
                "ALERTMANAGER_CONFIG": str(root / "rendered" / "alertmanager.yml"),
                "ALERTMANAGER_BIN": alertmanager_bin,
            },
        )
        config = root / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(prometheus_config(f"127.0.0.1:{exporter_port}", f"127.0.0.1:{alertmanager_port}"))
        )
        procs.spawn(
            "prometheus",
            [
                prometheus_bin,
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
            {"PATH": os.environ["PATH"]},
        )
        for name, base in (("alertmanager", stack.alertmanager), ("prometheus", stack.prometheus)):
            wait_for(name, lambda b=base: http("GET", f"{b}/-/ready")[0] == 200, 60, procs)
        yield stack
    finally:
        procs.stop_all()
        webhook.stop()
        smtp.stop()


# docs/deployment.md ("Silence an alert"): run as written, against this test's Alertmanager.
SILENCE_COMMAND = (
    "amtool --alertmanager.url=http://localhost:9093 silence add alertname=DataValidationGateFailed "
    '--duration=2h --comment="landing tables being reloaded"'
)


def silence(stack: AlertStack) -> str:
    """The documented amtool command (amtool talks to Alertmanager's v2 API); the silence's id."""
    assert SILENCE_COMMAND in DEPLOYMENT_DOC.read_text()
    command = shlex.split(SILENCE_COMMAND.replace("http://localhost:9093", stack.alertmanager))
    done = subprocess.run([binary("amtool"), *command[1:]], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    silence_id = done.stdout.strip()
    status, body = http("GET", f"{stack.alertmanager}/api/v2/silence/{silence_id}")
    assert status == 200 and body["status"]["state"] == "active", body
    assert body["matchers"] == [{"name": "alertname", "value": GATE_ALERT, "isRegex": False, "isEqual": True}]
    assert body["comment"] == "landing tables being reloaded"
    return silence_id


def am_alert(stack: AlertStack, alertname: str) -> dict[str, Any] | None:
    status, alerts = http("GET", f"{stack.alertmanager}/api/v2/alerts?filter=alertname%3D%22{alertname}%22")
    assert status == 200, alerts
    return alerts[0] if alerts else None


def test_a_failed_gate_is_delivered_resolved_and_silenced(alert_stack: AlertStack) -> None:
    stack, webhook = alert_stack, alert_stack.webhook
    rule = alert_rules()[GATE_ALERT]

    # Firing: the gate's gauge drops to 0.
    stack.serve_gate(0)
    firing = webhook.wait_for(f"{GATE_ALERT} firing", lambda p: p["status"] == "firing", WAIT)
    assert firing["receiver"] == "oncall"  # critical: mail and webhook
    assert firing["groupLabels"] == {"alertname": GATE_ALERT, "severity": "critical"}
    (alert,) = firing["alerts"]
    assert alert["status"] == "firing"
    labels = alert["labels"]
    assert labels["alertname"] == GATE_ALERT and labels["severity"] == rule["labels"]["severity"]
    assert labels["suite"] == SUITE and labels["job"] == "statsd-exporter"
    assert labels["project"] == "mlsys"  # the stack's external label
    expected = {key: text.replace("{{ $labels.suite }}", SUITE) for key, text in rule["annotations"].items()}
    assert alert["annotations"] == expected
    assert f"Great Expectations gate failed for {SUITE}" == alert["annotations"]["summary"]
    # And the mail, logged in with the password Alertmanager read from its file.
    env = smtp_and_webhook_env("")
    wait_for("the alert mail", lambda: stack.smtp.mails, WAIT, stack.procs)
    mail = stack.smtp.mails[0]
    assert mail["To"] == env["ALERT_EMAIL_TO"] and mail["From"] == env["ALERT_EMAIL_FROM"]
    assert f"[FIRING:1] {GATE_ALERT}" in mail["Subject"]
    assert stack.smtp.logins[0] == (env["ALERT_SMTP_USERNAME"], env["ALERT_SMTP_PASSWORD"])

    # Resolved: the gate passes again.
    seen = len(webhook.received())
    stack.serve_gate(1)
    resolved = webhook.wait_for(
        f"{GATE_ALERT} resolved", lambda p: p["status"] == "resolved", WAIT, since=seen
    )
    assert [a["status"] for a in resolved["alerts"]] == ["resolved"]
    assert resolved["alerts"][0]["labels"] == labels
    wait_for("the resolved mail", lambda: len(stack.smtp.mails) == 2, WAIT, stack.procs)
    assert "[RESOLVED]" in stack.smtp.mails[1]["Subject"]

    # Silenced: the same alert fires again under a silence made with amtool (the v2 API).
    silence_id = silence(stack)
    seen = len(webhook.received())
    stack.serve_gate(0)

    def suppressed() -> bool:
        alert = am_alert(stack, GATE_ALERT)
        return bool(
            alert
            and alert["status"]["state"] == "suppressed"
            and alert["status"]["silencedBy"] == [silence_id]
        )

    wait_for("the silenced alert at Alertmanager", suppressed, WAIT, stack.procs)
    # Unsilenced, it would be sent 1 s (group_wait) after it arrived; give it several times that.
    time.sleep(5)
    assert webhook.received(since=seen) == [] and len(stack.smtp.mails) == 2

    # The documented query lists it; expiring it lets the still-firing alert through.
    amtool = [binary("amtool"), f"--alertmanager.url={stack.alertmanager}", "silence"]
    listed = subprocess.run([*amtool, "query"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and silence_id in listed.stdout, listed.stdout + listed.stderr
    expired = subprocess.run([*amtool, "expire", silence_id], capture_output=True, text=True, timeout=60)
    assert expired.returncode == 0, expired.stderr
    again = webhook.wait_for(
        f"{GATE_ALERT} after the silence", lambda p: p["status"] == "firing", WAIT, since=seen
    )
    assert again["alerts"][0]["labels"] == labels


def test_a_critical_alert_holds_back_the_warning_of_its_condition(alert_stack: AlertStack) -> None:
    stack, webhook = alert_stack, alert_stack.webhook
    rules = alert_rules()
    critical = next(
        n for n, r in rules.items() if r["labels"].get("condition") and r["labels"]["severity"] == "critical"
    )
    condition = rules[critical]["labels"]["condition"]
    paired = next(
        n
        for n, r in rules.items()
        if r["labels"].get("condition") == condition and r["labels"]["severity"] == "warning"
    )
    unrelated = "FeatureDriftDetected"
    assert (
        "condition" not in rules[unrelated]["labels"] and rules[unrelated]["labels"]["severity"] == "warning"
    )
    seen = len(webhook.received())
    alerts = [
        {
            "labels": {"alertname": name, **rules[name]["labels"], "project": "mlsys"},
            "annotations": {"summary": rules[name]["annotations"]["summary"]},
        }
        for name in (critical, paired, unrelated)
    ]
    status, body = http("POST", f"{stack.alertmanager}/api/v2/alerts", alerts)
    assert status == 200, body

    page = webhook.wait_for(
        critical, lambda p: p["commonLabels"].get("alertname") == critical, WAIT, since=seen
    )
    assert page["receiver"] == "oncall"
    team = webhook.wait_for(
        unrelated, lambda p: p["commonLabels"].get("alertname") == unrelated, WAIT, since=seen
    )
    assert team["receiver"] == "team"  # a warning: webhook only, and not held back
    held = am_alert(stack, paired)
    assert held is not None and held["status"]["state"] == "suppressed" and held["status"]["inhibitedBy"]
    time.sleep(3)
    posted = {a["labels"]["alertname"] for post in webhook.received(since=seen) for a in post["alerts"]}
    assert paired not in posted and {critical, unrelated} <= posted


# docs/deployment.md ("Point it at a real mailbox and channel"): a test alert, run as written
# against this test's Alertmanager.
TEST_ALERT_COMMAND = (
    "amtool --alertmanager.url=http://localhost:9093 alert add alertname=DeliveryTest severity=warning"
)


def test_the_documented_test_alert_reaches_the_webhook(alert_stack: AlertStack) -> None:
    assert TEST_ALERT_COMMAND in DEPLOYMENT_DOC.read_text()
    seen = len(alert_stack.webhook.received())
    command = shlex.split(TEST_ALERT_COMMAND.replace("http://localhost:9093", alert_stack.alertmanager))
    done = subprocess.run([binary("amtool"), *command[1:]], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    post = alert_stack.webhook.wait_for(
        "DeliveryTest", lambda p: p["commonLabels"].get("alertname") == "DeliveryTest", WAIT, since=seen
    )
    assert post["receiver"] == "team" and post["status"] == "firing"
