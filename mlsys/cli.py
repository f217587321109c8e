"""`mlsys` command line (DESIGN section 5b): every stage without Airflow.

Exit codes: 0 success, 1 failure with a one-line reason on stderr, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from mlsys.settings import Settings

log = logging.getLogger("mlsys")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from exc


def _today() -> date:
    return datetime.now(UTC).date()


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

    for name, text in (
        ("features", "dbt build of lead_features (and --training: training_snapshots)"),
        ("validate", "Great Expectations gate; exit 1 on a blocking failure"),
        ("score", "score every lead into the partition of --as-of"),
        ("drift", "drift of the features against the champion's training data"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--as-of", type=_date, default=None, help="feature cut-off (default: today UTC)")
        if name in ("features", "validate"):
            p.add_argument("--training", action="store_true", help="the training snapshots mart")

    t = sub.add_parser("train", help="train a challenger, evaluate, register, promote")
    t.add_argument("--as-of", type=_date, default=None)
    t.add_argument("--tune", action="store_true", help="randomized search, SMOTE inside each fold")
    t.add_argument("--force", action="store_true", help="train even without drift")
    t.add_argument("--no-smote", action="store_true")
    t.add_argument("--estimator", choices=["logreg", "hgb"], default="logreg")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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

    settings = Settings.from_env()
    as_of = getattr(args, "as_of", None) or _today()
    if args.command == "generate":
        from mlsys.generate import generate

        result = generate(
            args.out or settings.data_dir,
            n_leads=args.leads,
            seed=args.seed,
            end_date=args.end_date,
            horizon_days=settings.horizon_days,
            activities_per_lead=args.activities_per_lead,
        )
        print(result.summary())
        return 0
    if args.command == "features":
        build = pipeline.build_training_features if args.training else pipeline.build_scoring_features
        print(json.dumps(build(as_of, settings)))
        return 0
    if args.command == "validate":
        from mlsys import validation

        reports = [validation.validate_raw_leads(settings)]
        if args.training:
            reports.append(validation.validate_training_snapshots(as_of, settings))
        else:
            reports.append(validation.validate_lead_features(as_of, settings))
        for report in reports:
            print(report.summary())
        failed = [r.suite for r in reports if not r.success]
        if failed:
            print(
                f"mlsys validate: blocking expectations failed in {', '.join(failed)}",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.command == "train":
        pipeline.build_training_features(as_of, settings)
        pipeline.gate_training(as_of, settings)
        decision = pipeline.decide_retrain(as_of, force=args.force, scheduled=False, settings=settings)
        print(decision.reason)
        if not decision.train:
            return 0
        out = pipeline.train_challenger(
            as_of,
            settings=settings,
            tune=args.tune,
            use_smote=not args.no_smote,
            estimator=args.estimator,
            trigger="cli",
        )
        print(out["summary"])
        return 0
    if args.command == "score":
        scored = pipeline.score_partition(as_of, run_id="manual", settings=settings)
        published = pipeline.publish_partition(scored, settings)
        print(
            f"scored {published['rows']:,} leads with {published['model_name']} "
            f"v{published['model_version']} -> {published['partition']}"
        )
        return 0
    if args.command == "drift":
        from mlsys import drift

        drift_report = drift.drift_report(as_of, settings)
        print(drift_report.summary())
        if drift_report.psi:
            print(drift_report.table().to_string(index=False))
        return 0
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
