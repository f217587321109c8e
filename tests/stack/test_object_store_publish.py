"""The pointer publish mode on an object store: a bucket mounted with s3fs (FUSE) as the
scored table's folder, as docs/spark.md says to mount it.

No object store runs here, so the bucket is served by moto's S3 server (the S3 API over HTTP,
in this process); the mount is the real s3fs from Debian, the publish the real
`mlsys.score.publish`. The swap mode refuses the mount with a line that names the pointer
mode; the pointer mode publishes versions and markers that the S3 API lists, and the BI view
file reads the committed night through the mount.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from mlsys import bi, score, scored_table
from mlsys.settings import Settings
from tests.live import free_port
from tests.stack.test_stack_static import missing_tool

pytestmark = pytest.mark.slow

AS_OF = date(2026, 6, 1)
BUCKET = "scored-leads"


@pytest.fixture
def bucket_mount(tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    """(the data folder, an S3 client): the bucket mounted at <data>/scored_leads."""
    if shutil.which("s3fs") is None or not Path("/dev/fuse").exists():
        missing_tool("s3fs and /dev/fuse are needed (`make test` installs s3fs)")
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",  # pragma: allowlist secret (moto accepts any key)
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=BUCKET)
    passwd = tmp_path / "s3fs.passwd"
    passwd.write_text("test:test\n")
    passwd.chmod(0o600)
    data = tmp_path / "data"
    mount = data / "scored_leads"
    mount.mkdir(parents=True)
    subprocess.run(
        [
            *("s3fs", BUCKET, str(mount)),
            *("-o", f"url={endpoint}", "-o", "use_path_request_style", "-o", f"passwd_file={passwd}"),
        ],
        check=True,
        timeout=60,
    )
    try:
        assert os.path.ismount(mount)
        yield data, s3
    finally:
        subprocess.run(["umount", str(mount)], check=False, timeout=60)
        server.stop()


def _stage(source: Path, settings: Settings, name: str) -> Path:
    staging = settings.staging_dir / f"score_date={AS_OF.isoformat()}.{name}"
    staging.mkdir(parents=True)
    shutil.copyfile(source, staging / scored_table.PART_FILE)
    return staging


def test_nights_publish_onto_a_mounted_bucket_in_the_pointer_mode(
    published: Path, settings: Settings, bucket_mount: tuple[Path, Any]
) -> None:
    data, s3 = bucket_mount
    source = published / scored_table.PART_FILE
    leads = pq.read_metadata(source).num_rows

    swap = Settings(**{**settings.__dict__, "data_dir": data, "publish_mode": "swap"})
    with pytest.raises(OSError, match="on an object-store mount set MLSYS_PUBLISH_MODE=pointer"):
        score.publish(AS_OF, _stage(source, swap, "swap"), swap)

    pointer = Settings(**{**swap.__dict__, "publish_mode": "pointer"})
    for run in range(3):
        score.publish(AS_OF, _stage(source, pointer, f"run{run}"), pointer)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    night = f"score_date={AS_OF.isoformat()}"
    assert f"{night}/_committed/v=3" in keys and f"{night}/v=3/{scored_table.PART_FILE}" in keys
    assert f"{night}/v=1/{scored_table.PART_FILE}" not in keys, "two versions are kept"
    assert f"{night}/v=2/{scored_table.PART_FILE}" in keys
    body = s3.get_object(Bucket=BUCKET, Key=f"{night}/v=3/{scored_table.PART_FILE}")["Body"].read()
    assert body == source.read_bytes()
    assert score.read_partition(pointer, AS_OF).num_rows == leads
    con = bi.connect(pointer)
    try:
        assert con.execute("select count(*), count(distinct score_date) from scored_leads").fetchone() == (
            leads,
            1,
        )
    finally:
        con.close()
