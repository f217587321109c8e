"""Every `MLSYS_*` variable the code reads is documented in docs/configuration.md, and every
documented one is read somewhere: the page is the one list a user has."""

from __future__ import annotations

import re
from pathlib import Path

from mlsys.settings import REPO_ROOT

VARIABLE = re.compile(r"\bMLSYS_[A-Z0-9_]*[A-Z0-9]\b")
# Where a variable can be read: the code, the dbt projects (env_var), the stack, the Makefile,
# the test session's own switch.
READERS = (
    "mlsys/**/*.py",
    "mlsys_local/**/*.py",
    "dags/*.py",
    "plugins/*.py",
    "sql/**/*.sql",
    "sql/**/*.yml",
    "sources/*/dbt/**/*.sql",
    "sources/*/dbt/**/*.yml",
    "sources/*/*.env",
    "docker/**/*.sh",
    "docker-compose.yaml",
    "Makefile",
    ".env.example",
    "tests/conftest.py",
)


def _read_by_code() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for pattern in READERS:
        for path in REPO_ROOT.glob(pattern):
            if "/target/" in str(path) or not path.is_file():
                continue
            for name in VARIABLE.findall(path.read_text(errors="replace")):
                found.setdefault(name, set()).add(str(path.relative_to(REPO_ROOT)))
    return found


def _documented() -> set[str]:
    page = (REPO_ROOT / "docs" / "configuration.md").read_text()
    # A variable is documented where a table row names it in code spans.
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in VARIABLE.findall(row.split("|")[1])}


def test_every_variable_the_code_reads_is_documented() -> None:
    missing = {name: sorted(where) for name, where in _read_by_code().items() if name not in _documented()}
    assert missing == {}, "document these in docs/configuration.md"


def test_every_documented_variable_is_read() -> None:
    assert sorted(_documented() - set(_read_by_code())) == []


def test_the_settings_object_reads_each_of_its_variables_once() -> None:
    """`Settings.environ()` round-trips: every variable `from_env` reads is one it writes."""
    source = (REPO_ROOT / "mlsys" / "settings.py").read_text()
    from_env = source[source.index("def from_env") :]
    read = set(VARIABLE.findall(from_env))
    environ = source[source.index("def environ") : source.index("def from_env")]
    written = set(VARIABLE.findall(environ))
    assert read == written, (sorted(read - written), sorted(written - read))
    assert Path(REPO_ROOT / "docs" / "configuration.md").is_file()


def test_the_engine_is_checked_and_picks_its_dbt_target(monkeypatch) -> None:
    import pytest

    from mlsys.settings import Settings

    monkeypatch.delenv("MLSYS_DBT_TARGET", raising=False)
    monkeypatch.setenv("MLSYS_ENGINE", "Spark")
    assert (Settings.from_env().engine, Settings.from_env().dbt_target) == ("spark", "spark")
    monkeypatch.setenv("MLSYS_DBT_TARGET", "thrift")
    assert Settings.from_env().dbt_target == "thrift"
    monkeypatch.delenv("MLSYS_DBT_TARGET")
    # A Spark Connect server: the profile's client target, which sends no master.
    monkeypatch.setenv("MLSYS_SPARK_REMOTE", "sc://spark-connect:15002")
    assert (Settings.from_env().spark_remote, Settings.from_env().dbt_target) == (
        "sc://spark-connect:15002",
        "spark_connect",
    )
    monkeypatch.setenv("MLSYS_DBT_TARGET", "spark")
    with pytest.raises(ValueError, match="with MLSYS_SPARK_REMOTE the dbt target is spark_connect"):
        Settings.from_env()
    monkeypatch.delenv("MLSYS_DBT_TARGET")
    for url in ("spark://spark-master:7077", "sc://", "sc://:15002"):
        monkeypatch.setenv("MLSYS_SPARK_REMOTE", url)
        with pytest.raises(
            ValueError, match="MLSYS_SPARK_REMOTE must be a Spark Connect URL, sc://host:port"
        ):
            Settings.from_env()
    monkeypatch.setenv("MLSYS_SPARK_REMOTE", "sc://spark-connect:15002")
    monkeypatch.setenv("MLSYS_ENGINE", "duckdb")
    with pytest.raises(ValueError, match=r"MLSYS_SPARK_REMOTE is set .* but MLSYS_ENGINE is duckdb"):
        Settings.from_env()
    monkeypatch.delenv("MLSYS_SPARK_REMOTE")
    monkeypatch.setenv("MLSYS_ENGINE", "polars")
    with pytest.raises(ValueError, match="MLSYS_ENGINE must be one of duckdb, spark, got 'polars'"):
        Settings.from_env()


def test_a_dbt_project_without_the_engines_target_is_refused_before_dbt(monkeypatch) -> None:
    """The bank source builds on DuckDB only (docs/spark.md): MLSYS_ENGINE=spark with its
    project stops with one line naming the target, before dbt starts."""
    import pytest

    from mlsys import dbt
    from mlsys.settings import REPO_ROOT, Settings

    monkeypatch.delenv("MLSYS_DBT_TARGET", raising=False)
    monkeypatch.setenv("MLSYS_ENGINE", "spark")
    monkeypatch.setenv("MLSYS_DBT_PROJECT_DIR", str(REPO_ROOT / "sources" / "bank_marketing" / "dbt"))
    bank_on_spark = Settings.from_env()
    with pytest.raises(dbt.ProfileTargetError, match=r"has no target 'spark' .*its targets: dev, prod"):
        dbt.run(["build"], bank_on_spark)
    monkeypatch.delenv("MLSYS_DBT_PROJECT_DIR")
    dbt.check_target(Settings.from_env())  # the main project has the spark target
    monkeypatch.setenv("MLSYS_SPARK_REMOTE", "sc://127.0.0.1:15002")
    dbt.check_target(Settings.from_env())  # and the Connect client's


def test_the_publish_mode_is_checked(monkeypatch) -> None:
    import pytest

    from mlsys.settings import Settings

    assert Settings.from_env().publish_mode == "swap"
    monkeypatch.setenv("MLSYS_PUBLISH_MODE", "Pointer")
    assert Settings.from_env().publish_mode == "pointer"
    monkeypatch.setenv("MLSYS_PUBLISH_MODE", "rename")
    with pytest.raises(ValueError, match="MLSYS_PUBLISH_MODE must be one of swap, pointer, got 'rename'"):
        Settings.from_env()


def test_the_scoring_threads_default_to_the_cpus_the_process_may_use(monkeypatch) -> None:
    import os

    import pytest

    from mlsys.settings import Settings

    assert Settings.from_env().score_threads == 0
    assert Settings.from_env().scoring_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("MLSYS_SCORE_THREADS", "3")
    assert Settings.from_env().scoring_threads() == 3
    monkeypatch.setenv("MLSYS_SCORE_THREADS", "-1")
    with pytest.raises(ValueError, match=r"MLSYS_SCORE_THREADS must be 0 .* got -1"):
        Settings.from_env()
