"""The vectorised kernels of core/rules.py against plain per-group Python (the definition they implement)."""

import numpy as np
import pandas as pd
import pytest

from core.rules import _top_k_per_group, sampling_noise


def _oracle(groups: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Per group, a stable sort by descending key; the first k finite ones are kept."""
    mask = np.zeros(len(keys), dtype=bool)
    for g in np.unique(groups):
        rows = [i for i in np.flatnonzero(groups == g) if np.isfinite(keys[i])]
        rows.sort(key=lambda i: -keys[i])  # sorted() is stable: of equal keys the earlier row stays first
        mask[rows[:k]] = True
    return mask


@pytest.mark.parametrize("layout", ["equal depth", "uneven depth", "one long group", "interleaved"])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_top_k_per_group_equals_a_stable_sort_per_group(layout, k):
    rng = np.random.default_rng(k)
    sizes = {"equal depth": [6] * 40, "uneven depth": rng.integers(1, 12, 40).tolist(),
             "one long group": [2] * 30 + [400], "interleaved": [5] * 40}[layout]
    groups = np.repeat(np.arange(len(sizes)), sizes)
    if layout == "interleaved":  # groups not stored as blocks: the sorting path
        groups = pd.factorize(rng.permutation(groups))[0]
    keys = rng.integers(0, 4, len(groups)).astype(float)  # many ties
    keys[rng.random(len(keys)) < 0.2] = -np.inf  # filtered candidates
    assert np.array_equal(_top_k_per_group(groups, keys, k), _oracle(groups, keys, k))


def test_sampling_noise_is_the_same_for_strings_and_categorical_ids():
    rng = np.random.default_rng(0)
    q = pd.Series([f"q{i}" for i in rng.integers(0, 50, 2000)], dtype=object)
    d = pd.Series([f"doc-{i}" for i in rng.integers(0, 300, 2000)], dtype=object)
    plain = sampling_noise(7, q, d)
    assert np.array_equal(plain, sampling_noise(7, q.astype("category"), d.astype("category")))
    assert np.array_equal(plain, sampling_noise(7, q.astype("str"), d.astype("str")))
    assert not np.array_equal(plain, sampling_noise(8, q, d))
