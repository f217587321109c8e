"""A new source from a CRM export to a scored partition, by the commands of docs/onboarding.md.

The guide's shell blocks (marked `onboarding-test: <step>`) run exactly as written, in a
folder of their own that holds the export, `sources/` and `var/` (and `.venv`, the project's),
with no MLSYS_* variable but those of the source's env file. Between them the test makes the
guide's edits, to SQL and YAML only: the label, and the two columns that leak the outcome out.
Real DuckDB, dbt, GX and MLflow.
"""

from __future__ import annotations

import math
import os
import random
import re
import subprocess
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mlsys.settings import REPO_ROOT

pytestmark = pytest.mark.slow

GUIDE = REPO_ROOT / "docs" / "onboarding.md"
LEADS = 10_000  # enough for the holdout to measure calibration within MLSYS_MAX_ECE
COLUMNS = ("Lead ID", "Lead Source", "Company Size", "Country", "Website Visits", "Converted")
HEADER = ";".join([*COLUMNS, "Deal Value", "Sales Notes", "Created Date"])


def guide_blocks() -> dict[str, str]:
    """The guide's `bash` blocks marked for this test, by step."""
    pattern = re.compile(r"<!-- onboarding-test: ([a-z-]+) -->\s*\n(\s*)```bash\n(.*?)\n\s*```", re.S)
    return {m.group(1): textwrap.dedent(m.group(3)) for m in pattern.finditer(GUIDE.read_text())}


def write_export(path: Path) -> None:
    """A CRM export as a sales team keeps it: `;`-separated, spaces in the names, a yes/no
    outcome, a deal value filled in only for converted leads (it leaks the outcome), free-text
    notes and a creation date."""
    rng = random.Random(7)
    lines = [HEADER]
    for lead in range(1, LEADS + 1):
        source = rng.choice(["Web", "Referral", "Event", "Cold Call"])
        visits = rng.randint(0, 30)
        logit = -2.2 + 1.5 * (source == "Referral") - 0.8 * (source == "Cold Call") + 0.08 * visits
        converted = rng.random() < 1 / (1 + math.exp(-logit))
        deal = round(rng.uniform(100, 1000), 2) if converted else 0
        size = rng.choice([5, 20, 100, 500, 2000])
        country = rng.choice(["DE", "FR", "US", ""])
        created = f"2026-01-{rng.randint(1, 28):02d}"
        yes_no = "yes" if converted else "no"
        lines.append(f"{lead};{source};{size};{country};{visits};{yes_no};{deal};note {lead};{created}")
    path.write_text("\n".join(lines) + "\n")


def run(step: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    env = {name: os.environ[name] for name in ("PATH", "HOME", "TMPDIR") if name in os.environ}
    env["LANG"] = "C.UTF-8"
    return subprocess.run(
        ["/bin/bash", "-euo", "pipefail", "-c", guide_blocks()[step]],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def edit_like_the_guide(project: Path) -> None:
    """Step 3 of the guide: the label, and the leaking columns out (macro line, YAML block, alias)."""
    snapshots = project / "models" / "marts" / "training_snapshots.sql"
    placeholder = r"null  -- EDIT: 1 when the lead converted.*"
    sql, count = re.subn(placeholder, "stg.converted", snapshots.read_text())
    assert count == 1
    snapshots.write_text(sql)
    macro = project / "macros" / "acme_features.sql"
    text = macro.read_text()
    for column in ("cast({{ c }}.converted as varchar) as converted", "{{ c }}.deal_value"):
        assert f"\n    {column}" in text
        text = text.replace(f"\n    {column},", "").replace(f",\n    {column}\n", "\n")
    macro.write_text(text)
    marts = project / "models" / "marts" / "_marts.yml"
    yml = marts.read_text()
    for column in ("converted", "deal_value"):
        yml, blocks = re.subn(rf"      - &{column}\n(?:        .*\n)+", "", yml)
        assert blocks == 1 and f"      - *{column}\n" in yml
        yml = yml.replace(f"      - *{column}\n", "")
    marts.write_text(yml)


def test_an_export_becomes_a_scored_partition_by_the_guide(tmp_path: Path) -> None:
    assert set(guide_blocks()) == {"scaffold", "land", "after-edits", "train-and-score"}
    (tmp_path / ".venv").symlink_to(REPO_ROOT / ".venv", target_is_directory=True)
    write_export(tmp_path / "crm-export.csv")

    scaffold = run("scaffold", tmp_path)
    assert scaffold.returncode == 0, scaffold.stderr
    assert "lead id: Lead ID" in scaffold.stdout
    assert "left out: Sales Notes" in scaffold.stdout and "left out: Created Date" in scaffold.stdout
    source = tmp_path / "sources" / "acme"
    staging = (source / "dbt" / "models" / "staging" / "stg_acme.sql").read_text()
    assert 'cast("Lead Source" as varchar) as lead_source' in staging  # snake_case, typed
    assert 'cast("Converted" as boolean) as converted' in staging  # yes/no over the whole file

    # Landed but not edited: the check names what is missing, in plain words.
    land = run("land", tmp_path)
    assert land.returncode == 1, land.stdout + land.stderr
    assert "ok      the raw gate passes the export (raw_acme)" in land.stdout
    assert "training_snapshots.sql still has the placeholder" in land.stdout
    assert "source acme: 1 thing(s) missing" in land.stdout

    edit_like_the_guide(source / "dbt")
    checked = run("after-edits", tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "source acme: ready to train and score" in checked.stdout
    assert "a dry dbt build (dbt build --empty) compiles and runs every model and test" in checked.stdout

    scored = run("train-and-score", tmp_path)
    assert scored.returncode == 0, scored.stdout + scored.stderr
    assert "promoted to champion" in scored.stdout
    assert f"scored {LEADS:,} leads with acme v1" in scored.stdout
    home = tmp_path / "var" / "acme" / "data"
    partition = pq.read_table(home / "scored_leads" / "score_date=2026-02-01")
    assert partition.num_rows == LEADS
    assert set(partition.column("model_name").to_pylist()) == {"acme"}
    snapshots = pq.read_schema(home / "features" / "training_snapshots" / "2026-02-01.parquet").names
    assert {"lead_source", "website_visits", "label"} <= set(snapshots)
    assert not {"converted", "deal_value"} & set(snapshots)  # the leaks stayed out
