"""The lead_features SQL for payloads: the nightly dbt project's text, compiled once per
version of the project's files.

dbt's start-up alone is about 4.5 s, so dbt never runs per request. The `+lead_features`
lineage is compiled (`dbt compile` in a subprocess, through `mlsys.dbt`: same project, same
vars as the nightly build) with `var('as_of')` set to a sentinel date that each request
replaces, cached on disk under `$MLSYS_HOME/dbt/on_demand/`. It is compiled twice with two
sentinels and compared: a project that uses `as_of` other than as that date literal is
refused (`feature_sql`) rather than compute features unlike the nightly ones. The upstream
models become CTEs and the raw sources relations the scorer registers from the payload.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from time import perf_counter
from typing import Any

from mlsys import dbt
from mlsys.on_demand.request import UnavailableError
from mlsys.settings import Settings

log = logging.getLogger(__name__)

FEATURES_MART = "lead_features"


# --------------------------------------------------------------------------------------------
# Feature SQL: compiled once per version of the dbt project
# --------------------------------------------------------------------------------------------

SQL_FORMAT = 1
SENTINELS = ("1111-11-11", "1222-02-22")
# dbt renders sources under this made-up data dir; the scorer swaps them for payload tables.
_SENTINEL_DATA_DIR = "/__mlsys_on_demand__/data"
_PROJECT_SUFFIXES = {".sql", ".yml", ".yaml", ".csv", ".py"}
_SKIP_DIRS = {"target", "logs", "dbt_packages", "dbt_modules", ".venv"}


@dataclass(frozen=True)
class FeatureSQL:
    """The lead_features query for in-memory payload tables, `as_of` still a sentinel."""

    project_hash: str
    sql: str
    sources: dict[str, str]  # raw table name -> relation the caller registers

    def render(self, as_of: date) -> str:
        return self.sql.replace(f"'{SENTINELS[0]}'", f"'{as_of.isoformat()}'")


def project_hash(settings: Settings) -> str:
    """Hash of the dbt project's files and of the vars the nightly run passes."""
    digest = hashlib.sha256(f"format={SQL_FORMAT}\n".encode())
    root = settings.dbt_project_dir
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (rel.parts and rel.parts[0] in _SKIP_DIRS) or path.suffix not in _PROJECT_SUFFIXES:
            continue
        if path.is_file():
            digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(json.dumps(compile_vars(settings, SENTINELS[0]), sort_keys=True).encode())
    digest.update(settings.dbt_target.encode())
    return digest.hexdigest()[:16]


def compile_vars(settings: Settings, as_of: str) -> dict[str, Any]:
    """The nightly build's vars, with the two that make the lineage a pure function of the
    raw sources: stg_leads and stg_activities read their source relations (a payload) instead
    of the landing files they keep track of, and the activity windows are computed from all
    the activities instead of the per-lead state table the nightly build carries forward (the
    same rows: tests/integration/test_incremental_activities.py)."""
    return {
        **dbt.build_vars(settings, as_of),
        "landings_from_source": True,
        "features_from_full_history": True,
    }


def _sql_cache_dir(settings: Settings) -> Path:
    return settings.home / "dbt" / "on_demand"


def _compile_manifest(settings: Settings, sentinel: str, workdir: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        **dbt.env(settings),
        # A scratch in-memory profile and a data dir that does not exist: compiling must not
        # touch (or wait for the lock of) the nightly warehouse file.
        "MLSYS_WAREHOUSE": ":memory:",
        "MLSYS_DATA_DIR": _SENTINEL_DATA_DIR,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    target = workdir / f"target-{sentinel}"
    try:
        executable = dbt.executable()
    except FileNotFoundError as exc:
        raise UnavailableError("feature_sql", str(exc)) from None
    args = [
        executable,
        "--quiet",
        *dbt.args(
            settings,
            "compile",
            "--no-partial-parse",
            "--select",
            f"+{FEATURES_MART}",
            "--vars",
            json.dumps(compile_vars(settings, sentinel)),
            target_path=target,
            log_path=workdir / "logs",
        ),
    ]
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603 - the venv's dbt, fixed arguments, no shell
    except (OSError, subprocess.SubprocessError) as exc:
        raise UnavailableError("feature_sql", f"dbt compile of lead_features could not run: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise UnavailableError("feature_sql", "dbt compile of lead_features failed", {"dbt": tail})
    return dict(json.loads((target / "manifest.json").read_text()))


def _assemble(manifest: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """One self-contained query: upstream models as CTEs, raw sources as payload relations."""
    nodes, sources = manifest["nodes"], manifest["sources"]
    roots = [k for k, n in nodes.items() if n["resource_type"] == "model" and n["name"] == FEATURES_MART]
    if not roots:
        raise UnavailableError("feature_sql", f"model {FEATURES_MART} is not in the dbt project")
    order: list[str] = []

    def visit(unique_id: str) -> None:
        if unique_id in order:
            return
        node = nodes.get(unique_id) or sources[unique_id]
        for parent in node.get("depends_on", {}).get("nodes", []):
            visit(parent)
        order.append(unique_id)

    visit(roots[0])
    replacements: dict[str, str] = {}
    tables: dict[str, str] = {}
    for unique_id in order:
        if unique_id in sources:
            name = sources[unique_id]["name"]
            tables[name] = f"__mlsys_raw_{name}"
            replacements[sources[unique_id]["relation_name"]] = tables[name]
        elif nodes[unique_id]["config"]["materialized"] != "ephemeral" and unique_id != roots[0]:
            replacements[nodes[unique_id]["relation_name"]] = f"__mlsys_ref_{nodes[unique_id]['name']}"
    unsupported = sorted(set(tables) - {"leads", "activities"})
    if unsupported:
        raise UnavailableError(
            "feature_sql",
            f"{FEATURES_MART} reads source(s) {', '.join(unsupported)} that a payload does not carry",
        )

    def substitute(code: str) -> str:
        for relation in sorted(replacements, key=len, reverse=True):
            code = code.replace(relation, replacements[relation])
        return code

    body = substitute(nodes[roots[0]]["compiled_code"])
    # Upstream models as CTEs, only those the query reads: a lineage may list a model it does
    # not read with these vars (a `depends_on` comment), whose SQL need not run on a payload.
    ctes: list[tuple[str, str]] = []
    for unique_id in reversed(order):
        node = nodes.get(unique_id)
        if node is None or unique_id == roots[0] or node["config"]["materialized"] == "ephemeral":
            continue
        name = replacements[node["relation_name"]]
        if any(name in text for text in (body, *(code for _, code in ctes))):
            ctes.insert(0, (name, substitute(node["compiled_code"])))
    ctes_sql = [f"{name} as (\n{code}\n)" for name, code in ctes]
    head = "with " + ",\n".join(ctes_sql) + "\n" if ctes_sql else ""
    sql = head + f"select * from (\n{body}\n) as features"  # noqa: S608 - dbt's compiled SQL, the nightly text
    leftovers = [r for r in ("read_parquet(", _SENTINEL_DATA_DIR, '"memory".') if r in sql]
    if leftovers:
        raise UnavailableError(
            "feature_sql",
            f"the compiled {FEATURES_MART} SQL still reads {leftovers}: cannot run it on a payload",
        )
    return sql, tables


def compile_feature_sql(settings: Settings) -> FeatureSQL:
    """`dbt compile` the lead_features lineage (twice, in parallel) into a FeatureSQL."""
    digest = project_hash(settings)
    start = perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlsys-dbt-compile-") as tmp, ThreadPoolExecutor(2) as pool:
        manifests = list(pool.map(lambda s: _compile_manifest(settings, s, Path(tmp)), SENTINELS))
    (sql_a, tables), (sql_b, _) = (_assemble(m) for m in manifests)
    if sql_a.count(f"'{SENTINELS[0]}'") == 0 or sql_a.replace(SENTINELS[0], SENTINELS[1]) != sql_b:
        # as_of reached the SQL in another form (date arithmetic in Jinja, a formatted
        # string): substituting the literal would compute features unlike the nightly ones.
        raise UnavailableError(
            "feature_sql",
            f"{FEATURES_MART} uses var('as_of') other than as a date literal; on-demand payloads "
            "cannot reuse its compiled SQL",
        )
    log.info("compiled %s for on-demand payloads in %.1fs", FEATURES_MART, perf_counter() - start)
    return FeatureSQL(digest, sql_a, tables)


def load_feature_sql(settings: Settings) -> FeatureSQL:
    """The cached FeatureSQL of the current project files, compiling it when missing."""
    digest = project_hash(settings)
    cache_dir = _sql_cache_dir(settings)
    path = cache_dir / f"{FEATURES_MART}-{digest}.json"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        # One compile per machine even when several api-server workers ask at once.
        with open(cache_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not path.exists():
                    compiled = compile_feature_sql(settings)
                    tmp = path.with_suffix(f".{os.getpid()}.tmp")
                    tmp.write_text(
                        json.dumps({"format": SQL_FORMAT, "sql": compiled.sql, "sources": compiled.sources})
                    )
                    os.replace(tmp, path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    raw = json.loads(path.read_text())
    return FeatureSQL(digest, raw["sql"], dict(raw["sources"]))
