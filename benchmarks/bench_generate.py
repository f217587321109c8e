"""Generator throughput: wall time and peak RSS of `mlsys generate` at a given size.

    .venv/bin/python benchmarks/bench_generate.py --leads 1000000

Runs the generator in a child process (so peak RSS is its own) and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--activities-per-lead", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "mlsys.cli",
                "generate",
                "--leads",
                str(args.leads),
                "--activities-per-lead",
                str(args.activities_per_lead),
                "--out",
                str(out),
            ],
            check=True,
        )
        wall = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size_mb = sum(p.stat().st_size for p in out.rglob("*.parquet")) / 1e6
    print(
        json.dumps(
            {
                "leads": args.leads,
                "wall_s": round(wall, 2),
                "peak_rss_mb": round(peak_mb),
                "parquet_mb": round(size_mb),
            }
        )
    )


if __name__ == "__main__":
    main()
