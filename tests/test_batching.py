"""Length groups, worked out by hand."""

from __future__ import annotations

import itertools

import pytest

from codealign.batching import length_groups


def test_no_lengths_no_groups() -> None:
    assert length_groups([]) == []


def test_short_and_long_sequences_run_apart_when_padding_costs_more_than_a_pass() -> None:
    # Sorted: 40 (0), 45 (2), 250 (1), 256 (3); a pass costs 100.
    #   one pass:                100 + 4 * 256                  = 1124
    #   {40, 45} + {250, 256}:   100 + 2 * 45 + 100 + 2 * 256   =  802  <- cheapest
    #   {40} + {45} + {250, 256}: 100 + 40 + 100 + 45 + 100 + 512 = 897
    assert length_groups([40, 250, 45, 256], overhead=100) == [[0, 2], [1, 3]]


def test_a_costly_pass_keeps_one_group() -> None:
    # Splitting saves 2 * (256 - 45) = 422 padded tokens, less than a pass of 1000.
    assert length_groups([40, 250, 45, 256], overhead=1000) == [[0, 2, 1, 3]]


def test_free_passes_split_only_where_lengths_differ() -> None:
    # Equal lengths gain nothing from a split, and a tie keeps the fewer passes.
    assert length_groups([5, 10, 5], overhead=0) == [[0, 2], [1]]


@pytest.mark.parametrize("overhead", [0, 7, 64, 2048])
def test_every_index_lands_in_exactly_one_group(overhead: int) -> None:
    lengths = [(i * 37) % 101 + 1 for i in range(40)]
    groups = length_groups(lengths, overhead)
    assert sorted(i for g in groups for i in g) == list(range(40))
    # Runs of the sorted lengths, shortest first: no group reaches below the one before.
    for before, after in itertools.pairwise(groups):
        assert max(lengths[i] for i in before) <= min(lengths[i] for i in after)


def test_negative_overhead_is_refused() -> None:
    with pytest.raises(ValueError, match="overhead"):
        length_groups([1, 2], overhead=-1)
