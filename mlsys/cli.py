"""`mlsys` command line: every stage without Airflow.

Exit codes: 0 success, 1 failure with a one-line reason on stderr, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from mlsys.settings import Settings

log = logging.getLogger("mlsys")


def _date(text: str) -> date:
    from mlsys.input_rules import iso_date

    try:
        return iso_date(text)  # the date rule of every door (DAG conf, on-demand as_of)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlsys", description="Batch lead scoring.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write a synthetic CRM in the raw landing contract")
    g.add_argument("--leads", type=int, default=100_000)
    g.add_argument("--out", type=Path, default=None, help="data dir (default $MLSYS_DATA_DIR)")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--end-date", type=_date, default=date(2026, 6, 1))
    g.add_argument("--activities-per-lead", type=float, default=30.0)
    g.add_argument("--history-days", type=int, default=365, help="days of history before --end-date")
    g.add_argument(
        "--daily-files",
        type=int,
        default=0,
        metavar="N",
        help="the last N days' activities as one file per day (day-<date>.parquet), as nightly landings",
    )

    for name, text in (
        ("features", "gated dbt build of lead_features (--training: training_snapshots)"),
        ("validate", "Great Expectations gate; exit 1 on a blocking failure"),
        ("score", "score every lead into the partition of --as-of"),
        ("drift", "drift of the features against the champion's training data"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--as-of",
            type=_date,
            default=None,
            help="feature cut-off (default: today UTC, or raw/landing.json if earlier)",
        )
        if name in ("features", "validate"):
            p.add_argument("--training", action="store_true", help="the training snapshots mart")
        if name == "features":
            p.add_argument(
                "--full-refresh",
                action="store_true",
                help="rebuild the leads and activities from every landing file (dbt --full-refresh)",
            )
            p.add_argument(
                "--rebuild-from",
                type=_date,
                default=None,
                metavar="DATE",
                help="re-read every landing file's activities from DATE to --rebuild-to (default: that day)",
            )
            p.add_argument("--rebuild-to", type=_date, default=None, metavar="DATE")
        if name == "score":
            _add_on_demand_options(p)

    t = sub.add_parser("train", help="train a challenger, evaluate, register, promote")
    t.add_argument("--as-of", type=_date, default=None)
    t.add_argument("--tune", action="store_true", help="randomized search, SMOTE inside each fold")
    t.add_argument("--force", action="store_true", help="train even without drift")
    t.add_argument("--no-smote", action="store_true")
    t.add_argument(
        "--class-weights", action="store_true", help="weight classes by inverse frequency (with --no-smote)"
    )
    t.add_argument(
        "--estimator", choices=["logreg", "hgb"], default=None, help="default: MLSYS_ESTIMATOR or logreg"
    )
    sub.add_parser("champion", help="the registered champion and its holdout metrics")
    _add_source_commands(sub)
    return parser


def champion_summary(settings: Settings) -> str:
    """`<model> v<N> (champion): holdout ROC AUC ..., PR AUC ..., ECE ...; trained as of ...`."""
    from mlsys import registry

    champion = registry.alias_version(settings, registry.CHAMPION)
    if champion is None:
        raise LookupError(f"no champion of model {settings.model_name!r} yet: run `mlsys train` first")
    run = registry.client(settings).get_run(champion.run_id)
    m, params = run.data.metrics, run.data.params
    as_of = params.get("as_of", "?")
    return (
        f"{settings.model_name} v{champion.version} (champion): holdout ROC AUC {m['roc_auc']:.3f}, "
        f"PR AUC {m['pr_auc']:.3f}, ECE {m['ece']:.3f}; trained as of {as_of} (run {champion.run_id})"
    )


def _add_source_commands(sub: Any) -> None:
    """`mlsys source new|check`: onboard a CRM export (docs/onboarding.md)."""
    s = sub.add_parser("source", help="onboard a CRM export: write a source folder, check it")
    ssub = s.add_subparsers(dest="source_command", required=True)
    new = ssub.add_parser("new", help="write sources/NAME/ from an export (CSV or Parquet)")
    new.add_argument("name", help="the source: lower-case letters, digits, _")
    new.add_argument("--raw", type=Path, required=True, help="the export: CSV (any delimiter) or Parquet")
    new.add_argument("--id", dest="id_column", help="the lead id column (default: guessed)")
    new.add_argument("--label", help="the column that says a lead converted (default: EDIT it in SQL)")
    check = ssub.add_parser("check", help="what a source still misses before it trains and scores")
    check.add_argument("name")
    check.add_argument("--as-of", type=_date, default=None, help="the date of the checks (default: today)")
    for p in (new, check):
        p.add_argument("--sources-dir", type=Path, default=Path("sources"), help="default: ./sources")


def _source(args: argparse.Namespace) -> int:
    """The edge of `mlsys source`: `check` switches this process to the source's env file."""
    import os

    from mlsys.onboarding import sources

    if args.source_command == "new":
        from mlsys.onboarding.files import new_source
        from mlsys.onboarding.scaffold import inspect_export, plan, summary

        written = new_source(
            args.name, args.raw, sources_dir=args.sources_dir, id_column=args.id_column, label=args.label
        )
        chosen = plan(args.name, inspect_export(args.raw), id_column=args.id_column, label=args.label)
        print("\n".join(summary(chosen)))
        print(
            f"wrote {len(written)} files under {args.sources_dir / args.name}/;"
            " the EDIT comments say what to change"
        )
        print(
            f"next: land the export under $MLSYS_HOME/data/raw/{args.name}/,"
            f" then `mlsys source check {args.name}`"
        )
        return 0
    from mlsys.onboarding.check import check_source

    folder = args.sources_dir / sources.check_name(args.name)
    os.environ.update(sources.read_env(folder))
    settings = Settings.from_env()
    findings = check_source(settings, args.as_of or settings.default_as_of())
    for finding in findings:
        print(finding)
    missing = [f for f in findings if not f.ok]
    print(
        f"source {args.name}: "
        + (f"{len(missing)} thing(s) missing" if missing else "ready to train and score")
    )
    return 1 if missing else 0


def _add_on_demand_options(p: argparse.ArgumentParser) -> None:
    """`score --lead-id/--payload`: score a few leads now instead of publishing a partition."""
    p.add_argument("--api", metavar="URL", help="Airflow api-server to score through (default: in-process)")
    p.add_argument(
        "--lead-id",
        type=_lead_id,
        action="extend",
        nargs="+",
        default=[],
        help="lead(s) to score now: an integer, or the text id of a source keyed by text",
    )
    p.add_argument("--payload", type=Path, metavar="FILE", help="JSON: lead payload(s) or a whole request")
    p.add_argument("--sync", action="store_true", help="with --api: POST /mlsys/score instead of the DAG")
    p.add_argument("--user", default=None, help="API user (default $MLSYS_API_USER; $MLSYS_API_PASSWORD)")


def _lead_id(text: str) -> int | str:
    """A --lead-id: an integer when it is written as one (sources keyed by integers), else the
    text as given (sources keyed by text: UUIDs, Salesforce ids)."""
    return int(text) if re.fullmatch(r"-?[1-9][0-9]*|0", text) else text


def _on_demand_request(args: argparse.Namespace, max_leads: int, max_bytes: int) -> dict[str, Any]:
    """The request of `--lead-id`/`--payload`/`--as-of`, checked by the rules every door
    applies (mlsys.input_rules, mlsys.on_demand.request) before anything is sent or scored."""
    from mlsys import input_rules
    from mlsys.on_demand import request as on_demand_request

    leads: list[Any] = [{"lead_id": i} for i in args.lead_id]
    as_of = args.as_of.isoformat() if args.as_of else None
    if args.payload:
        try:
            data = args.payload.read_bytes()
            loaded = input_rules.decode_json(data, max_bytes=max_bytes, what=f"--payload {args.payload}")
        except OSError as exc:
            raise ValueError(f"cannot read --payload {args.payload}: {exc.strerror or exc}") from None
        except input_rules.InvalidJSON as exc:
            raise on_demand_request.RequestError("invalid_json", str(exc), {"reason": exc.reason}) from None
        if isinstance(loaded, dict) and "leads" in loaded:
            unknown = [k for k in loaded if k not in on_demand_request.REQUEST_KEYS]
            if unknown:
                on_demand_request.parse_request(loaded)  # names the unknown keys
            as_of = as_of or loaded.get("as_of")
            loaded = loaded["leads"]
        leads += loaded if isinstance(loaded, list) else [loaded]
    request: dict[str, Any] = {"leads": leads}
    if as_of is not None:
        request["as_of"] = as_of
    on_demand_request.parse_request(request, max_leads=max_leads)
    return request


def _score_on_demand(args: argparse.Namespace, settings: Settings) -> int:
    import os

    from mlsys import client, on_demand

    if not args.lead_id and not args.payload:
        print("mlsys score: --api needs --lead-id and/or --payload", file=sys.stderr)
        return 2
    if args.sync and not args.api:
        print("mlsys score: --sync needs --api", file=sys.stderr)
        return 2
    try:
        # Through --api the server applies its own lead limit (its MLSYS_ON_DEMAND_MAX_LEADS).
        request = _on_demand_request(
            args,
            sys.maxsize if args.api else settings.on_demand_max_leads,
            settings.on_demand_max_body_bytes,
        )
        if args.api:
            api = client.Client(
                args.api,
                username=args.user or os.environ.get("MLSYS_API_USER"),
                password=os.environ.get("MLSYS_API_PASSWORD"),
                token=os.environ.get("MLSYS_API_TOKEN"),
            )
            results = api.score(request["leads"], as_of=request.get("as_of"), sync=args.sync)
        else:
            results = on_demand.score_leads(request, settings)
    except client.ClientError as exc:
        detail = f"\n{json.dumps(exc.error)}" if exc.error else ""
        raise RuntimeError(f"{exc}{detail}") from exc
    except on_demand.ScoringError as exc:
        raise RuntimeError(f"{exc.code}: {exc.message}\n{exc}") from exc
    print(json.dumps(results, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from mlsys import logs

    logs.configure(logging.DEBUG if args.verbose else logging.INFO)
    quiet_third_party()
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("mlsys: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            log.exception("failed")
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"mlsys {args.command}: {first_line}", file=sys.stderr)
        detail = str(exc).strip().splitlines()[1:]
        if detail:
            print("\n".join(detail), file=sys.stderr)
        return 1


def quiet_third_party() -> None:
    for name in ("great_expectations", "mlflow", "alembic", "urllib3", "matplotlib", "numexpr"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _run(args: argparse.Namespace) -> int:
    from mlsys import pipeline

    if args.command == "source":
        return _source(args)
    settings = Settings.from_env()
    as_of = getattr(args, "as_of", None) or settings.default_as_of()
    if args.command == "generate":
        try:
            # Laptop tooling (mlsys_local/), in a clone's environment, not in the production image.
            from mlsys_local.generate import generate
        except ModuleNotFoundError:
            print(
                "mlsys generate: the synthetic CRM generator (mlsys_local/) ships with a clone of "
                "the repository, not with the production image",
                file=sys.stderr,
            )
            return 1

        result = generate(
            args.out or settings.data_dir,
            n_leads=args.leads,
            seed=args.seed,
            end_date=args.end_date,
            horizon_days=settings.horizon_days,
            activities_per_lead=args.activities_per_lead,
            history_days=args.history_days,
            daily_files=args.daily_files,
        )
        print(result.summary())
        return 0
    if args.command == "features":
        if args.rebuild_to and not args.rebuild_from:
            print("mlsys features: --rebuild-to needs --rebuild-from", file=sys.stderr)
            return 2
        rebuild = (args.rebuild_from, args.rebuild_to or args.rebuild_from) if args.rebuild_from else None
        built = pipeline.build_features_gated(
            as_of, settings, training=args.training, full_refresh=args.full_refresh, rebuild_window=rebuild
        )
        print(json.dumps(built))
        return 0
    if args.command == "validate":
        from mlsys import validation

        # The suites the DAG gates run, in the same order: raw tables first, then the mart.
        raw_suites = validation.raw_suites(settings, training=args.training)
        reports = [validation.validate_raw(suite, settings, as_of=as_of) for suite in raw_suites]
        mart = validation.TRAINING_SNAPSHOTS if args.training else validation.LEAD_FEATURES
        reports.append(validation.validate_mart(mart, as_of, settings))
        for report in reports:
            print(report.summary())
        failures = [(r.suite, f) for r in reports for f in r.failures]
        if failures:
            suite, first = failures[0]
            print(
                f"mlsys validate: {len(failures)} blocking expectation(s) failed, first in {suite}: "
                f"{first.column or '<table>'}: {first.expectation}",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.command == "train":
        decision, trained = pipeline.retrain(
            as_of,
            settings,
            force=args.force,
            tune=args.tune,
            use_smote=not args.no_smote,
            class_weights=args.class_weights,
            estimator=args.estimator,
        )
        print(decision.reason)
        if trained is not None:
            print(trained["summary"])
        return 0
    if args.command == "score":
        if args.api or args.lead_id or args.payload:
            return _score_on_demand(args, settings)
        # The features of that date pass the gate before any model sees them (the raw tables
        # were gated by `mlsys features` or the DAG that built them).
        from mlsys import score as scoring

        if not settings.mart_path_to_gate("lead_features", as_of).exists():
            raise scoring.FeaturesMissingError(
                f"no features for {as_of}: run `mlsys features --as-of {as_of}` first"
            )
        pipeline.gate_scoring(as_of, settings, raw=False)
        published = pipeline.score_and_publish(as_of, settings=settings)
        print(
            f"scored {published['rows']:,} leads with {published['model_name']} "
            f"v{published['model_version']} -> {published['partition']}"
        )
        return 0
    if args.command == "champion":
        print(champion_summary(settings))
        return 0
    if args.command == "drift":
        from mlsys import drift

        drift_report = drift.drift_report(as_of, settings)
        print(drift_report.summary())
        if drift_report.psi:
            print(drift_report.table().to_string(index=False))
        realized, reason = drift.realized_performance_or_reason(as_of, settings)
        print(reason if realized else f"realized performance not measured: {reason}")
        return 0
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
