"""Tests for fedrec.shared.rerank.mmr_rerank."""

from __future__ import annotations

import numpy as np
import pytest

from fedrec.shared.metrics import intra_list_diversity, top_k
from fedrec.shared.rerank import mmr_rerank

# Hand-built example. cos(v0, v1) = 3/5 = 0.6, cos(v0, v2) = 0, cos(v1, v2) = 4/5 = 0.8,
# v3 is a zero vector (similarity 0 to everything).
SCORES = np.array([4.0, 3.0, 2.0, 0.0])  # min-max -> rel = [1, 0.75, 0.5, 0]
VECS = np.array([[1.0, 0.0], [3.0, 4.0], [0.0, 1.0], [0.0, 0.0]])


def test_hand_built_example_lambda_half():
    # gain = 0.5 * rel - 0.5 * max_sim
    # pick 1: max_sim all 0 -> best rel -> item 0; max_sim = [-, 0.6, 0, 0]
    # pick 2: item1 0.375 - 0.3 = 0.075, item2 0.25 - 0 = 0.25, item3 0 -> item 2
    #         max_sim: item1 max(0.6, 0.8) = 0.8, item3 0
    # pick 3: item1 0.375 - 0.4 = -0.025, item3 0 - 0 = 0 -> item 3; then item 1
    np.testing.assert_array_equal(mmr_rerank(SCORES, VECS, 4, lambda_=0.5), [0, 2, 3, 1])
    np.testing.assert_array_equal(mmr_rerank(SCORES, VECS, 2, lambda_=0.5), [0, 2])


def test_lambda_one_is_plain_top_k():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, 500).astype(float)  # ties, broken by lower index
    vecs = rng.normal(size=(500, 8))
    for k in (1, 10, 30):
        got = mmr_rerank(scores, vecs, k, lambda_=1.0)
        np.testing.assert_array_equal(got, top_k(scores[None, :], k)[0])


def test_lambda_zero_picks_least_similar_after_first():
    # item 1 scores high but is almost a copy of item 0; item 2 is orthogonal to item 0
    scores = np.array([1.0, 0.9, 0.1, 0.5])
    vecs = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(mmr_rerank(scores, vecs, 2, lambda_=0.0), [0, 2])


def test_candidates_and_exclude():
    # pool {1, 2, 3} minus excluded 2 -> {1, 3}; k larger than the pool -> 2 items
    exclude = np.array([False, False, True, False])
    got = mmr_rerank(SCORES, VECS, 5, lambda_=1.0, candidates=np.array([1, 2, 3]),
                     exclude=exclude)
    np.testing.assert_array_equal(got, [1, 3])
    # -inf marks an unavailable item
    got = mmr_rerank(np.array([-np.inf, 1.0, 2.0, 0.0]), VECS, 4, lambda_=1.0)
    np.testing.assert_array_equal(got, [2, 1, 3])


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"k": 2, "lambda_": 1.5},
                                    {"k": 2, "lambda_": -0.1}])
def test_validation(kwargs):
    with pytest.raises(ValueError):
        mmr_rerank(SCORES, VECS, **kwargs)


def test_diversity_increases_as_lambda_decreases():
    rng = np.random.default_rng(1)
    n_items, n_users, k = 400, 20, 10
    # dense overlapping categories, so diversity does not saturate at 1 too early
    cats = (rng.random((n_items, 5)) < 0.5).astype(float)
    ild = []
    for lam in (1.0, 0.7, 0.4, 0.0):
        lists = np.stack([
            mmr_rerank(np.random.default_rng(100 + u).random(n_items), cats, k, lambda_=lam)
            for u in range(n_users)])
        ild.append(intra_list_diversity(lists, cats))
    # (1.0: 0.54, 0.7: 0.88, 0.4: 0.98, 0.0: 0.98 -- saturates at the low end)
    assert ild[0] < ild[1] < ild[2] <= ild[3], ild
