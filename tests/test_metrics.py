"""Tests for fedrec.shared.metrics: hand-computed small cases plus a few properties."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp

from fedrec.shared.metrics import (
    add_sums,
    beyond_accuracy,
    catalog_coverage,
    hit_rate,
    intra_list_diversity,
    metrics_from_sums,
    mrr,
    ndcg,
    novelty,
    personalization,
    precision_recall_ndcg_at_k,
    rank_of_positive,
    ranking_sums,
    simulated_ctr,
    top_k,
)

NEG_INF = -np.inf


# ------------------------------------------------------------------ sampled protocol

def test_rank_of_positive_hand_case():
    pos = np.array([0.5, 0.9, 0.2])
    neg = np.array([[0.1, 0.6, 0.5, NEG_INF],   # 0.6 above + 0.5 tied -> rank 2
                    [0.1, 0.2, 0.3, 0.4],       # nothing above -> 0
                    [0.3, 0.3, 0.3, 0.3]])      # all four above -> 4
    ranks = rank_of_positive(pos, neg)
    assert ranks.dtype == np.int64
    np.testing.assert_array_equal(ranks, [2, 0, 4])


def test_rank_of_positive_padding_never_outranks():
    # -inf padding does not count even against a -inf positive; a real 0.0 does.
    ranks = rank_of_positive(np.array([NEG_INF, NEG_INF]),
                             np.array([[NEG_INF, NEG_INF], [0.0, NEG_INF]]))
    np.testing.assert_array_equal(ranks, [0, 1])


def test_constant_model_gets_no_free_hits():
    ranks = rank_of_positive(np.ones(7), np.ones((7, 99)))
    np.testing.assert_array_equal(ranks, 99)
    assert hit_rate(ranks, 10) == 0.0 and ndcg(ranks, 10) == 0.0


def test_rank_of_positive_rejects_nan():
    with pytest.raises(ValueError):
        rank_of_positive(np.array([np.nan]), np.zeros((1, 3)))


def test_rank_invariant_to_negative_order():
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 5, 40).astype(float)
    neg = rng.integers(0, 5, (40, 20)).astype(float)
    shuffled = rng.permuted(neg, axis=1)
    np.testing.assert_array_equal(rank_of_positive(pos, neg), rank_of_positive(pos, shuffled))


RANKS = np.array([0, 2, 9, 10, 50])


def test_hit_rate_ndcg_mrr_hand_case():
    # HR@10: ranks 0, 2, 9 are < 10 -> 3/5
    assert hit_rate(RANKS, 10) == pytest.approx(0.6)
    assert hit_rate(RANKS, 1) == pytest.approx(0.2)
    # NDCG@10: (1/log2(2) + 1/log2(4) + 1/log2(11) + 0 + 0) / 5
    #        = (1 + 0.5 + 0.2890648) / 5 = 0.3578130
    assert ndcg(RANKS, 10) == pytest.approx(0.3578130, abs=1e-7)
    # NDCG@3: (1 + 0.5) / 5
    assert ndcg(RANKS, 3) == pytest.approx(0.3)
    # MRR: (1 + 1/3 + 1/10 + 1/11 + 1/51) / 5 = 1.5438503 / 5 = 0.3087701
    assert mrr(RANKS) == pytest.approx(0.3087701, abs=1e-7)


@pytest.mark.parametrize("fn", [lambda r: hit_rate(r, 10), lambda r: ndcg(r, 10), mrr])
def test_empty_ranks_raise(fn):
    with pytest.raises(ValueError):
        fn(np.array([], dtype=np.int64))


def test_bad_k_raises():
    with pytest.raises(ValueError):
        hit_rate(RANKS, 0)


def test_ranking_sums_hand_case():
    sums = ranking_sums(np.array([0, 3]), ks=(1, 5))
    # rank 0 hits @1 and @5; rank 3 hits only @5 with gain 1/log2(5) = 0.4306766
    assert sums == pytest.approx({
        "n": 2, "hr@1_sum": 1.0, "ndcg@1_sum": 1.0,
        "hr@5_sum": 2.0, "ndcg@5_sum": 1.4306766,
        "mrr_sum": 1.25,  # 1/1 + 1/4
    }, abs=1e-7)
    assert metrics_from_sums(sums) == pytest.approx({
        "hr@1": 0.5, "ndcg@1": 0.5, "hr@5": 1.0, "ndcg@5": 0.7153383, "mrr": 0.625},
        abs=1e-7)


def test_chunked_sums_equal_global_means():
    rng = np.random.default_rng(1)
    ranks = rng.integers(0, 100, 1000)
    cuts = [0, 0, 13, 400, 401, 777, 1000]  # uneven chunks, including an empty one
    chunks = [ranking_sums(ranks[a:b], ks=(5, 10)) for a, b in zip(cuts, cuts[1:])]
    assert chunks[0]["n"] == 0
    got = metrics_from_sums(functools.reduce(add_sums, chunks, {}))
    # HR sums are integer counts: exact. NDCG/MRR: equal up to float rounding.
    assert got["hr@5"] == hit_rate(ranks, 5)
    assert got["hr@10"] == hit_rate(ranks, 10)
    assert got["ndcg@10"] == pytest.approx(ndcg(ranks, 10), rel=1e-12)
    assert got["ndcg@5"] == pytest.approx(ndcg(ranks, 5), rel=1e-12)
    assert got["mrr"] == pytest.approx(mrr(ranks), rel=1e-12)


def test_sums_errors():
    with pytest.raises(ValueError):
        add_sums(ranking_sums(RANKS, ks=(5,)), ranking_sums(RANKS, ks=(10,)))
    with pytest.raises(ValueError):
        metrics_from_sums(ranking_sums(np.array([], dtype=np.int64)))


# ------------------------------------------------------------------ full ranking

def test_top_k_hand_case_ties_by_lower_index():
    scores = np.array([[0.1, 0.5, 0.5, 0.9, 0.5],
                       [5.0, 4.0, 3.0, 2.0, 1.0]])
    # row 0: 0.9 (item 3), then the 0.5 ties 1, 2, 4 -> lowest indices 1, 2
    # row 1: plain descending
    np.testing.assert_array_equal(top_k(scores, 3), [[3, 1, 2], [0, 1, 2]])


def test_top_k_exclude_and_padding():
    scores = np.array([[0.1, 0.5, 0.5, 0.9, 0.5],
                       [5.0, 4.0, 3.0, 2.0, 1.0]])
    exclude = np.array([[False, True, False, False, False],
                        [True, True, True, False, False]])
    # row 0: item 1 excluded -> 3, then ties 2, 4
    # row 1: only items 3, 4 allowed -> third slot empty (-1)
    expected = [[3, 2, 4], [3, 4, -1]]
    np.testing.assert_array_equal(top_k(scores, 3, exclude), expected)
    np.testing.assert_array_equal(top_k(scores, 3, sp.csr_matrix(exclude)), expected)


def test_top_k_minus_inf_is_a_real_score():
    # item 1 has score -inf but is allowed; item 0 is excluded
    out = top_k(np.array([[1.0, NEG_INF, 0.0]]), 3, np.array([[True, False, False]]))
    np.testing.assert_array_equal(out, [[2, 1, -1]])


def test_top_k_matches_full_stable_sort():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 6, (50, 30)).astype(float)  # many ties
    exclude = rng.random((50, 30)) < 0.3
    masked = np.where(exclude, NEG_INF, scores)
    for k in (1, 7, 15):
        full = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        full[np.take_along_axis(masked, full, axis=1) == NEG_INF] = -1  # too few allowed
        np.testing.assert_array_equal(top_k(scores, k, exclude), full)


def test_top_k_errors():
    with pytest.raises(ValueError):
        top_k(np.zeros((2, 3)), 4)
    with pytest.raises(ValueError):
        top_k(np.array([[0.0, np.nan]]), 1)


TOPK = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
RELEVANT = [np.array([2, 9]), np.array([], dtype=np.int64), np.array([7, 8, 9, 10])]


def test_precision_recall_ndcg_hand_case():
    # user 0: hits [0, 1, 0]; P = 1/3, R = 1/2,
    #   NDCG = (1/log2(3)) / (1 + 1/log2(3)) = 0.6309298 / 1.6309298 = 0.3868528
    #   (IDCG over min(|R|=2, k=3) = 2 positions), MRR = 1/2
    # user 1: no relevant items -> skipped
    # user 2: hits [1, 1, 1]; P = 1, R = 3/4, NDCG = 1 (IDCG over min(4, 3) = 3), MRR = 1
    expected = {"precision@3": (1 / 3 + 1) / 2, "recall@3": (0.5 + 0.75) / 2,
                "ndcg@3": (0.3868528 + 1) / 2, "hr@3": 1.0, "mrr@3": 0.75,
                "n": 2, "n_skipped": 1}
    got = precision_recall_ndcg_at_k(TOPK, RELEVANT, 3)
    assert got == pytest.approx(expected, abs=1e-7)
    csr = sp.csr_matrix((np.ones(6), ([0, 0, 2, 2, 2, 2], [2, 9, 7, 8, 9, 10])), shape=(3, 12))
    assert precision_recall_ndcg_at_k(TOPK, csr, 3) == pytest.approx(expected, abs=1e-7)


def test_precision_recall_uses_first_k_columns_and_ignores_padding():
    # k=2: user 0 hits [0, 1] -> P 1/2, R 1/2; user 2 list [7, -1]: hit, then empty slot
    topk = np.array([[1, 2, 3], [4, 5, 6], [7, -1, -1]])
    got = precision_recall_ndcg_at_k(topk, RELEVANT, 2)
    assert got["precision@2"] == pytest.approx((0.5 + 0.5) / 2)
    assert got["recall@2"] == pytest.approx((0.5 + 0.25) / 2)
    # user 2: DCG 1, IDCG 1 + 1/log2(3) -> 1 / 1.6309298 = 0.6131472
    assert got["ndcg@2"] == pytest.approx((0.3868528 + 0.6131472) / 2, abs=1e-7)


def test_full_ranking_agrees_with_sampled_for_one_relevant_item():
    # With one relevant item and all other items as "negatives" the two protocols coincide.
    rng = np.random.default_rng(3)
    scores = rng.random((40, 25))
    target = rng.integers(0, 25, 40)
    pos = scores[np.arange(40), target]
    neg = scores.copy()
    neg[np.arange(40), target] = NEG_INF
    ranks = rank_of_positive(pos, neg)
    got = precision_recall_ndcg_at_k(top_k(scores, 5), [np.array([t]) for t in target], 5)
    assert got["hr@5"] == pytest.approx(hit_rate(ranks, 5))
    assert got["ndcg@5"] == pytest.approx(ndcg(ranks, 5))
    assert got["recall@5"] == pytest.approx(hit_rate(ranks, 5))


def test_precision_recall_all_users_empty_raises():
    with pytest.raises(ValueError):
        precision_recall_ndcg_at_k(TOPK, [np.array([], dtype=np.int64)] * 3, 3)


# ------------------------------------------------------------------ beyond accuracy

def test_catalog_coverage_hand_case():
    # distinct items {0, 1, 2} of 10; the -1 slot is ignored
    assert catalog_coverage(np.array([[0, 1], [1, 2], [-1, 2]]), 10) == pytest.approx(0.3)


CATS = np.array([[1, 0],    # item 0
                 [1, 1],    # item 1
                 [0, 1],    # item 2
                 [0, 0]])   # item 3: no category


def test_intra_list_diversity_hand_case():
    lists = np.array([[0, 1, 2], [0, 3, -1], [2, -1, -1]])
    # user 0: cos(0,1) = 1/sqrt2, cos(0,2) = 0, cos(1,2) = 1/sqrt2
    #         -> mean sim sqrt2/3 = 0.4714045 -> ILD 0.5285955
    # user 1: item 3 has no category -> cos 0 -> ILD 1
    # user 2: a single item, no pairs -> skipped
    expected = (0.5285955 + 1.0) / 2
    assert intra_list_diversity(lists, CATS) == pytest.approx(expected, abs=1e-7)
    assert intra_list_diversity(lists, sp.csr_matrix(CATS)) == pytest.approx(expected, abs=1e-7)


def test_intra_list_diversity_matches_brute_force():
    rng = np.random.default_rng(4)
    cats = (rng.random((40, 6)) < 0.3).astype(float)
    lists = np.stack([rng.choice(40, 5, replace=False) for _ in range(30)])
    unit = cats / np.maximum(np.linalg.norm(cats, axis=1, keepdims=True), 1e-300)
    per_user = []
    for row in lists:
        sim = unit[row] @ unit[row].T
        per_user.append(1 - sim[np.triu_indices(5, 1)].mean())
    assert intra_list_diversity(lists, cats) == pytest.approx(np.mean(per_user), abs=1e-12)


def test_novelty_hand_case():
    pop = np.array([10, 5, 0, 1])
    # -log2(10/10) = 0, -log2(5/10) = 1, pop 0 -> 1: -log2(1/10) = 3.3219281 (twice)
    # mean = (0 + 1 + 3.3219281 + 3.3219281) / 4 = 1.9109640
    assert novelty(np.array([[0, 1], [2, 3]]), pop, 10) == pytest.approx(1.9109640, abs=1e-7)


def test_personalization_hand_case():
    # cos(u0, u1) = 1/2 (share item 0 of two each), the other pairs 0
    # mean over the 3 pairs = 1/6 -> 1 - 1/6
    lists = np.array([[0, 1], [0, 2], [3, 4]])
    assert personalization(lists, 5) == pytest.approx(5 / 6)
    assert personalization(np.array([[0, 1], [1, 0]]), 5) == pytest.approx(0.0, abs=1e-12)
    assert personalization(np.array([[0, 1], [2, 3]]), 5) == pytest.approx(1.0)


def test_personalization_matches_brute_force():
    rng = np.random.default_rng(5)
    lists = rng.integers(0, 20, (25, 6))          # repeats within a row are possible
    lists[rng.random(lists.shape) < 0.2] = -1     # and empty slots
    lists[0] = -1                                 # and a user with an empty list
    binary = np.zeros((25, 20))
    for u, row in enumerate(lists):
        binary[u, row[row >= 0]] = 1
    binary = binary[1:]
    unit = binary / np.linalg.norm(binary, axis=1, keepdims=True)
    gram = unit @ unit.T
    expected = 1 - gram[~np.eye(24, dtype=bool)].mean()
    assert personalization(lists, 20) == pytest.approx(expected, abs=1e-12)


def test_personalization_sampling():
    lists = np.random.default_rng(6).integers(0, 50, (100, 5))
    with pytest.raises(ValueError):
        personalization(lists, 50, max_users=10)
    a = personalization(lists, 50, max_users=10, rng=np.random.default_rng(7))
    b = personalization(lists, 50, max_users=10, rng=np.random.default_rng(7))
    assert a == b and 0.0 <= a <= 1.0


def test_simulated_ctr():
    assert simulated_ctr(np.array([[0.1, 0.3], [0.5, 0.7]])) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        simulated_ctr(np.array([[0.5, 1.5]]))


def test_beyond_accuracy_keys():
    lists = np.array([[0, 1, 2], [0, 3, 1]])
    assert set(beyond_accuracy(lists, 4)) == {"coverage@3", "personalization@3"}
    full = beyond_accuracy(lists, 4, item_categories=CATS, item_popularity=np.ones(4),
                           n_users=2)
    assert set(full) == {"coverage@3", "personalization@3", "diversity@3", "novelty@3"}
    assert full["coverage@3"] == 1.0
    assert full["novelty@3"] == pytest.approx(1.0)  # every item: -log2(1/2)


def test_list_validation():
    with pytest.raises(ValueError):
        catalog_coverage(np.array([[0, 5]]), 5)
    with pytest.raises(ValueError):
        catalog_coverage(np.array([[0.0, 1.0]]), 5)
