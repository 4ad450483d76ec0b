"""One-shot DP statistics: contributions, their sensitivity, the budget, on-device scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dp_accounting import dp_event as dpe

from fedrec.server import releases
from fedrec.shared import knn, privacy, stats
from fedrec.shared.ledger import Ledger


def test_popularity_contribution_hand_cases():
    # items oldest first; distinct newest first = [3, 1]
    np.testing.assert_allclose(stats.popularity_contribution(np.array([3, 1, 3]), 5),
                               [0, 1 / math.sqrt(2), 0, 1 / math.sqrt(2), 0])
    w = np.array([1.0, 0.5]) / math.sqrt(1.25)      # decay 0.5: 3 (newest) then 1
    np.testing.assert_allclose(stats.popularity_contribution(np.array([1, 3]), 5, 0.5),
                               [0, w[1], 0, w[0], 0])
    capped = stats.popularity_contribution(np.array([0, 1, 2]), 3, cap=2)
    np.testing.assert_allclose(capped, [0, 1 / math.sqrt(2), 1 / math.sqrt(2)])
    assert not stats.popularity_contribution(np.array([], np.int64), 4).any()


def test_pair_weight_and_cooccurrence_norm():
    assert stats.pair_weight(2) == 1.0
    assert stats.pair_weight(3) == pytest.approx(math.sqrt(1 / 3))
    assert stats.pair_weight(1) == 0.0
    for m in (2, 3, 7):
        packed = stats.cooccurrence_contribution(np.arange(m), 10)
        assert np.linalg.norm(packed) == pytest.approx(1.0)
        assert np.count_nonzero(packed) == m * (m - 1) // 2


def test_recent_head_items_newest_first_capped():
    head_pos = stats.head_positions(np.array([2, 5, 7]), 9)        # 2->0, 5->1, 7->2
    assert stats.recent_head_items(np.array([7, 1, 5, 2, 5]), head_pos, 2).tolist() == [1, 0]


def test_sparse_sum_equals_sum_of_packed_uploads():
    rng = np.random.default_rng(0)
    h = 8
    hist = [rng.choice(h, size=rng.integers(0, 6), replace=False) for _ in range(20)]
    total = stats.cooccurrence_sum(hist, h)
    packed = sum(stats.cooccurrence_contribution(p, h) for p in hist)
    np.testing.assert_allclose(total[np.triu_indices(h, k=1)], packed)
    np.testing.assert_allclose(total, total.T)
    assert not np.diag(total).any()


@pytest.mark.parametrize("seed", range(5))
def test_replacing_one_user_moves_each_sum_by_at_most_two(seed):
    """The sensitivity the events assume (REPLACE_ONE, 2), through the server's own
    bounding: a device that sends an inflated vector or repeated positions is cut."""
    rng = np.random.default_rng(seed)
    n_items, h, cap = 30, 12, 5
    users = [rng.choice(n_items, size=rng.integers(1, 15), replace=False) for _ in range(10)]
    pops = [stats.popularity_contribution(u, n_items, 0.9) for u in users]
    evil_pop = rng.normal(size=n_items) * 100                      # not unit norm
    base = releases.popularity_sum(pops, n_items)
    swapped = releases.popularity_sum(pops[:-1] + [evil_pop], n_items)
    assert np.linalg.norm(base - swapped) <= 2 + 1e-9
    heads = [rng.choice(h, size=rng.integers(0, h), replace=False) for _ in range(10)]
    evil_pos = np.repeat(np.arange(h), 3)                          # repeats, too many
    base = releases.cooccurrence_total(heads, h, cap)
    swapped = releases.cooccurrence_total(heads[:-1] + [evil_pos], h, cap)
    diff = (base - swapped)[np.triu_indices(h, k=1)]               # what is released
    assert np.linalg.norm(diff) <= 2 + 1e-9
    removed = releases.cooccurrence_total(heads[:-1], h, cap)[np.triu_indices(h, k=1)]
    assert np.linalg.norm(base[np.triu_indices(h, k=1)] - removed) <= 1 + 1e-9


def test_a_malformed_contribution_counts_as_zero():
    good = [np.array([0, 1]), np.array([1, 2])]
    np.testing.assert_array_equal(releases.cooccurrence_total(good + [np.array([0, 9])], 5, 3),
                                  releases.cooccurrence_total(good, 5, 3))
    vectors = [stats.popularity_contribution(np.array([0, 1]), 4)]
    bad = [np.full(4, np.nan), np.ones(3)]
    np.testing.assert_array_equal(releases.popularity_sum(vectors + bad, 4),
                                  releases.popularity_sum(vectors, 4))


def test_exact_gaussian_curve_agrees_with_dp_accounting():
    for z, delta in ((0.5, 1e-5), (1.0, 1e-5), (3.0, 5e-4)):
        exact = stats.gaussian_epsilon(z, delta)
        pld = privacy.epsilon(dpe.GaussianDpEvent(z), delta, "pld")
        assert exact <= pld <= exact * 1.01
    # hand check of the closed form: z = 1, ε = 0 gives δ = 2Φ(1/2) - 1
    assert stats.gaussian_delta(1.0, 0.0) == pytest.approx(0.3829249, abs=1e-6)


def test_budget_split_composes_to_the_total():
    split = stats.split_budget(0.8, 0.25)
    assert split.multiplier("popularity") == pytest.approx(1.6)
    assert stats.composed_multiplier([split.multiplier(r) for r in split.shares]) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        stats.split_budget(0.8, 1.0)


def test_calibration_meets_the_target_tightly():
    shares = (("cooccurrence", 0.8), ("popularity", 0.2))
    z = releases.calibrate_total(2.0, 1e-4, shares)
    event = dpe.ComposedDpEvent(list(stats.BudgetSplit(z, dict(shares)).events().values()))
    eps = privacy.epsilon(event, 1e-4, "pld", "replace_one")
    assert 1.97 <= eps <= 2.0
    assert releases.calibrate_total(math.inf, 1e-4, shares) == 0.0


def test_ledger_is_written_before_any_noise(noise_draws):
    saved, drawn = noise_draws
    users = [np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([2, 3])]

    def collect(name, request):
        if name == "popularity":
            return [stats.popularity_contribution(u, 4) for u in users]
        pos = stats.head_positions(request["head"], 4)
        return [stats.recent_head_items(u, pos, request["cap"]) for u in users]

    settings = releases.ReleaseSettings(("popularity", "cooccurrence"), 1.0, 0, 1.0, 0.5, 3, 3,
                                        knn.KnnSettings(), noise_seed=1)
    ledger = Ledger("replace_one", 1e-3)
    out = releases.run_releases(collect, 4, settings, ledger,
                                lambda led: saved.append(len(led.history)))
    assert drawn == [1, 2] and len(ledger.history) == 2
    assert len(out.head) == 3 and out.similarity.shape == (3, 3)


def test_secret_noise_differs_seeded_noise_repeats():
    a, b = releases.noise_generator(None).normal(size=3), releases.noise_generator(None).normal(size=3)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(releases.noise_generator(4).normal(size=3),
                                  releases.noise_generator(4).normal(size=3))


def test_low_rank_keeps_the_top_eigenpairs():
    v = np.array([[1.0, 0], [0, 1.0]])
    m = v @ np.diag([5.0, 1.0]) @ v.T
    np.testing.assert_allclose(knn.low_rank(m, 1), [[5.0, 0], [0, 0]])
    np.testing.assert_allclose(knn.low_rank(m, 0), m)


def test_knn_scores_hand_computed():
    sim = np.array([[0, 2.0, 1.0], [2.0, 0, 3.0], [1.0, 3.0, 0]])
    released = knn.Released(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 1, 2]), sim)
    settings = knn.KnnSettings(decay=0.5, alpha=0.0)
    # history oldest first: item 0 then item 1 (newest weighs 1, the other 0.5)
    np.testing.assert_allclose(knn.knn_scores(np.array([0, 1]), released, settings),
                               0.5 * sim[0] + 1.0 * sim[1])
    pop_only = knn.device_scores(np.array([0, 1]), released, knn.KnnSettings(knn_weight=0))
    np.testing.assert_allclose(pop_only, (released.popularity - 2.5) / np.std(released.popularity))
    fused = knn.device_scores(np.array([0, 1]), released, knn.KnnSettings(decay=0.5))
    assert fused[3] < fused[2]          # item 3 is outside the head: popularity alone


def test_raw_contributions_sum_to_the_centralized_counts():
    """Without DP a device sends indicators: the server's sums are X^T X exactly
    (item counts on the diagonal, co-occurrence counts off it)."""
    rng = np.random.default_rng(2)
    n = 7
    users = [rng.choice(n, size=rng.integers(1, 6), replace=True) for _ in range(9)]
    x = np.zeros((len(users), n))
    for u, items in enumerate(users):
        x[u, items] = 1.0
    gram = x.T @ x
    pops = [stats.popularity_contribution(u, n, bounded=False) for u in users]
    np.testing.assert_allclose(releases.popularity_sum(pops, n, bounded=False), np.diag(gram))
    everything = stats.head_positions(np.arange(n), n)
    heads = [stats.recent_head_items(u, everything, cap=0) for u in users]
    co = releases.cooccurrence_total(heads, n, cap=0, bounded=False)
    np.testing.assert_allclose(co, gram - np.diag(np.diag(gram)))
    assert stats.pair_weight(4, bounded=False) == 1.0
    assert list(stats.choose_head(np.array([3.0, 1.0, 2.0]), 0)) == [0, 1, 2]   # 0: all


def test_raw_contributions_refuse_noise():
    settings = dict(releases=("popularity",), popularity_decay=1.0, popularity_cap=0,
                    popularity_share=0.5, head=0, cap=0, knn=knn.KnnSettings(), bounded=False)
    releases.ReleaseSettings(noise_multiplier=0.0, **settings)
    with pytest.raises(ValueError, match="no sensitivity bound"):
        releases.ReleaseSettings(noise_multiplier=1.0, **settings)


def test_ease_weights_hand_computed():
    """2 items, counts 3 and 5, co-occurrence 2, penalty 1: each item's ridge
    regression on the other is c / (count + penalty): 2/4 and 2/6."""
    weights = knn.ease(np.array([[0.0, 2.0], [2.0, 0.0]]), np.array([3.0, 5.0]), 1.0)
    np.testing.assert_allclose(weights, [[0.0, 2 / 4], [2 / 6, 0.0]])


def test_top_k_keeps_each_candidates_nearest_items():
    co = np.array([[0, 5.0, 1.0, 2.0], [5.0, 0, 3.0, 0.5], [1.0, 3.0, 0, 4.0],
                   [2.0, 0.5, 4.0, 0]])
    sim = knn.similarity(co, np.ones(4), knn.KnnSettings(alpha=0.0, top_k=2))
    # column j keeps its two largest entries (its candidate neighbourhood)
    np.testing.assert_allclose(sim[:, 0], [0, 5.0, 0, 2.0])
    np.testing.assert_allclose(sim[:, 3], [2.0, 0, 4.0, 0])
    assert (np.count_nonzero(sim, axis=0) == 2).all()


def test_ease_scores_fuse_on_the_device(tmp_path):
    sim = np.array([[0, 1.0, 0.0], [1.0, 0, 0.0], [0.0, 0.0, 0]])
    weights = np.array([[0, 0.0, 2.0], [0.0, 0, 0.0], [2.0, 0.0, 0]])
    released = knn.Released(np.array([1.0, 1.0, 1.0, 2.0]), np.arange(3), sim, weights)
    knn_only = knn.KnnSettings(knn_weight=100.0)
    both = knn.KnnSettings(knn_weight=100.0, ease_lambda=1.0, ease_weight=300.0)
    history = np.array([0])
    assert np.argmax(knn.device_scores(history, released, knn_only)[:3]) == 1
    assert np.argmax(knn.device_scores(history, released, both)[:3]) == 2   # EASE decides
    knn.save_released(tmp_path / "r.npz", released, both)
    loaded, settings = knn.load_released(tmp_path / "r.npz")
    assert settings == both
    np.testing.assert_array_equal(loaded.ease, weights)


def test_weighted_pairs_keep_unit_norm_and_the_server_rebuilds_them():
    """pair_beta: a device's pairs weigh a_i a_j, scaled to norm 1 (hand case: a = 1, 2, 3
    gives pairs 2, 3, 6, sum of squares 49, scale 1/7)."""
    a = np.array([1.0, 2.0, 3.0])
    assert stats.pair_scale(a) == pytest.approx(1 / 7)
    assert stats.pair_scale(np.ones(4)) == pytest.approx(stats.pair_weight(4))
    weight = np.array([1.0, 2.0, 3.0, 0.5])
    total = stats.cooccurrence_sum([np.array([0, 1, 2])], 4, item_weight=weight)
    np.testing.assert_allclose(total[np.triu_indices(4, k=1)], [2 / 7, 3 / 7, 0, 6 / 7, 0, 0])
    rng = np.random.default_rng(1)
    for _ in range(20):                 # any history: its share of the sum has norm 1
        pos = rng.choice(4, size=rng.integers(2, 5), replace=False)
        one = stats.cooccurrence_sum([pos], 4, item_weight=weight)[np.triu_indices(4, k=1)]
        assert np.linalg.norm(one) == pytest.approx(1.0)
    sim = knn.similarity(total, np.array([1.0, 4.0, 9.0, 1.0]),
                         knn.KnnSettings(alpha=0.5, pair_beta=0.5))   # undo, then cosine
    np.testing.assert_allclose(sim, total)      # (d_i d_j)^(alpha - beta) = 1


def test_ease_sees_the_counts_whatever_the_pair_weights():
    """--pair-beta reweights the released sum; EASE is solved on the unweighted counts."""
    co = np.array([[0, 2.0, 1.0], [2.0, 0, 3.0], [1.0, 3.0, 0]])
    popularity = np.array([4.0, 9.0, 1.0, 0.5])
    head = np.array([0, 1, 2])
    plain = knn.KnnSettings(ease_lambda=1.0, ease_weight=1.0)
    weighted = knn.KnnSettings(ease_lambda=1.0, ease_weight=1.0, pair_beta=0.5)
    w = knn.pair_weights(popularity[head], weighted)
    a = releases.post_process(popularity, head, co, plain).ease
    b = releases.post_process(popularity, head, co * np.outer(w, w), weighted).ease
    np.testing.assert_allclose(a, b)
