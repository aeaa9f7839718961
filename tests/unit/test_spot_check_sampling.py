"""The spot-check sample as a function of the seed: pinned, because a logged draw must give the
same sample when it is re-done years later (a change here breaks `redo_draw` of old draws)."""

from __future__ import annotations

from triage.spot_checks import sample_of

NUMBERS = [f"MS-2026-{i:06d}" for i in range(1, 21)]


def test_a_seed_always_draws_the_same_sample() -> None:
    assert sample_of(NUMBERS, "2026-11-30", 5) == [
        "MS-2026-000007",
        "MS-2026-000009",
        "MS-2026-000012",
        "MS-2026-000014",
        "MS-2026-000010",
    ]
    assert sample_of(NUMBERS, "2026-11-30", 5) == sample_of(list(NUMBERS), "2026-11-30", 5)


def test_a_small_population_is_drawn_whole_and_an_empty_one_gives_nothing() -> None:
    assert sorted(sample_of(NUMBERS, "x", 30)) == NUMBERS
    assert sample_of([], "x", 5) == []
    assert sample_of(NUMBERS, "x", 0) == []
