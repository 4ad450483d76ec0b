"""Warm-started NeuMF on the device (issue #21 item 4, variant "frozen", shared/warm.py):
the user fit against hand-computed gradient steps, the kNN factorisation, and the fusion
weight in ``knn.device_scores`` (0: scores unchanged)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedrec.shared import knn, warm


def test_fit_user_two_gradient_steps_by_hand():
    # h = 2, r = 2, Q = I; the device holds item 0, so every negative is item 1.
    # step 1 from u = 0: grad = -sigma(0) q0 + sigma(0) q1 = (-0.5, 0.5) -> u = (0.5, -0.5)
    # step 2: s0 = 0.5, s1 = -0.5: grad = -sigma(-0.5) q0 + sigma(-0.5) q1
    factors = np.eye(2)
    one = warm.fit_user(np.array([0]), factors, epochs=1, lr=1.0, l2=0.0, negatives=1)
    np.testing.assert_allclose(one, [0.5, -0.5])
    two = warm.fit_user(np.array([0]), factors, epochs=2, lr=1.0, l2=0.0, negatives=1)
    s = 1.0 / (1.0 + np.exp(0.5))                      # sigma(-0.5) = 0.37754
    np.testing.assert_allclose(two, [0.5 + s, -0.5 - s])


def test_fit_user_ridge_and_weights_by_hand():
    # two negatives per positive (both item 1) and l2 = 0.25, one step of lr 1 from 0:
    # grad = (-0.5 q0 + 2 * 0.5 q1) / 1 = (-0.5, 1.0); the ridge term is 0 at u = 0
    factors = np.eye(2)
    u = warm.fit_user(np.array([0]), factors, epochs=1, lr=1.0, l2=0.25, negatives=2)
    np.testing.assert_allclose(u, [0.5, -1.0])
    # second step adds 2 l2 u = 0.5 u to the gradient
    u2 = warm.fit_user(np.array([0]), factors, epochs=2, lr=1.0, l2=0.25, negatives=2)
    s_pos, s_neg = 1 / (1 + np.exp(0.5)), 1 / (1 + np.exp(1.0))   # sigma(-0.5), sigma(-1)
    grad = np.array([-s_pos, 2 * s_neg]) + 0.5 * u
    np.testing.assert_allclose(u2, u - grad)


def test_fit_user_without_positives_or_untouched_items_is_zero():
    factors = np.eye(3)
    kw = dict(epochs=5, lr=1.0, l2=0.0, negatives=2)
    assert not warm.fit_user(np.array([], np.int64), factors, **kw).any()
    assert not warm.fit_user(np.array([0, 1, 2]), factors, **kw).any()


def test_similarity_factors_recover_a_low_rank_psd_matrix_and_drop_negative_directions():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(30, 3))
    sim = basis @ basis.T
    q = warm.similarity_factors(sim, 3)
    np.testing.assert_allclose(q @ q.T, sim, atol=1e-9)
    neg = -np.outer(basis[:, 0], basis[:, 0])            # only a negative eigenvalue
    assert np.allclose(warm.similarity_factors(neg, 1), 0.0, atol=1e-6)
    assert np.isclose(np.sqrt(np.mean(np.sum(warm.unit_rms(q) ** 2, axis=1))), 1.0)


def _released(h: int = 12, n_items: int = 20) -> knn.Released:
    rng = np.random.default_rng(1)
    basis = rng.normal(size=(h, 2))
    sim = basis @ basis.T
    np.fill_diagonal(sim, 0.0)
    return knn.Released(rng.random(n_items), np.arange(h), sim)


def test_warm_weight_zero_leaves_device_scores_unchanged_and_positive_weight_adds_qu():
    released, items = _released(), np.array([0, 3, 5, 15])
    base = knn.KnnSettings(knn_weight=1.0)
    off = knn.device_scores(items, released, base)
    np.testing.assert_array_equal(off, knn.device_scores(
        items, released, dataclasses.replace(base, warm_rank=2)))
    on = dataclasses.replace(base, warm_weight=2.0, warm_rank=2)
    expected = off + 2.0 * knn._on_catalogue(released, warm.warm_scores(items, released, on))
    np.testing.assert_allclose(knn.device_scores(items, released, on), expected)
    assert not np.allclose(expected, off)


def test_warm_uses_als_factors_when_released_and_nothing_for_popularity_only():
    released = _released()
    factors = np.arange(24, dtype=float).reshape(12, 2)
    als = dataclasses.replace(released, factors=factors, similarity=None)
    np.testing.assert_allclose(warm.item_factors(als, 5), warm.unit_rms(factors))
    pop = dataclasses.replace(released, similarity=None)
    assert warm.item_factors(pop, 5) is None
    settings = knn.KnnSettings(knn_weight=0.0, warm_weight=3.0)
    np.testing.assert_array_equal(knn.device_scores(np.array([1]), pop, settings),
                                  knn.device_scores(np.array([1]), pop, knn.KnnSettings()))


def test_warm_settings_are_validated_and_saved_with_the_release(tmp_path):
    with pytest.raises(ValueError, match="warm"):
        knn.KnnSettings(warm_weight=-1.0)
    with pytest.raises(ValueError, match="warm"):
        knn.KnnSettings(warm_epochs=0)
    settings = knn.KnnSettings(warm_weight=0.5, warm_rank=6, warm_lr=0.25)
    knn.save_released(tmp_path / "r.npz", _released(), settings)
    assert knn.load_released(tmp_path / "r.npz")[1] == settings


def test_warm_settings_travel_in_the_recommend_message_and_come_from_the_release_config():
    from fedrec.shared import protocol_releases as proto
    from fedrec.shared.release_config import ReleaseConfig

    settings = knn.KnnSettings(warm_weight=10.0, warm_rank=3, warm_epochs=7, warm_lr=0.2,
                               warm_l2=0.5, warm_negatives=2)
    content = proto.recommend_content(_released(), settings)
    assert proto.knn_settings(content[proto.CONFIG]) == settings
    assert ReleaseConfig(pipeline="als", warm_weight=2.5).knn.warm_weight == 2.5
    assert ReleaseConfig().knn.warm_weight == 0.0          # default: off (did not pay)
