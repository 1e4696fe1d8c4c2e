"""Occluder masks shared by the evaluations of a study bundle: computed once, equal to a fresh computation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ersm_eval import occluders
from ersm_eval.occluders import PATTERNS, pattern_masks, shared_pattern_masks


@pytest.fixture
def counted(monkeypatch):
    calls = []
    for name in ("random_squares", "object"):
        pattern = PATTERNS.get(name)

        def fn(*args, _original=pattern.fn, _name=name):
            calls.append(_name)
            return _original(*args)

        monkeypatch.setitem(PATTERNS._entries, name, replace(pattern, fn=fn))
    return calls


def test_repeated_requests_are_computed_once_and_equal_a_fresh_computation(counted):
    fresh = pattern_masks("random_squares", 32, [0.2, 0.4], 0, 7)
    assert counted == ["random_squares"]
    with shared_pattern_masks() as memo:
        first = pattern_masks("random_squares", 32, [0.2, 0.4], 0, 7)
        again = pattern_masks("random_squares", 32, (0.2, 0.4), 0, 7)
        other = pattern_masks("random_squares", 32, [0.2, 0.4], 0, 8)  # another image: its own occluder
        assert counted == ["random_squares"] * 3
        assert again is first and np.array_equal(first, fresh) and not np.array_equal(other, first)
        assert not first.flags.writeable  # shared: nobody may change it
        memo.clear()
        pattern_masks("random_squares", 32, [0.2, 0.4], 0, 7)
        assert counted == ["random_squares"] * 4  # cleared between batches
    pattern_masks("random_squares", 32, [0.2, 0.4], 0, 7)
    assert counted == ["random_squares"] * 5 and occluders._SHARED.memo is None  # outside: no memo


def test_the_object_mask_is_part_of_the_key(counted):
    left = np.zeros((32, 32)); left[:, :16] = 1
    right = np.zeros((32, 32)); right[:, 16:] = 1
    with shared_pattern_masks():
        a = pattern_masks("object", 32, [0.5], 0, 3, left)
        b = pattern_masks("object", 32, [0.5], 0, 3, right)  # same index, another object: computed again
        assert counted == ["object", "object"]
        assert not (a[0] & (right > 0.5)).any() and not (b[0] & (left > 0.5)).any()
        assert pattern_masks("object", 32, [0.5], 0, 3, left.copy()) is a
