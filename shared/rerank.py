"""Re-ranking of one user's scores for diversity: Maximal Marginal Relevance.

MMR (Carbonell & Goldstein 1998) builds the list greedily, each step taking

    argmax_{i in pool \\ S}  lambda * rel_i - (1 - lambda) * max_{j in S} cos(v_i, v_j)

so an item similar to one already chosen pays a penalty. ``lambda = 1`` is plain
ranking by score; ``lambda = 0`` ignores scores after the first pick and chooses the
item least similar to the list so far.
"""

from __future__ import annotations

import numpy as np

from fedrec.shared.metrics import top_k

__all__ = ["mmr_rerank"]


def mmr_rerank(scores: np.ndarray, item_vectors: np.ndarray, k: int, lambda_: float = 0.7,
               candidates: np.ndarray | None = None, exclude: np.ndarray | None = None
               ) -> np.ndarray:
    """Re-rank one user's items with MMR and return the top ``k`` item indices.

    Relevance ``rel`` is the score min-max normalised over the candidate pool,
    ``(s - min) / (max - min)`` (all 0 if the scores are equal), so it is on the same
    [0, 1] scale as cosine similarity and ``lambda_`` means the same thing for any
    model. Similarity is the cosine of ``item_vectors`` rows; a zero vector has
    similarity 0 to everything. Ties go to the higher score, then the lower item
    index, so ``lambda_ = 1`` returns exactly :func:`fedrec.shared.metrics.top_k`'s list.

    For speed the greedy loop only looks at the ``max(10 * k, 200)`` best-scored
    candidates (``O(pool * k * D)`` instead of ``O(N * k * D)``). This is exact for
    ``lambda_ = 1`` and, in practice, for the usual ``lambda_`` in [0.5, 1]: an item
    that deep has ``rel`` well below the top ones and rarely wins the trade-off.
    Normalisation uses the whole candidate pool, not the prefiltered one, so the
    prefilter never rescales ``rel``. With small ``lambda_`` deep items could win in
    an exhaustive search; the prefilter then also keeps the list from drifting into
    irrelevant items.

    Args:
        scores: ``(N,)`` scores of one user; ``-inf`` marks an item as unavailable,
            NaN or ``+inf`` raise ``ValueError``.
        item_vectors: ``(N, D)`` item representations (embeddings or multi-hot
            categories) for cosine similarity.
        k: list length, ``>= 1``.
        lambda_: relevance/diversity trade-off in [0, 1].
        candidates: optional item indices to restrict the pool to (duplicates ignored).
        exclude: optional ``(N,)`` boolean mask of items to drop (e.g. already seen).

    Returns:
        int64 item indices in pick order, length ``min(k, pool size)``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_ must be in [0, 1], got {lambda_!r}")
    s = np.asarray(scores, dtype=np.float64)
    vecs = np.asarray(item_vectors, dtype=np.float64)
    if s.ndim != 1 or vecs.ndim != 2 or vecs.shape[0] != s.shape[0]:
        raise ValueError(f"need scores (N,) and item_vectors (N, D); got {s.shape} and "
                         f"{vecs.shape}")
    if np.isnan(s).any() or (s == np.inf).any():
        raise ValueError("scores contain NaN or +inf")

    keep = s > -np.inf
    if candidates is not None:
        cand = np.zeros(s.shape, dtype=bool)
        cand[np.asarray(candidates, dtype=np.int64)] = True
        keep &= cand
    if exclude is not None:
        excl = np.asarray(exclude, dtype=bool)
        if excl.shape != s.shape:
            raise ValueError(f"exclude has shape {excl.shape}, scores {s.shape}")
        keep &= ~excl
    pool = np.flatnonzero(keep)  # ascending item index
    if pool.size == 0:
        return np.zeros(0, dtype=np.int64)

    lo, hi = s[pool].min(), s[pool].max()
    depth = min(max(10 * k, 200), pool.size)
    # Prefilter to the best `depth`, ordered by score desc then index asc, so that
    # argmax's first-index tie-break below is that same order.
    pool = pool[top_k(s[pool][None, :], depth)[0]]
    rel = (s[pool] - lo) / (hi - lo) if hi > lo else np.zeros(pool.size)

    v = vecs[pool]
    norms = np.linalg.norm(v, axis=1)
    v = v / np.where(norms > 0, norms, 1.0)[:, None]  # zero rows stay zero -> cos 0

    n_pick = min(k, pool.size)
    picked = np.empty(n_pick, dtype=np.int64)
    max_sim = np.zeros(pool.size)  # max similarity to the list so far (empty: 0)
    taken = np.zeros(pool.size, dtype=bool)
    for step in range(n_pick):
        gain = lambda_ * rel - (1.0 - lambda_) * max_sim
        gain[taken] = -np.inf
        best = int(np.argmax(gain))
        picked[step] = best
        taken[best] = True
        np.maximum(max_sim, v @ v[best], out=max_sim)
    return pool[picked]
