"""The scoring loop's worker threads (`mlsys.score._in_order`): results in the order of the
batches, few batches in flight, a failure stops the rest. Scoring itself on threads:
tests/integration/test_score.py."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mlsys import score


def test_results_come_in_order_with_at_most_threads_plus_one_in_flight() -> None:
    taken = 0

    def items() -> Iterator[int]:
        nonlocal taken
        for i in range(60):
            taken += 1
            yield i

    def square(i: int) -> int:
        time.sleep(0.003 if i % 4 == 0 else 0)  # later items often finish first
        return i * i

    results, most_in_flight = [], 0
    for result in score._in_order(square, items(), 3):
        most_in_flight = max(most_in_flight, taken - len(results))
        results.append(result)
    assert results == [i * i for i in range(60)]
    assert most_in_flight == 3 + 1


def test_a_failed_item_raises_and_no_more_are_taken() -> None:
    started: list[int] = []

    def fail_at_5(i: int) -> int:
        started.append(i)
        if i == 5:
            raise ValueError("batch 5 failed")
        return i

    with pytest.raises(ValueError, match="batch 5 failed"):
        list(score._in_order(fail_at_5, iter(range(1000)), 2))
    assert max(started) <= 5 + 2  # submitted: the failed item and `threads` after it


def test_one_thread_is_a_plain_loop() -> None:
    assert list(score._in_order(str, iter(range(5)), 1)) == ["0", "1", "2", "3", "4"]
