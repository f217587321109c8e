"""A mart is validated once per build: the pass is recorded next to the file it validated.

`mlsys features` gates the mart it builds; `mlsys score` then gates "the features of that
date" again, because a file may have been put there by hand, copied from elsewhere or built
by a project whose gate was off. Re-running the suite on the same bytes buys nothing (5.5 s
of a 16.6 s night at 1M leads), so a pass leaves ``<file>.gx-pass.json``: the suite, the
file's size, modification time and inode, and the SHA-256 of the suite's expectations file.
A later gate of the same file skips GX when all of them still match; any change (a rebuild,
a copy over it, an edited suite) validates it again. The record is written only after the
file is in place, so a staged build never carries a pass it did not earn.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from mlsys.settings import Settings

logger = logging.getLogger(__name__)


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".gx-pass.json")


def _suite_sha256(suite: str, settings: Settings) -> str | None:
    definition = Path(settings.gx_context_dir) / "expectations" / f"{suite}.json"
    try:
        return hashlib.sha256(definition.read_bytes()).hexdigest()
    except OSError:
        return None


def _identity(suite: str, path: Path, settings: Settings) -> dict[str, Any] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return {
        "suite": suite,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "inode": stat.st_ino,
        "suite_sha256": _suite_sha256(suite, settings),
    }


def record_pass(suite: str, path: Path, settings: Settings, summary: dict[str, Any]) -> None:
    """Note that ``path`` passed ``suite`` (``summary``: what `gate_all` returned for it)."""
    identity = _identity(suite, path, settings)
    if identity is None:
        return
    record = record_path(path)
    tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({**identity, "result": summary}, indent=2, default=str) + "\n")
        os.replace(tmp, record)
    except OSError as exc:  # a read-only folder: the next gate validates again, no harm
        logger.warning("could not record the gate's pass of %s: %s", path, exc)


def passed_before(suite: str, path: Path, settings: Settings) -> dict[str, Any] | None:
    """The recorded pass of ``suite`` on this very file (same size, mtime, inode and suite
    definition), or None: then the gate runs."""
    try:
        recorded = json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        return None
    identity = _identity(suite, path, settings)
    if identity is None or not isinstance(recorded, dict):
        return None
    if any(recorded.get(key) != value for key, value in identity.items()):
        return None
    result = recorded.get("result")
    return result if isinstance(result, dict) else None
