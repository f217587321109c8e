"""Lead ids in the CRM's type: the scored table's id types, text ids' shards, and the rules of
an id from outside (no services: scoring itself runs in tests/integration/test_text_ids.py)."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pytest

from mlsys import input_rules, score
from mlsys.cli import _lead_id


def test_text_ids_split_evenly_and_stably_whatever_the_batching() -> None:
    rng = np.random.default_rng(3)
    ids = pa.array([str(uuid.UUID(int=int(rng.integers(0, 2**62)), version=4)) for _ in range(40_000)])
    shards = score.shard_of(ids, 4)
    counts = np.bincount(shards, minlength=4)
    assert counts.min() > 0.9 * counts.max()
    # The same id gets the same shard in any batch, slice or chunking of the column.
    assert (score.shard_of(ids.slice(1000, 500), 4) == shards[1000:1500]).all()
    chunked = pa.chunked_array([ids.slice(0, 7), ids.slice(7)])
    assert (score.shard_of(chunked, 4) == shards).all()
    # A fixed function of the bytes: these values never change between processes or releases.
    assert score.text_id_hash(pa.array(["a", "00Q5e00000AbCdEfGH", ""])).tolist()[0] == 98
    assert score.text_id_hash(pa.array([""])).tolist() == [0]
    # Integer ids keep their hash: an Arrow column and a NumPy array agree.
    assert (score.shard_of(pa.array(np.arange(100)), 3) == score.shard_of(np.arange(100), 3)).all()


def test_the_scored_table_allows_bigint_or_varchar_ids() -> None:
    for found, expected in ((pa.int32(), pa.int64()), (pa.int64(), pa.int64()), (pa.string(), pa.string())):
        assert score.lead_id_type(pa.schema([("lead_id", found)])) == expected
    assert score.scored_schema(pa.string()).field("lead_id").type == pa.string()
    assert score.scored_schema().equals(score.SCORED_SCHEMA, check_metadata=True)
    with pytest.raises(TypeError, match=r"lead_id is double; the scored table allows BIGINT or VARCHAR"):
        score.lead_id_type(pa.schema([("lead_id", pa.float64())]), "f.parquet")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (42, 42),
        ("00Q5e00000AbCdEfGH", "00Q5e00000AbCdEfGH"),
        ("6f1c1a0e-3b2a-4c1e-9f00-0123456789ab", "6f1c1a0e-3b2a-4c1e-9f00-0123456789ab"),
        ("a b", "a b"),
    ],
)
def test_a_lead_id_is_an_integer_or_a_text_id(value: object, expected: object) -> None:
    assert input_rules.lead_id(value) == expected


@pytest.mark.parametrize("value", ["", " a", "a ", "a\tb", "x" * 129, True, 1.5, None, [1]])
def test_malformed_lead_ids_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        input_rules.lead_id(value)


def test_the_command_line_sends_integers_as_integers_and_the_rest_as_text() -> None:
    assert [_lead_id(t) for t in ("42", "-7", "0", "00123", "1e3", "00Q5e00000AbCdEfGH")] == [
        42,
        -7,
        0,
        "00123",
        "1e3",
        "00Q5e00000AbCdEfGH",
    ]
