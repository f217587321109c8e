"""Observability end to end, without the services: the StatsD names mlsys and Airflow really
send (caught by a UDP listener), the statsd_exporter mapping that labels them (its glob
semantics re-implemented here: no exporter binary on this machine), the Prometheus rules and
their promtool unit tests, the Grafana dashboards, and the log format."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from mlsys import logs, metrics
from mlsys.settings import REPO_ROOT, Settings

AS_OF = date(2026, 6, 1)
MAPPING = REPO_ROOT / "docker" / "statsd" / "mapping.yml"
PROMETHEUS = REPO_ROOT / "docker" / "prometheus"
GRAFANA = REPO_ROOT / "docker" / "grafana"
# Metrics Prometheus has without the mapping: its own `up`, the exporters' process metrics
# (statsd_exporter's start time backs NightlyPartitionMissing) and blackbox's probe result.
OWN_METRICS = {"up", "process_start_time_seconds", "probe_success"}


# --------------------------------------------------------------------------------------------
# statsd_exporter's mapper, as documented in its README and pkg/mapper
# --------------------------------------------------------------------------------------------

# The exporter's own validation (pkg/mapper/mapper.go).
_STATSD_SEGMENT = r"[a-zA-Z_](-?[a-zA-Z0-9_])*"
_GLOB_LINE = re.compile(rf"^(\*\.|{_STATSD_SEGMENT}\.)+(\*|{_STATSD_SEGMENT})$")
_TEMPLATE = r"(\$\{?\d+\}?)"
_METRIC_NAME = re.compile(rf"^([a-zA-Z_]|{_TEMPLATE})([a-zA-Z0-9_]|{_TEMPLATE})*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]+$")
_STATSD_FAMILY = {"c": "counter", "g": "gauge", "ms": "observer", "h": "observer", "d": "observer"}


@dataclass
class Rule:
    match: str
    regex: re.Pattern[str]
    match_type: str
    action: str
    name: str
    metric_type: str | None
    labels: dict[str, str]
    observer_type: str
    buckets: list[float] = field(default_factory=list)

    def produces(self) -> set[str]:
        """The Prometheus series names this rule can create."""
        if self.action == "drop":
            return set()
        if self.metric_type == "observer":
            suffixes = (
                ("_bucket", "_sum", "_count") if self.observer_type == "histogram" else ("", "_sum", "_count")
            )
            return {self.name + s for s in suffixes}
        return {self.name}


@dataclass
class Mapped:
    rule: Rule
    name: str
    labels: dict[str, str]


def _expand(template: str, groups: tuple[str, ...]) -> str:
    return re.sub(r"\$\{?(\d+)\}?", lambda m: groups[int(m.group(1)) - 1], template)


class Mapper:
    """Glob rules in file order, first match wins (`glob_disable_ordering: false`); `*` is one
    dot-free segment; regex rules only after every glob rule; `match_metric_type` limits a
    rule to counters, gauges or observers (timers and histograms)."""

    def __init__(self, path: Path) -> None:
        raw = yaml.safe_load(path.read_text())
        defaults = raw.get("defaults") or {}
        assert defaults.get("glob_disable_ordering", False) is False, "the tests assume ordered glob rules"
        self.rules: list[Rule] = []
        for i, m in enumerate(raw["mappings"]):
            where = f"mapping {i} ({m.get('match')!r})"
            match_type = m.get("match_type", defaults.get("match_type", "glob"))
            assert match_type in ("glob", "regex"), where
            if match_type == "glob":
                assert _GLOB_LINE.match(m["match"]), f"{where}: not a valid glob line"
                regex = metrics.glob_regex(m["match"])
                regex = re.compile(regex.pattern.replace("[^.]+", "([^.]+)"))
            else:
                regex = re.compile(m["match"])
            assert m.get("name"), f"{where}: every mapping needs a name"
            assert _METRIC_NAME.match(m["name"]), f"{where}: invalid metric name"
            labels = {str(k): str(v) for k, v in (m.get("labels") or {}).items()}
            for key, value in labels.items():
                assert _LABEL_NAME.match(key), f"{where}: invalid label name {key!r}"
                refs = [int(n) for n in re.findall(r"\$\{?(\d+)\}?", value)]
                assert all(1 <= n <= regex.groups for n in refs), (
                    f"{where}: label {key} refers past the captures"
                )
            action = m.get("action", "map")
            assert action in ("map", "drop"), where
            metric_type = m.get("match_metric_type")
            assert metric_type in (None, "counter", "gauge", "observer"), where
            if action == "map":
                # Our rule, not the exporter's: the type decides which series names exist.
                assert metric_type, f"{where}: state match_metric_type so the produced names are known"
            observer_type = m.get("observer_type", defaults.get("observer_type", "summary"))
            assert observer_type in ("histogram", "summary"), where
            buckets = (m.get("histogram_options") or defaults.get("histogram_options") or {}).get(
                "buckets", []
            )
            assert buckets == sorted(buckets) and len(set(buckets)) == len(buckets), f"{where}: buckets"
            self.rules.append(
                Rule(
                    m["match"],
                    regex,
                    match_type,
                    action,
                    m["name"],
                    metric_type,
                    labels,
                    observer_type,
                    buckets,
                )
            )
        self.rules.sort(key=lambda r: r.match_type != "glob")  # stable: file order within each kind

    def map(self, name: str, statsd_type: str) -> Mapped | None:
        """The rule a StatsD metric falls under (its Prometheus name and labels), or None when no
        rule matches and the exporter would only escape the name."""
        family = _STATSD_FAMILY[statsd_type]
        for rule in self.rules:
            if rule.metric_type not in (None, family):
                continue
            found = rule.regex.search(name) if rule.match_type == "regex" else rule.regex.match(name)
            if found:
                groups = found.groups()
                labels = {k: _expand(v, groups) for k, v in rule.labels.items()}
                return Mapped(rule, _expand(rule.name, groups), labels)
        return None

    def produced_names(self) -> set[str]:
        names: set[str] = set()
        for rule in self.rules:
            assert "$" not in rule.name, "names built from captures are not checked against dashboards"
            names |= rule.produces()
        return names


@pytest.fixture(scope="module")
def mapper() -> Mapper:
    return Mapper(MAPPING)


def _sample(pattern: str, filler: str = "x_1") -> str:
    return ".".join(filler if part == "*" else part for part in pattern.split("."))


_STATSD_OF_CONTRACT = {"gauge": "g", "counter": "c", "timer": "ms", "histogram": "h"}


def test_mapping_is_valid_for_the_exporter(mapper: Mapper) -> None:
    """Same name, same label names and type: the exporter rejects samples that disagree."""
    seen: dict[str, tuple[str | None, frozenset[str]]] = {}
    for rule in mapper.rules:
        if rule.action == "drop":
            continue
        shape = (rule.metric_type, frozenset(rule.labels))
        assert seen.setdefault(rule.name, shape) == shape, f"{rule.name} is mapped with two shapes"


def test_every_contract_metric_is_labelled_by_the_mapping(mapper: Mapper) -> None:
    prefix = Settings.from_env().statsd_prefix
    assert prefix == "mlsys", "docker/statsd/mapping.yml is written for the prefix mlsys"
    for name, kind in metrics.CONTRACT.items():
        mapped = mapper.map(f"mlsys.{_sample(name)}", _STATSD_OF_CONTRACT[kind])
        assert mapped is not None, f"mlsys.{name} ({kind}) matches no rule in {MAPPING.name}"
        assert mapped.rule.action == "map", f"mlsys.{name} is dropped"
        assert mapped.name.startswith("mlsys_")
        assert "x_1" in mapped.labels.values() or "*" not in name, f"{name}: its variable part is lost"


def test_contract_labels_as_the_design_says(mapper: Mapper) -> None:
    def mapped(name: str, kind: str) -> tuple[str, dict[str, str], str | None]:
        m = mapper.map(name, kind)
        assert m is not None, name
        return m.name, m.labels, m.rule.observer_type if m.rule.metric_type == "observer" else None

    assert mapped("mlsys.predictions.error", "c") == ("mlsys_predictions_total", {"status": "error"}, None)
    assert mapped("mlsys.predictions.success", "c")[1] == {"status": "success"}
    assert mapped("mlsys.prediction.duration", "ms") == ("mlsys_prediction_duration_seconds", {}, "histogram")
    assert mapped("mlsys.prediction.batch_size", "h") == ("mlsys_prediction_batch_size", {}, "histogram")
    assert mapped("mlsys.drift.psi.n_activities_7d", "g") == (
        "mlsys_drift_psi",
        {"feature": "n_activities_7d"},
        None,
    )
    assert mapped("mlsys.validation.raw_leads.success", "g")[:2] == (
        "mlsys_validation_suite_success",
        {"suite": "raw_leads"},
    )
    assert mapped("mlsys.validation.success", "g")[0] == "mlsys_validation_success"
    assert mapped("mlsys.realized.roc_auc", "g")[0] == "mlsys_realized_roc_auc"
    assert mapped("airflow.dag.score_leads.publish.duration", "ms")[:2] == (
        "airflow_task_duration",
        {"dag_id": "score_leads", "task_id": "publish"},
    )
    assert mapped("airflow.dagrun.duration.failed.score_leads", "ms")[:2] == (
        "airflow_dagrun_duration",
        {"dag_id": "score_leads", "state": "failed"},
    )
    assert mapped("airflow.operator_failures_PythonOperator", "c")[:2] == (
        "airflow_operator_failures",
        {"operator": "PythonOperator"},
    )
    assert mapped("airflow.operator_successes__PythonDecoratedOperator", "c")[1] == {
        "operator": "PythonDecoratedOperator"
    }
    # The latency alerts' thresholds are bucket boundaries, so p95 > 1 s and p99 > 2 s are exact.
    latency = mapper.map("mlsys.prediction.duration", "ms")
    assert latency is not None and {1, 2} <= set(latency.rule.buckets)
    batch = mapper.map("mlsys.prediction.batch_size", "h")
    assert batch is not None and max(batch.rule.buckets) >= 100  # MAX_LEADS_PER_REQUEST


def _airflow_registry() -> list[dict[str, Any]]:
    spec = importlib.util.find_spec("airflow")  # its location, without the seconds an import takes
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "_shared" / "observability" / "metrics" / "metrics_template.yaml"
    return yaml.safe_load(path.read_text())["metrics"]


def test_airflow_metrics_do_not_clash_in_the_exporter(mapper: Mapper) -> None:
    """Every name Airflow's metrics registry declares, in its new and its legacy form, as the
    exporter would export it: no Prometheus name may come out with two label sets or types
    (the exporter then drops samples), and the dashboards' Airflow names come from legacy
    names, which carry dag_id and task_id in plain StatsD."""
    kinds = {"counter": "c", "gauge": "g", "timer": "ms"}
    shapes: dict[str, set[tuple[str, frozenset[str]]]] = {}
    sources: dict[str, set[str]] = {}
    for metric in _airflow_registry():
        for form in (metric["name"], metric.get("legacy_name", "-")):
            if form == "-":
                continue
            statsd = "airflow." + re.sub(r"\{[^}]+\}", "v_1", form)
            kind = kinds[metric["type"]]
            mapped = mapper.map(statsd, kind)
            if mapped is not None and mapped.rule.action == "drop":
                continue
            if mapped is None:
                name, labels = re.sub(r"[^a-zA-Z0-9_]", "_", statsd), frozenset[str]()
            else:
                name, labels = mapped.name, frozenset(mapped.labels)
            shapes.setdefault(name, set()).add((_STATSD_FAMILY[kind], labels))
            sources.setdefault(name, set()).add(statsd)
    clashes = {name: sorted(sources[name]) for name, s in shapes.items() if len(s) > 1}
    assert not clashes, f"exported under one name with different labels or types: {clashes}"
    assert ("observer", frozenset({"dag_id", "task_id"})) in shapes["airflow_task_duration"]


def _metric_calls(tree: ast.AST) -> Iterator[tuple[str, str, int]]:
    """(pattern, kind, line) of every metrics.<gauge|incr|timing|histogram|timed>(name, ...)
    call; formatted parts of an f-string name become `*`."""
    kinds = {
        "gauge": "gauge",
        "incr": "counter",
        "timing": "timer",
        "timed": "timer",
        "histogram": "histogram",
    }
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
            continue
        if node.func.attr not in kinds or not (
            isinstance(node.func.value, ast.Name) and node.func.value.id == "metrics"
        ):
            continue
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            yield arg.value, kinds[node.func.attr], node.lineno
        elif isinstance(arg, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "*" for v in arg.values)
            yield text, kinds[node.func.attr], node.lineno


def _compatible(call: str, contract: str) -> bool:
    a, b = call.split("."), contract.split(".")
    return len(a) == len(b) and all(x == y or "*" in (x, y) for x, y in zip(a, b, strict=True))


def test_every_metric_the_code_sends_is_in_the_contract() -> None:
    """A static sweep of mlsys/, dags/ and plugins/: a new metric name must be added to
    metrics.CONTRACT (and so to the mapping) in the same change."""
    families = {"gauge": "gauge", "counter": "counter", "timer": "observer", "histogram": "observer"}
    found = []
    for folder in ("mlsys", "dags", "plugins"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for pattern, kind, line in _metric_calls(ast.parse(path.read_text(), str(path))):
                found.append(pattern)
                ok = any(
                    _compatible(pattern, name) and families[kind] == families[ckind]
                    for name, ckind in metrics.CONTRACT.items()
                )
                assert ok, (
                    f"{path.relative_to(REPO_ROOT)}:{line}: {pattern} ({kind}) is not in metrics.CONTRACT"
                )
    assert "score.rows" in found and "drift.psi.*" in found  # the sweep does see the calls


# --------------------------------------------------------------------------------------------
# What really goes over the wire
# --------------------------------------------------------------------------------------------


class StatsdListener:
    """A StatsD server stand-in: a UDP socket on a free local port and a thread draining it
    (Airflow sends bursts; an undrained socket buffer would drop them)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.packets: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.packets.append(data.decode("ascii", "replace"))

    def close(self) -> None:
        time.sleep(0.2)  # datagrams already sent are in the socket buffer: let them in
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()

    def metrics(self) -> dict[str, set[str]]:
        """{name: {statsd types}} of every line received."""
        out: dict[str, set[str]] = {}
        for packet in self.packets:
            for line in packet.splitlines():
                name, _, rest = line.partition(":")
                kind = rest.split("|")[1] if rest.count("|") >= 1 else "?"
                out.setdefault(name, set()).add(kind)
        return out


def _point_airflow_stats_at(port: int | None) -> None:
    """Airflow builds its StatsD client once per process from [metrics] statsd_port: rebuild
    the core's and the task SDK's (dag.test runs both in this process) for the listener."""
    from airflow._shared.observability.metrics import stats as core_stats
    from airflow.observability.metrics import stats_utils as core_utils
    from airflow.sdk._shared.observability.metrics import stats as sdk_stats
    from airflow.sdk.observability.metrics import stats_utils as sdk_utils

    if port is None:
        os.environ.pop("AIRFLOW__METRICS__STATSD_PORT", None)
    else:
        os.environ["AIRFLOW__METRICS__STATSD_PORT"] = str(port)
    core_stats.initialize(factory=core_utils.get_stats_factory(), export_legacy_names=True)
    sdk_stats.initialize(factory=sdk_utils.get_stats_factory(), export_legacy_names=True)


@dataclass
class Received:
    nightly: dict[str, set[str]]
    on_demand: dict[str, set[str]]
    nightly_log: list[str]


@pytest.fixture(scope="module")
def received(published: Path, settings: Settings) -> Iterator[Received]:
    """A real score_leads run through Airflow and real on-demand requests, each sending to a
    listener of its own (the session's `published` fixture made the champion)."""
    from mlsys import on_demand
    from mlsys_local.demo import run_dag

    saved_port = os.environ.get("AIRFLOW__METRICS__STATSD_PORT")
    mp = pytest.MonkeyPatch()
    nightly, ondemand = StatsdListener(), StatsdListener()
    try:
        mp.setenv("MLSYS_STATSD_PORT", str(nightly.port))
        _point_airflow_stats_at(nightly.port)
        log_stream = io.StringIO()
        root = logging.getLogger()
        level = root.level
        handler = logs.configure(logging.INFO, log_stream)
        try:
            run_dag("score_leads", AS_OF)
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
        nightly.close()

        mp.setenv("MLSYS_STATSD_PORT", str(ondemand.port))
        _point_airflow_stats_at(ondemand.port)
        path = settings.lead_features_path(AS_OF)
        ids = [
            int(r[0]) for r in duckdb.sql(f"select lead_id from read_parquet('{path}') limit 3").fetchall()
        ]
        # A scorer of its own, sending to this test's StatsD listener.
        scorer = on_demand.Scorer(dataclasses.replace(settings, statsd_port=ondemand.port))
        result = scorer.score({"leads": [{"lead_id": i} for i in ids]})
        assert [r["lead_id"] for r in result] == ids
        with pytest.raises(on_demand.RequestError):
            scorer.score({"leads": [{"lead_id": -1}]})
        ondemand.close()
        yield Received(nightly.metrics(), ondemand.metrics(), log_stream.getvalue().splitlines())
    finally:
        mp.undo()
        for listener in (nightly, ondemand):
            if not listener._stop.is_set():
                listener.close()
        _point_airflow_stats_at(int(saved_port) if saved_port else None)


def _ours(received: dict[str, set[str]]) -> dict[str, set[str]]:
    return {k: v for k, v in received.items() if k.startswith("mlsys.")}


def test_nightly_run_sends_the_contract(received: Received) -> None:
    ours = set(_ours(received.nightly))
    expected = {
        "mlsys.features.rows",
        "mlsys.features.rows.lead_features",
        "mlsys.features.build_seconds",
        "mlsys.validation.success",
        "mlsys.validation.failed_expectations",
        "mlsys.validation.lead_features.success",
        "mlsys.score.rows",
        "mlsys.score.duration",
        "mlsys.score.mean",
        "mlsys.score.latest_partition_timestamp",
        "mlsys.score.last_success_timestamp",
    } | {f"mlsys.score.band.{b}" for b in "ABCD"}
    assert expected <= ours, f"missing: {sorted(expected - ours)}"


def test_every_name_received_is_in_the_contract_and_mapped(received: Received, mapper: Mapper) -> None:
    for name, kinds in {**_ours(received.nightly), **_ours(received.on_demand)}.items():
        short = name.removeprefix("mlsys.")
        assert metrics.contract_type(short) is not None, f"{name} is not in metrics.CONTRACT"
        for kind in kinds:
            mapped = mapper.map(name, kind)
            assert mapped is not None and mapped.rule.action == "map", f"{name} ({kind}) is not mapped"


def test_on_demand_calls_send_the_contract(received: Received, mapper: Mapper) -> None:
    ours = _ours(received.on_demand)
    assert ours == {
        "mlsys.predictions.success": {"c"},
        "mlsys.predictions.error": {"c"},  # the request for an unknown lead
        "mlsys.prediction.duration": {"ms"},
        "mlsys.prediction.batch_size": {"h"},
    }
    labels = {name: mapper.map(name, next(iter(kinds))) for name, kinds in ours.items()}
    assert {m.name for m in labels.values() if m} == {
        "mlsys_predictions_total",
        "mlsys_prediction_duration_seconds",
        "mlsys_prediction_batch_size",
    }


def test_airflow_statsd_is_on_and_its_names_arrive(received: Received, settings: Settings) -> None:
    import configparser

    from mlsys_local.airflow_env import airflow_cfg

    # The session home's airflow.cfg (mlsys_local.airflow_env); this module's fixture points the
    # running process at its own listener through AIRFLOW__METRICS__STATSD_PORT.
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(airflow_cfg(settings))
    assert cfg["metrics"]["statsd_on"] == "True"
    assert cfg["metrics"]["statsd_prefix"] == "airflow"
    assert cfg["metrics"]["statsd_port"] == str(settings.statsd_port)
    airflow_names = {n for n in received.nightly if n.startswith("airflow.")}
    assert any(n.startswith("airflow.ti.finish.score_leads.") for n in airflow_names), sorted(airflow_names)


def test_sending_with_nobody_listening_never_raises(settings: Settings) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    nobody = dataclasses.replace(settings, statsd_port=free)
    for _ in range(3):  # the ICMP "port unreachable" of one send surfaces on a later one
        metrics.gauge("score.mean", 0.1, nobody)
        metrics.incr("predictions.error", settings=nobody)
        metrics.timing("prediction.duration", 0.2, nobody)
        metrics.histogram("prediction.batch_size", 3, nobody)
        with metrics.timed("score.duration", nobody):
            pass
    # A host that does not resolve (compose's service name outside compose): no client, no error.
    unresolved = dataclasses.replace(settings, statsd_host="statsd-exporter.invalid")
    metrics.gauge("score.mean", 0.1, unresolved)
    metrics.incr("predictions.success", settings=unresolved)


def test_unknown_names_are_reported_once(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mlsys.metrics"):
        metrics.gauge("not_in.contract_x", 1, settings)
        metrics.gauge("not_in.contract_x", 2, settings)
        metrics.incr("score.mean", settings=settings)  # in the contract as a gauge, not a counter
    messages = [r.getMessage() for r in caplog.records]
    assert sum("not_in.contract_x" in m for m in messages) == 1
    assert any("score.mean (counter)" in m for m in messages)


def test_histograms_are_sent_unscaled() -> None:
    listener = StatsdListener()
    try:
        settings = dataclasses.replace(Settings.from_env(), statsd_port=listener.port)
        metrics.histogram("prediction.batch_size", 7, settings)
        metrics.timing("prediction.duration", 0.25, settings)
    finally:
        listener.close()
    lines = {line for packet in listener.packets for line in packet.splitlines()}
    assert "mlsys.prediction.batch_size:7.0|h" in lines
    assert "mlsys.prediction.duration:250.000000|ms" in lines  # the exporter divides by 1000


def test_freshness_gauges_follow_the_newest_partition(tmp_path: Path) -> None:
    listener = StatsdListener()
    settings = dataclasses.replace(Settings.from_env(), data_dir=tmp_path, statsd_port=listener.port)
    try:
        assert metrics.scored_table_freshness(settings) is None
        for day in ("2026-05-30", "2026-06-01", "2026-05-31"):
            (settings.scored_dir / f"score_date={day}").mkdir(parents=True)
            (settings.scored_dir / f"score_date={day}" / "part-00000.parquet").write_bytes(b"PAR1")
        (settings.scored_dir / "score_date=garbage").mkdir()
        # A folder with no file (a swap's leftover, an upload never committed) is no night.
        (settings.scored_dir / "score_date=2026-06-05").mkdir()
        assert metrics.scored_table_freshness(settings) == date(2026, 6, 1)
    finally:
        listener.close()
    lines = [line for packet in listener.packets for line in packet.splitlines()]
    assert "mlsys.score.latest_partition_timestamp:1780272000.0|g" in lines  # 2026-06-01T00:00Z
    assert sum(line.startswith("mlsys.score.last_success_timestamp:") for line in lines) == 2


# --------------------------------------------------------------------------------------------
# Prometheus: promtool
# --------------------------------------------------------------------------------------------


def _promtool() -> str:
    path = shutil.which("promtool")
    if path:
        return path
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail("promtool is missing on CI: `make test` installs it via .ci/install-system-deps.sh")
    pytest.skip("promtool not installed: `make system-deps` (or .ci/install-system-deps.sh) installs it")


def _run_promtool(*args: str) -> str:
    done = subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_promtool_check_config() -> None:
    out = _run_promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert "SUCCESS" in out


def test_promtool_check_rules() -> None:
    out = _run_promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert "SUCCESS" in out


def _rule_test_files() -> list[Path]:
    files = sorted((PROMETHEUS / "tests").glob("*.yml"))
    assert files, "no promtool rule tests"
    return files


def test_promtool_alert_unit_tests() -> None:
    files = _rule_test_files()
    out = _run_promtool("test", "rules", *map(str, files))
    assert out.count("SUCCESS") == len(files), out


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = [case for path in _rule_test_files() for case in yaml.safe_load(path.read_text())["tests"]]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in _alert_rules()}
    assert alerts <= firing, f"never shown firing: {sorted(alerts - firing)}"
    assert alerts <= quiet, f"never shown not firing: {sorted(alerts - quiet)}"
    required = {
        "AirflowSchedulerDown",
        "AirflowApiServerDown",
        "OnDemandErrorRateCritical",
        "OnDemandErrorRateWarning",
        "OnDemandLatencyP99Critical",
        "OnDemandLatencyP95Warning",
        "FeatureDriftDetected",
        "DataValidationGateFailed",
        "NightlyPartitionLate",
        "NightlyPartitionMissing",
        "ChampionRealizedAucLow",
    }
    assert required <= alerts
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"].get("summary"), rule["alert"]


# --------------------------------------------------------------------------------------------
# Metric names used by alerts and dashboards
# --------------------------------------------------------------------------------------------

_PROMQL_WORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left"}
_PROMQL_WORDS |= {"group_right", "offset", "inf", "nan", "atan2"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers (after strings: no braces left in them)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)  # Grafana variables
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        if m.group(2) or m.group(1).lower() in _PROMQL_WORDS:
            continue
        names.add(m.group(1))
    return names


def test_promql_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, dag_id) "
        '(rate(a_bucket{le!="+Inf", x=~"$dag_id"}[$__rate_interval])))'
        " / on () group_left sum(rate(b_total[5m] offset 1d)) > bool 1e3 and time() - max(c) > 27 * 3600"
        ' or absent(d{job="x"}) unless vector(0)'
    )
    assert promql_metric_names(expr) == {"a_bucket", "b_total", "c", "d"}


def _dashboard_queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, str):
                # A template variable: label_values(metric, label) names one metric.
                m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", value)
                yield m.group(1) if m else value
            else:
                yield from _dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_queries(item)


def _allowed(mapper: Mapper) -> set[str]:
    return mapper.produced_names() | OWN_METRICS


def _unknown(names: set[str], allowed: set[str]) -> set[str]:
    return {n for n in names if n not in allowed and not n.startswith("statsd_exporter_")}


def test_alert_metrics_are_produced_by_the_mapping(mapper: Mapper) -> None:
    allowed = _allowed(mapper)
    for rule in _alert_rules():
        names = promql_metric_names(rule["expr"])
        assert names, rule["alert"]
        assert not _unknown(names, allowed), f"{rule['alert']}: {sorted(_unknown(names, allowed))}"


DASHBOARDS = ("pipeline-health", "nightly-scoring", "model", "on-demand")


def test_dashboards_use_only_mapped_metrics(mapper: Mapper) -> None:
    allowed = _allowed(mapper)
    used: set[str] = set()
    for name in DASHBOARDS:
        dashboard = json.loads((GRAFANA / "dashboards" / f"{name}.json").read_text())
        queries = list(_dashboard_queries(dashboard))
        assert queries, name
        for query in queries:
            names = promql_metric_names(query)
            assert not _unknown(names, allowed), f"{name}.json `{query}`: {sorted(_unknown(names, allowed))}"
            used |= names
    # The four views the issue asks for, by what they must show.
    for metric in (
        "airflow_dagrun_duration_count",
        "mlsys_score_rows_total",
        "mlsys_score_band_leads",
        "mlsys_score_mean",
        "mlsys_train_roc_auc",
        "mlsys_drift_psi",
        "mlsys_predictions_total",
        "mlsys_prediction_duration_seconds_bucket",
    ):
        assert metric in used, f"no dashboard shows {metric}"


def test_grafana_provisioning_matches_the_dashboards() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "mlsys.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    uids = set()
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        uids.add(dashboard["uid"])
        datasources = {
            json.dumps(v, sort_keys=True)
            for v in _values_of(dashboard, "datasource")
            if not (isinstance(v, dict) and v.get("type") == "datasource")
        }
        assert datasources == {json.dumps({"type": "prometheus", "uid": source["uid"]}, sort_keys=True)}, path
    assert len(uids) == len(DASHBOARDS)


def _values_of(node: Any, key: str) -> Iterator[Any]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            else:
                yield from _values_of(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _values_of(item, key)


# --------------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------------


def test_log_lines_carry_the_run_outside_airflow() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure(logging.INFO, stream)
    try:
        logging.getLogger("mlsys.score").info('published "x" to %s', "/tmp/a b")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    line = stream.getvalue().strip()
    assert "\n" not in line
    assert re.fullmatch(
        r"ts=\S+Z level=INFO logger=mlsys\.score dag_id=- run_id=- task_id=- "
        r'msg="published \\"x\\" to /tmp/a b"',
        line,
    ), line


def test_log_lines_carry_the_run_inside_a_task() -> None:
    """Airflow's task runner binds the ids as structlog context variables."""
    import structlog

    record = logging.LogRecord("mlsys.score", logging.INFO, __file__, 1, "hello", None, None)
    with structlog.contextvars.bound_contextvars(
        dag_id="score_leads", run_id="scheduled__2026-06-01T02:00:00+00:00", task_id="publish"
    ):
        assert logs.RunContextFilter().filter(record)
    line = logs.LogfmtFormatter().format(record)
    assert " dag_id=score_leads run_id=scheduled__2026-06-01T02:00:00+00:00 task_id=publish " in line


def test_log_lines_carry_the_run_in_an_in_process_dag_run(received: Received) -> None:
    """`dag.test()` (the demo) runs tasks in this process, where Airflow's task runner binds
    nothing: the filter finds the run in Airflow's current task context."""
    ours = [line for line in received.nightly_log if " logger=mlsys." in line]
    assert ours, received.nightly_log[:20]
    pattern = re.compile(r" dag_id=score_leads run_id=manual__\S+ task_id=(\w+) ")
    tasks = set()
    for line in ours:
        found = pattern.search(line)
        assert found, line
        tasks.add(found.group(1))
    assert {"build_features", "publish"} <= tasks, tasks


def test_cli_logs_in_the_mlsys_format(tmp_path: Path) -> None:
    env = {**os.environ, "MLSYS_HOME": str(tmp_path), "MLSYS_STATSD_PORT": "9"}
    env.pop("MLSYS_DATA_DIR", None)
    exe = Path(sys.executable).with_name("mlsys")
    done = subprocess.run(
        [str(exe), "-v", "score", "--as-of", "2026-06-01"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("ts=")]
    assert lines, done.stderr
    assert all(" dag_id=- run_id=- task_id=- " in line for line in lines)


def test_airflow_task_logs_carry_the_run_on_mlsys_lines() -> None:
    """In a worker, Airflow owns the handlers (JSON to the task log) and its task runner binds
    dag_id/task_id/run_id; mlsys' stdlib lines must come out with them. Run in a subprocess:
    Airflow's logging setup replaces this process' handlers."""
    script = (
        "import io, json, logging, structlog\n"
        "from airflow.sdk.log import configure_logging\n"
        "buf = io.BytesIO()\n"
        "configure_logging(json_output=True, output=buf, sending_to_supervisor=True)\n"
        "structlog.contextvars.bind_contextvars(dag_id='score_leads', task_id='publish', run_id='r1')\n"
        "logging.getLogger('mlsys.score').info('published %s', 'x')\n"
        "for handler in logging.getLogger().handlers: handler.flush()\n"
        "print(buf.getvalue().decode())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    ours = [e for e in events if e.get("logger") == "mlsys.score"]
    assert ours, done.stdout
    assert ours[0]["event"] == "published x"
    assert {k: ours[0][k] for k in logs.FIELDS} == {
        "dag_id": "score_leads",
        "run_id": "r1",
        "task_id": "publish",
    }
