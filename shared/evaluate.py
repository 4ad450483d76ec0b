"""Evaluate any scorer on a split: sampled (NCF) and full-ranking metrics, beyond accuracy.

A *scorer* is ``score(users: (B,) int) -> (B, N)`` scores of every catalogue item; every
model (popularity, item-kNN, NeuMF, a federated global model with on-device user
embeddings) exposes one, so all are judged by the same code.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedrec.shared import metrics
from fedrec.shared.interactions import Interactions, Split

Scorer = Callable[[np.ndarray], np.ndarray]


def sampled_ranks(score: Scorer, users: np.ndarray, positives: np.ndarray,
                  negatives: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """0-based rank of each user's held-out item among its sampled negatives."""
    ranks = []
    for s in range(0, len(users), chunk):
        rows = score(users[s:s + chunk])
        idx = np.arange(len(rows))
        pos = rows[idx, positives[s:s + chunk]]
        cand = negatives[s:s + chunk]
        neg = np.where(cand >= 0, np.take_along_axis(rows, np.maximum(cand, 0), axis=1), -np.inf)
        ranks.append(metrics.rank_of_positive(pos, neg))
    return np.concatenate(ranks) if ranks else np.zeros(0, np.int64)


def evaluate(score: Scorer, split: Split, negatives: np.ndarray, *, which: str = "test",
             k: int = 10, full_ranking: bool = True, beyond: bool = True,
             inter: Interactions | None = None, affinity: Callable | None = None,
             rng: np.random.Generator | None = None, chunk: int = 1024) -> dict[str, float]:
    """All metrics for the held-out item of every evaluated user.

    Args:
        score: the scorer.
        split: leave-last-out split; ``which`` picks ``"test"`` or ``"val"``.
        negatives: (U_eval, M) sampled negatives aligned with the evaluated users.
        k: list length for @k metrics.
        full_ranking: also rank the held-out item among all items the user has not
            seen in training (and validation, for test), keys ``full_*``.
        beyond: coverage, diversity, novelty, personalization of the full-ranking top-k
            lists (needs ``inter`` for categories and popularity).
        affinity: ground-truth click probability ``affinity(user_ids, item_ids)``
            (synthetic data); adds simulated ``ctr@k`` of the top-k lists.
        rng: seeded generator for sampled personalization on many users.
    """
    users = split.test_users if which == "test" else split.val_users
    held = split.test_items if which == "test" else split.val_items
    if len(users) == 0:
        raise ValueError("no user has enough interactions to be evaluated")
    ranks = sampled_ranks(score, users, held, negatives, chunk)
    out = metrics.metrics_from_sums(metrics.ranking_sums(ranks, ks=(k,)))
    if not full_ranking:
        return out
    seen = split.seen_matrix(include_val=(which == "test"))
    lists, full = [], []
    for s in range(0, len(users), chunk):
        u = users[s:s + chunk]
        rows = score(u)
        top = metrics.top_k(rows, k, exclude=seen[u].toarray().astype(bool))
        lists.append(top)
        full.append(metrics.precision_recall_ndcg_at_k(top, [np.array([h]) for h in held[s:s + chunk]], k))
    lists_all = np.concatenate(lists)
    n = sum(f["n"] for f in full)
    for key in full[0]:
        if key != "n" and "@" in key:
            out["full_" + key] = float(sum(f[key] * f["n"] for f in full) / n)
    if beyond and inter is not None:
        out.update(metrics.beyond_accuracy(
            lists_all, inter.n_items, item_categories=inter.item_categories,
            # rows are unique (user, item) pairs, so this counts distinct users per item
            item_popularity=np.bincount(split.train_items, minlength=inter.n_items),
            n_users=inter.n_users, rng=rng or np.random.default_rng(0)))
    if affinity is not None and inter is not None:
        # top_k pads short lists with -1: score only real slots (padding counts as 0)
        real = lists_all >= 0
        probs = np.asarray(affinity(inter.user_ids[users][:, None],
                                    inter.item_ids[np.where(real, lists_all, 0)]), np.float64)
        out[f"ctr@{k}"] = metrics.simulated_ctr(np.where(real, probs, 0.0))
    return out
