"""Where a night of the scored-leads table is, in either publish mode (MLSYS_PUBLISH_MODE).

``swap`` (the default, a local or POSIX volume): a night is the folder
``scored_leads/score_date=D/`` holding ``part-00000.parquet``; a new run's folder is swapped
in at once (``mlsys.score.publish``, renameat2 RENAME_EXCHANGE).

``pointer`` (storage without atomic rename: an object store through a FUSE mount such as
Mountpoint for S3 or gcsfuse, NFS): nothing visible is ever renamed or overwritten. A run
writes its file as a new version, ``score_date=D/v=<n>/part-00000.parquet``, and only then
creates the commit marker ``score_date=D/_committed/v=<n>``, an empty file created once
(exclusive create: a second publisher of the same version fails instead of overwriting).
Readers take, per night, the highest committed version: a run killed before its marker left
a version no reader follows, and a reader in the middle of the previous version keeps a
complete file, which stays until the next publish after. Decision: docs/adr/0006-spark-engine.md.

Every reader in mlsys goes through `current_files` and `published_dates`, which read both
layouts; the BI view file (`mlsys.bi`) holds the view of its mode.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from datetime import date
from pathlib import Path

from mlsys.settings import Settings

log = logging.getLogger(__name__)

PART_FILE = "part-00000.parquet"
COMMITTED_DIR = "_committed"
VERSION_PREFIX = "v="
# Committed versions kept per night: the current one, and the previous one for the readers
# that opened it before the last publish.
KEEP_VERSIONS = 2
# An uncommitted version is removed once this old: younger, it may be another publisher's
# upload in flight (a CLI run beside the DAG's), not a killed run's leftover.
STALE_UPLOAD_SECONDS = 3600
_VERSION = re.compile(r"^v=(\d+)$")


class PublishModeMismatch(RuntimeError):
    """The table holds nights of the other publish mode, which this mode's views do not show."""


def _night_date(folder: Path) -> date | None:
    try:
        return date.fromisoformat(folder.name.split("=", 1)[1])
    except (IndexError, ValueError):
        return None


def _versions(folder: Path, sub: str = "") -> list[int]:
    """Version numbers under `folder/sub` named v=<n>, ascending."""
    try:
        names = [p.name for p in (folder / sub).iterdir()] if sub else [p.name for p in folder.iterdir()]
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in map(_VERSION.match, names) if m)


def committed_versions(settings: Settings, day: date) -> list[int]:
    return _versions(settings.partition_dir(day), COMMITTED_DIR)


def current_files(settings: Settings, day: date) -> list[Path]:
    """The files readers read for the night of `day` (none: not published): the highest
    committed version's (pointer mode), else the swapped-in folder's Parquet files (mlsys
    writes one, part-00000.parquet)."""
    folder = settings.partition_dir(day)
    committed = committed_versions(settings, day)
    if committed:
        return [folder / f"{VERSION_PREFIX}{committed[-1]}" / PART_FILE]
    try:
        return sorted(folder.glob("*.parquet"))
    except OSError:
        return []


def published_dates(settings: Settings) -> list[date]:
    """score_date of every published night, oldest first."""
    try:
        folders = list(settings.scored_dir.glob("score_date=*"))
    except OSError:
        return []
    return sorted(
        day for day in map(_night_date, folders) if day is not None and current_files(settings, day)
    )


def check_mode(settings: Settings) -> None:
    """Refuse to publish in one mode into a table that holds nights of the other: the BI views
    of a mode read its layout only, so those nights would drop out of them."""
    scored = settings.scored_dir
    if not scored.exists():
        return
    if settings.publish_mode == "pointer":
        other = sorted({p.parent.name for p in scored.glob("score_date=*/*.parquet")})
        hint = "published by the swap mode"
    else:
        other = sorted(p.parent.name for p in scored.glob(f"score_date=*/{COMMITTED_DIR}"))
        hint = "published by the pointer mode"
    if other:
        raise PublishModeMismatch(
            f"{scored} holds {len(other)} night(s) {hint} ({', '.join(other[:3])}"
            f"{', ...' if len(other) > 3 else ''}); MLSYS_PUBLISH_MODE={settings.publish_mode} "
            "would hide them from the BI views. Keep the table's mode, or publish into a new "
            "table (another MLSYS_DATA_DIR) and backfill it (docs/spark.md)."
        )


def publish_version(day: date, staged_file: Path, settings: Settings) -> Path:
    """Pointer mode: copy the staged file in as the night's next version, then commit it;
    returns the version's file. Earlier versions beyond `KEEP_VERSIONS` and versions never
    committed are removed after the commit."""
    folder = settings.partition_dir(day)
    markers = folder / COMMITTED_DIR
    markers.mkdir(parents=True, exist_ok=True)
    version = max([0, *_versions(folder), *_versions(markers)]) + 1
    target = folder / f"{VERSION_PREFIX}{version}"
    target.mkdir()
    # A copy, not a rename: the upload an object store makes, under a key no reader follows.
    with open(staged_file, "rb") as src, open(target / PART_FILE, "wb") as dst:
        shutil.copyfileobj(src, dst, length=16 * 2**20)
        dst.flush()
        os.fsync(dst.fileno())
    # The commit: created once, never overwritten (O_EXCL: a concurrent publisher of the same
    # version fails here rather than replacing what readers may already follow).
    fd = os.open(markers / f"{VERSION_PREFIX}{version}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.close(fd)
    fsync_dir(markers)
    _remove_old_versions(folder, version)
    log.info("published %s (version %d)", target, version)
    return target / PART_FILE


def _remove_old_versions(folder: Path, current: int) -> None:
    """Housekeeping after a commit; never fails the night it follows (a mount that refuses
    deletes, Mountpoint for S3 without --allow-delete, leaves the versions and says so)."""
    committed = _versions(folder, COMMITTED_DIR)
    keep = set(committed[-KEEP_VERSIONS:])
    stale_before = time.time() - STALE_UPLOAD_SECONDS
    for version in _versions(folder):
        if version in keep or version > current:
            continue
        path = folder / f"{VERSION_PREFIX}{version}"
        marker = folder / COMMITTED_DIR / f"{VERSION_PREFIX}{version}"
        try:
            if version not in committed and path.stat().st_mtime > stale_before:
                continue  # an upload that may still be running
            # Marker first: a reader never follows a marker to a removed file.
            marker.unlink(missing_ok=True)
            shutil.rmtree(path)
        except OSError as exc:
            log.warning("could not remove %s (%s); the night is published, it stays", path, exc)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
