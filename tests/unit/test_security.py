"""Security of the stack and the code (docs/reliability.md, "Security"):

* every container of docker-compose.yaml runs as a non-root user;
* the JWT secret and the Fernet key come from the environment (.env in compose, generated per
  home, mode 0600, outside the repo, for the embedded Airflow), never a committed default;
* every HTTP app mlsys mounts on the api-server requires Airflow authentication, on-demand
  scoring a permission of the auth manager (the live 401 checks are
  tests/stack/test_live_api.py::test_everything_needs_a_token, the 403s per role
  tests/stack/test_postgres_celery.py::test_roles_on_a_live_api_server);
* ruff's security rules (bandit's, `S`) hold for mlsys/, dags/, plugins/ with a reason on every
  exception; the secret scanner in `make lint` runs on every tracked file and catches a
  planted secret.
"""

from __future__ import annotations

import ast
import json
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from mlsys.settings import REPO_ROOT, Settings

COMPOSE = REPO_ROOT / "docker-compose.yaml"
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
BIN = Path(sys.executable).parent


def _final_user_of_our_image() -> str:
    stages = DOCKERFILE.read_text().split("\nFROM ")
    users = re.findall(r"^USER\s+(\S+)", stages[-1], flags=re.MULTILINE)
    assert users, "the runtime stage sets no USER"
    return users[-1]


def _is_root(user: str) -> bool:
    name = user.split(":")[0]
    return name in ("", "0", "root")


def test_every_container_runs_as_a_non_root_user() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    ours = _final_user_of_our_image()
    assert not _is_root(ours) and ours.split(":")[0].isdigit()
    for name, service in services.items():
        user = service.get("user")
        if user is not None:
            assert not _is_root(str(user)), f"{name} runs as {user}"
            continue
        # No `user:` means the image's USER: allowed only for the image built from our Dockerfile.
        assert "mlsys" in str(service.get("image", "")) and (
            service.get("build", {}).get("dockerfile") == "docker/Dockerfile" or "build" not in service
        ), f"{name}: set `user:` to a non-root user"


def test_airflow_secrets_come_from_the_environment() -> None:
    text = COMPOSE.read_text()
    for key, var in (
        ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW_JWT_SECRET"),
        ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_FERNET_KEY"),
        ("AIRFLOW__API__SECRET_KEY", "AIRFLOW_API_SECRET_KEY"),
    ):
        # Required (`:?`), no default (`:-`): compose refuses to start without it.
        assert re.search(rf"{key}: \$\{{{var}:\?[^}}]*\}}", text), key
    assert not re.search(r"(PASSWORD|SECRET|FERNET)[A-Z_]*:-", text), "a secret with a default value"


def test_the_embedded_airflow_generates_its_secrets_per_home(tmp_path: Path) -> None:
    import configparser

    from cryptography.fernet import Fernet

    from mlsys_local.airflow_env import airflow_cfg, ui_login, write_airflow_cfg

    homes = []
    for name in ("a", "b"):
        settings = Settings.from_env()
        settings = type(settings)(**{**settings.__dict__, "home": tmp_path / name})
        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read(write_airflow_cfg(settings))
        jwt, fernet = cfg["api_auth"]["jwt_secret"], cfg["core"]["fernet_key"]
        _user, password = ui_login(settings)
        homes.append((jwt, fernet, password))
        assert len(jwt) >= 64
        Fernet(fernet.encode())  # a valid key
        assert len(password) >= 12 and cfg["core"]["simple_auth_manager_all_admins"] == "False"
        # Kept across rewrites (a new key would orphan what the metadata DB encrypted).
        again = configparser.ConfigParser(interpolation=None)
        again.read(write_airflow_cfg(settings, port=18080))
        assert (again["api_auth"]["jwt_secret"], again["core"]["fernet_key"]) == (jwt, fernet)
        assert stat.S_IMODE(airflow_cfg(settings).stat().st_mode) == 0o600
        for secret_file in (tmp_path / name / "airflow").glob("*"):
            if secret_file.is_file() and secret_file.suffix != ".db":
                assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600, secret_file
        # Nothing of it lives in the repository.
        assert REPO_ROOT not in (tmp_path / name).parents
    assert homes[0] != homes[1] and all(a != b for a, b in zip(*homes, strict=True))


# Apps that are public on purpose, and why; each is proved to say no more than that live.
PUBLIC_APPS = {
    # Like Airflow's /api/v2/monitor/health: {"status", "champion_loaded"} and nothing else, so
    # a container healthcheck needs no secret (tests/stack/test_live_api.py::test_ready_from_the_start).
    "mlsys readiness",
}


def test_every_plugin_app_requires_authentication() -> None:
    """Airflow does not protect plugin FastAPI apps: each must carry the dependency itself,
    unless it is listed in PUBLIC_APPS with its reason."""
    plugins = sorted((REPO_ROOT / "plugins").glob("*.py"))
    assert plugins
    for path in plugins:
        tree = ast.parse(path.read_text())
        apps = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "FastAPI"
        ]
        if "fastapi_apps" not in path.read_text():
            continue
        assert apps, f"{path.name} mounts an app it does not build"
        for call in apps:
            title = next((k.value for k in call.keywords if k.arg == "title"), None)
            if isinstance(title, ast.Constant) and title.value in PUBLIC_APPS:
                continue
            deps = next((k.value for k in call.keywords if k.arg == "dependencies"), None)
            assert deps is not None, f"{path.name}: FastAPI(...) without dependencies"
            text = ast.unparse(deps)
            assert "requires_authenticated" in text or "requires_on_demand_access" in text, (
                f"{path.name}: no authentication"
            )
            # FastAPI's own schema and docs routes skip the app's dependencies: off, or public.
            for route in ("openapi_url", "docs_url", "redoc_url"):
                value = next((k.value for k in call.keywords if k.arg == route), None)
                assert isinstance(value, ast.Constant) and value.value is None, f"{path.name}: {route}"
    # Scoring is a permission (the right to trigger score_on_demand), not only a login; the
    # live 401/403/200 per role: tests/stack/test_postgres_celery.py::test_roles_on_a_live_api_server.
    scoring = (REPO_ROOT / "plugins" / "mlsys_scoring.py").read_text()
    assert "Depends(requires_on_demand_access())" in scoring


def test_security_lint_rules_cover_the_shipped_code() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "S" in config["select"]
    assert [rule for rule in config["ignore"] if rule.startswith("S")] == ["S101"]
    # No per-file exception in the shipped code: each one is a noqa comment with its reason.
    for pattern, rules in config.get("per-file-ignores", {}).items():
        assert not pattern.startswith(("mlsys", "dags", "plugins")), (pattern, rules)
    # Every exception in the shipped code says why it is safe.
    for folder in ("mlsys", "dags", "plugins"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                match = re.search(r"#\s*(noqa|nosec)\b[: ]*([A-Z0-9, ]*)(.*)$", line)
                if match and any(code.strip().startswith(("S", "B")) for code in match.group(2).split(",")):
                    assert re.match(r"\s*[-—]\s*\S", match.group(3)), (
                        f"{path.relative_to(REPO_ROOT)}:{number}: a security exception without a reason"
                    )


def test_ruff_security_rules_pass() -> None:
    done = subprocess.run(
        [str(BIN / "ruff"), "check", "--select", "S", "mlsys", "dags", "plugins"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_secret_scanner_is_in_lint_and_catches_a_planted_secret(tmp_path: Path) -> None:
    lint = (REPO_ROOT / "Makefile").read_text().split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "detect-secrets-hook" in lint and ".secrets.baseline" in lint
    baseline = json.loads((REPO_ROOT / ".secrets.baseline").read_text())
    assert baseline["results"] == {}, "allow-list a false positive inline (pragma), with a reason"
    # Split so the scanner does not flag this file: an AWS key id and a password literal.
    planted = tmp_path / "settings_local.py"
    planted.write_text(
        f'AWS_ACCESS_KEY_ID = "{"AKIA" + "J7Q2XW4LZ3NPRT5K"}"\n'
        f'DB_PASSWORD = "{"s3cr3t-" + "Vd8fQz2LmX9pKw4R"}"\n'
    )
    done = subprocess.run(
        [str(BIN / "detect-secrets-hook"), "--baseline", str(REPO_ROOT / ".secrets.baseline"), str(planted)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "AWS Access Key" in done.stdout and "Secret Keyword" in done.stdout


@pytest.mark.parametrize("path", [".env", "var/", ".tools/"])
def test_local_secrets_and_state_are_ignored_by_git(path: str) -> None:
    done = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO_ROOT, capture_output=True, timeout=30)
    assert done.returncode == 0, f"{path} is not git-ignored"
