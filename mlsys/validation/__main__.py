"""``python -m mlsys.validation``: regenerate a GX context's committed files, or validate one file.

python -m mlsys.validation write-context [--root great_expectations]
python -m mlsys.validation validate SUITE PATH
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from mlsys.settings import Settings
from mlsys.validation import validate_parquet
from mlsys.validation.context_files import write_context


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlsys.validation", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write-context", help="regenerate the committed GX context files")
    write.add_argument("--root", type=Path, help="the GX context (default: MLSYS_GX_CONTEXT_DIR)")
    run = sub.add_parser("validate", help="validate one Parquet file/folder/glob against a suite")
    run.add_argument("suite")
    run.add_argument("path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    if args.command == "write-context":
        for path in write_context(args.root or settings.gx_context_dir):
            print(f"wrote {path}")
        return 0
    try:
        report = validate_parquet(args.suite, args.path, settings)
    except ValueError as exc:  # an unknown suite: say which exist
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.success else 1


if __name__ == "__main__":
    sys.exit(main())
