"""Evaluation metrics: ranking accuracy (sampled and full) and beyond-accuracy.

Two protocols are used in the project:

- **Sampled (NCF protocol, He et al. 2017)**: each user has one held-out positive and
  ``M`` (99) sampled negatives. :func:`rank_of_positive` gives the positive's 0-based
  rank among them; :func:`hit_rate`, :func:`ndcg` and :func:`mrr` average over users.
  For a federation, :func:`ranking_sums` returns additive sums that clients report and
  the server adds with :func:`add_sums`, then turns into means with
  :func:`metrics_from_sums` (the same numbers as pooling all users' ranks).
- **Full ranking**: score every item, drop the ones seen in training, rank
  (:func:`top_k`) and compare the top ``k`` with each user's set of relevant items
  (:func:`precision_recall_ndcg_at_k`).

Recommendation lists are ``(U, K)`` integer item indices. The value ``-1`` marks an
empty slot (what :func:`top_k` returns when a user has fewer than ``k`` items left to
recommend); every list metric ignores it.

Everything here is pure numpy / scipy.sparse and deterministic unless a
``np.random.Generator`` is passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

__all__ = [
    "rank_of_positive", "hit_rate", "ndcg", "mrr",
    "ranking_sums", "metrics_from_sums", "add_sums",
    "top_k", "precision_recall_ndcg_at_k",
    "catalog_coverage", "intra_list_diversity", "novelty", "personalization",
    "simulated_ctr", "beyond_accuracy",
]

PAD = -1  #: Item index that marks an empty slot in a recommendation list.


# --------------------------------------------------------------------------- helpers

def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _ranks(ranks: np.ndarray) -> np.ndarray:
    r = np.asarray(ranks)
    if r.ndim != 1:
        raise ValueError(f"ranks must be 1-D, got shape {r.shape}")
    if r.size == 0:
        raise ValueError("ranks is empty: no users to average over")
    if not np.issubdtype(r.dtype, np.integer) or (r < 0).any():
        raise ValueError("ranks must be non-negative integers")
    return r


def _lists(lists: np.ndarray, n_items: int | None = None) -> np.ndarray:
    """Validate a (U, K) list matrix; entries are item indices or PAD (-1)."""
    a = np.asarray(lists)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"lists must be a non-empty (U, K) array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"lists must hold integer item indices, got dtype {a.dtype}")
    if (a < PAD).any() or (n_items is not None and (a >= n_items).any()):
        raise ValueError(f"lists holds item indices outside [0, {n_items}) (and -1 for empty)")
    return a.astype(np.int64, copy=False)


def _dcg_discounts(k: int) -> np.ndarray:
    """``1 / log2(i + 2)`` for positions ``i = 0 .. k-1``."""
    return 1.0 / np.log2(np.arange(k, dtype=np.float64) + 2.0)


# ------------------------------------------------------------------ sampled protocol

def rank_of_positive(pos_scores: np.ndarray, neg_scores: np.ndarray) -> np.ndarray:
    """0-based rank of each user's positive among its sampled negatives.

    ``rank_u = #{j : neg[u, j] > pos[u]} + #{j : neg[u, j] == pos[u]}``

    Ties are **pessimistic**: a negative scoring exactly the same as the positive ranks
    above it. A constant (or collapsed) model therefore gets rank ``M`` for every user
    and HR@k = NDCG@k = 0, never a free hit. ``-np.inf`` in ``neg_scores`` is padding
    (for users with fewer than ``M`` negatives) and never outranks, even a ``-inf``
    positive. NaN scores raise ``ValueError`` (they compare false with everything and
    would silently give hits).

    Args:
        pos_scores: ``(U,)`` score of each user's held-out positive.
        neg_scores: ``(U, M)`` scores of the sampled negatives.

    Returns:
        ``(U,)`` int64 ranks in ``[0, M]``.
    """
    pos = np.asarray(pos_scores, dtype=np.float64)
    neg = np.asarray(neg_scores, dtype=np.float64)
    if pos.ndim != 1 or neg.ndim != 2 or neg.shape[0] != pos.shape[0]:
        raise ValueError(f"need pos_scores (U,) and neg_scores (U, M); got {pos.shape} "
                         f"and {neg.shape}")
    if np.isnan(pos).any() or np.isnan(neg).any():
        raise ValueError("scores contain NaN")
    above = (neg >= pos[:, None]) & (neg != -np.inf)
    return above.sum(axis=1).astype(np.int64)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """HR@k = mean over users of ``[rank < k]`` (the positive is in the top k)."""
    r, k = _ranks(ranks), _check_k(k)
    return float(np.mean(r < k))


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item = mean of ``1 / log2(rank + 2)`` if ``rank < k`` else 0.

    (The ideal DCG with one relevant item is ``1 / log2(2) = 1``.)
    """
    r, k = _ranks(ranks), _check_k(k)
    return float(np.mean(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)))


def mrr(ranks: np.ndarray) -> float:
    """MRR = mean of ``1 / (rank + 1)`` (no cut-off)."""
    r = _ranks(ranks)
    return float(np.mean(1.0 / (r + 1.0)))


def ranking_sums(ranks: np.ndarray, ks: Sequence[int] = (10,)) -> dict[str, float]:
    """Additive per-user sums of HR@k, NDCG@k and MRR, for federated aggregation.

    Returns ``{"n": U, "hr@k_sum": ..., "ndcg@k_sum": ..., "mrr_sum": ...}`` (one pair of
    ``@k`` keys per ``k`` in ``ks``). Each client reports its dict; the server combines
    them with :func:`add_sums` and calls :func:`metrics_from_sums`, which divides each
    sum by ``n``: ``sum_c S_c / sum_c n_c`` is exactly the mean over all users pooled
    (HR sums are integers so exact bit for bit; NDCG/MRR agree up to float rounding,
    ~1e-16 relative). An empty ``ranks`` is allowed here (a client with no test users
    reports ``n = 0``). Values are plain Python numbers so the dict serialises as JSON.
    """
    r = np.asarray(ranks)
    if r.size:
        r = _ranks(r)
    else:
        r = np.zeros(0, dtype=np.int64)
    out: dict[str, float] = {"n": int(r.size)}
    for k in ks:
        k = _check_k(k)
        hit = r < k
        out[f"hr@{k}_sum"] = float(hit.sum())
        out[f"ndcg@{k}_sum"] = float(np.where(hit, 1.0 / np.log2(r + 2.0), 0.0).sum())
    out["mrr_sum"] = float((1.0 / (r + 1.0)).sum())
    return out


def add_sums(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    """Key-wise sum of two :func:`ranking_sums` dicts (an empty dict is the identity).

    Both must have the same keys (same ``ks``), otherwise ``ValueError``: silently
    dropping a metric that one client did not report would bias the mean.
    """
    if not a:
        return dict(b)
    if not b:
        return dict(a)
    if set(a) != set(b):
        raise ValueError(f"cannot add sums with different keys: {sorted(a)} vs {sorted(b)}")
    return {key: a[key] + b[key] for key in a}


def metrics_from_sums(sums: Mapping[str, float]) -> dict[str, float]:
    """Means from a (possibly summed) :func:`ranking_sums` dict: ``"X_sum" / n -> "X"``.

    ``{"n": 4, "hr@10_sum": 3, ...}`` gives ``{"hr@10": 0.75, ...}``. Raises
    ``ValueError`` if ``n`` is missing or zero.
    """
    n = sums.get("n", 0)
    if not n:
        raise ValueError("sums have n = 0 users: nothing to average")
    return {key[: -len("_sum")]: float(v) / n for key, v in sums.items() if key.endswith("_sum")}


# ------------------------------------------------------------------ full ranking

def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | sp.spmatrix | None = None
          ) -> np.ndarray:
    """The ``k`` highest-scoring items per user, best first.

    Ties are broken deterministically by the lower item index, also at the top-k
    boundary (plain ``argpartition`` would cut a tie arbitrarily). Cost is
    ``O(U * N)`` for the partial partition plus ``O(U * k log k)`` for sorting the
    selection, instead of ``O(U * N log N)`` for a full sort.

    Args:
        scores: ``(U, N)`` scores; NaN raises ``ValueError``; ``-inf`` is a legal
            (lowest) score.
        k: list length, ``1 <= k <= N``.
        exclude: optional ``(U, N)`` boolean mask (dense, or any scipy.sparse matrix
            whose non-zeros mark items) of items never to recommend, typically the
            training interactions.

    Returns:
        ``(U, k)`` int64 item indices. If a user has fewer than ``k`` items not
        excluded, the trailing slots are ``-1``.
    """
    s = np.array(scores, dtype=np.float64)  # copy: we overwrite excluded entries
    if s.ndim != 2:
        raise ValueError(f"scores must be (U, N), got shape {s.shape}")
    k = _check_k(k)
    n_users, n_items = s.shape
    if k > n_items:
        raise ValueError(f"k={k} exceeds the number of items N={n_items}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")

    if exclude is None:
        excl = np.zeros(s.shape, dtype=bool)
    elif sp.issparse(exclude):
        excl = sp.csr_matrix(exclude).toarray() != 0
    else:
        excl = np.asarray(exclude, dtype=bool)
    if excl.shape != s.shape:
        raise ValueError(f"exclude has shape {excl.shape}, scores {s.shape}")
    s[excl] = -np.inf

    # k-th largest value per row (introselect, as argpartition), then take everything
    # strictly above it plus the lowest-index allowed items tied with it.
    kth = -np.partition(-s, k - 1, axis=1)[:, k - 1:k]
    above = (s > kth) & ~excl
    tied = (s == kth) & ~excl
    need = k - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))

    rows, cols = np.nonzero(chosen)  # row-major: cols ascending within each row
    counts = chosen.sum(axis=1)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    pos = np.arange(rows.size) - np.repeat(starts, counts)
    idx = np.full((n_users, k), n_items, dtype=np.int64)  # n_items sorts after real items
    val = np.full((n_users, k), -np.inf)
    idx[rows, pos] = cols
    val[rows, pos] = s[rows, cols]

    order = np.lexsort((idx, -val), axis=1)  # by score desc, then item index asc
    out = np.take_along_axis(idx, order, axis=1)
    out[out == n_items] = PAD
    return out


def _relevance_csr(relevant: Sequence[np.ndarray] | sp.spmatrix, n_users: int,
                   n_cols: int) -> sp.csr_matrix:
    """Relevant sets as a binary CSR ``(U, n_cols)`` with no duplicates or stored zeros."""
    if sp.issparse(relevant):
        m = sp.csr_matrix(relevant, copy=True)
        m.eliminate_zeros()
        m.sum_duplicates()
        if m.shape[0] != n_users:
            raise ValueError(f"relevant has {m.shape[0]} rows, topk {n_users}")
        m.data = np.ones_like(m.data, dtype=np.int8)
        return m
    if len(relevant) != n_users:
        raise ValueError(f"relevant has {len(relevant)} users, topk {n_users}")
    sets = [np.unique(np.asarray(r, dtype=np.int64).ravel()) for r in relevant]
    lengths = np.array([x.size for x in sets], dtype=np.int64)
    cols = np.concatenate(sets) if sets else np.zeros(0, dtype=np.int64)
    if (cols < 0).any():
        raise ValueError("relevant item indices must be non-negative")
    width = max(n_cols, int(cols.max()) + 1 if cols.size else 0)
    indptr = np.concatenate(([0], np.cumsum(lengths)))
    return sp.csr_matrix((np.ones(cols.size, dtype=np.int8), cols, indptr),
                         shape=(n_users, width))


def precision_recall_ndcg_at_k(topk: np.ndarray, relevant: Sequence[np.ndarray] | sp.spmatrix,
                               k: int) -> dict[str, float]:
    """Full-ranking accuracy of top-k lists against each user's set of relevant items.

    For a user with relevant set ``R`` (``|R| > 0``) and hits ``h_i = [topk[i] in R]``,
    ``i < k``:

    - ``precision@k = sum(h) / k`` (empty ``-1`` slots count as misses);
    - ``recall@k = sum(h) / |R|``;
    - ``ndcg@k = DCG / IDCG`` with ``DCG = sum_i h_i / log2(i + 2)`` and
      ``IDCG = sum_{i < min(|R|, k)} 1 / log2(i + 2)``;
    - ``hr@k = [sum(h) > 0]``;
    - ``mrr@k = 1 / (first hit position + 1)``, 0 without a hit.

    Each is the mean over users with ``|R| > 0``; the others are skipped (their
    metrics are undefined). ``n`` is the number of users averaged and ``n_skipped``
    the number skipped, so federated clients can combine means weighted by ``n``.

    Args:
        topk: ``(U, >= k)`` item indices best first (:func:`top_k`); only the first
            ``k`` columns are used.
        relevant: per-user arrays of relevant item indices, or a ``(U, N)``
            scipy.sparse matrix whose non-zeros mark relevant items.
        k: cut-off.
    """
    k = _check_k(k)
    lists = _lists(topk)
    if lists.shape[1] < k:
        raise ValueError(f"topk has {lists.shape[1]} columns, need at least k={k}")
    lists = lists[:, :k]
    n_users = lists.shape[0]
    rel = _relevance_csr(relevant, n_users, int(lists.max()) + 1)

    # A hit is a (user, item) pair present in both; compare flat keys user * W + item.
    width = max(rel.shape[1], int(lists.max()) + 1)
    rel_keys = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(rel.indptr)) * width \
        + rel.indices
    list_keys = np.arange(n_users, dtype=np.int64)[:, None] * width + lists
    hits = (lists != PAD) & np.isin(list_keys, rel_keys)

    n_rel = np.diff(rel.indptr)
    keep = n_rel > 0
    n = int(keep.sum())
    if n == 0:
        raise ValueError("no user has a relevant item: nothing to average")
    hits, n_rel = hits[keep], n_rel[keep]

    disc = _dcg_discounts(k)
    n_hits = hits.sum(axis=1)
    idcg = np.cumsum(disc)[np.minimum(n_rel, k) - 1]
    first = np.argmax(hits, axis=1)
    rr = np.where(n_hits > 0, 1.0 / (first + 1.0), 0.0)
    return {
        f"precision@{k}": float(np.mean(n_hits / k)),
        f"recall@{k}": float(np.mean(n_hits / n_rel)),
        f"ndcg@{k}": float(np.mean((hits @ disc) / idcg)),
        f"hr@{k}": float(np.mean(n_hits > 0)),
        f"mrr@{k}": float(np.mean(rr)),
        "n": n,
        "n_skipped": n_users - n,
    }


# ------------------------------------------------------------------ beyond accuracy

def catalog_coverage(lists: np.ndarray, n_items: int) -> float:
    """Fraction of the catalogue recommended to at least one user:
    ``|union of lists| / n_items``."""
    a = _lists(lists, n_items)
    return float(np.unique(a[a != PAD]).size / n_items)


def intra_list_diversity(lists: np.ndarray, item_categories: np.ndarray | sp.spmatrix
                         ) -> float:
    """Mean over users of the mean pairwise category distance within the list.

    ``ILD_u = 1 / P * sum_{i<j} (1 - cos(c_i, c_j))`` over the ``P = m(m-1)/2`` pairs of
    the user's ``m`` items, with ``c_i`` the item's multi-hot category row. An item
    with no category has similarity 0 to everything (distance 1). Users with fewer
    than two items are skipped (no pairs).

    Computed without forming the ``K x K`` similarity matrices, via
    ``sum_{i<j} cos(c_i, c_j) = (||sum_i e_i||^2 - sum_i ||e_i||^2) / 2`` with ``e_i``
    the L2-normalised rows (``||e_i||^2`` is 1, or 0 for an uncategorised item).

    Args:
        lists: ``(U, K)`` item indices (``-1`` = empty slot).
        item_categories: ``(N, C)`` multi-hot matrix, dense or scipy.sparse.
    """
    cats = sp.csr_matrix(item_categories, dtype=np.float64)
    a = _lists(lists, cats.shape[0])
    norms = np.sqrt(np.asarray(cats.multiply(cats).sum(axis=1)).ravel())
    unit = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ cats

    valid = a != PAD
    m = valid.sum(axis=1)
    users = np.nonzero(valid)[0]
    items = a[valid]
    agg = sp.csr_matrix((np.ones(items.size), (users, np.arange(items.size))),
                        shape=(a.shape[0], items.size))
    summed = agg @ unit[items]  # (U, C): sum of the unit category vectors in each list
    sq = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()
    self_sq = np.bincount(users, weights=(norms[items] > 0).astype(np.float64),
                          minlength=a.shape[0])

    keep = m >= 2
    if not keep.any():
        raise ValueError("no list has two or more items: diversity is undefined")
    pairs = m[keep] * (m[keep] - 1) / 2.0
    mean_sim = (sq[keep] - self_sq[keep]) / 2.0 / pairs
    return float(np.mean(1.0 - mean_sim))


def novelty(lists: np.ndarray, item_popularity: np.ndarray, n_users: int) -> float:
    """Mean self-information of recommended items: ``mean(-log2(pop_i / n_users))``.

    ``pop_i`` is the number of (training) users who interacted with item ``i``, so
    ``pop_i / n_users`` is the chance a random user knows it; rarer items are more
    novel (Zhou et al. 2010). Popularity 0 is treated as 1 (the item would otherwise
    have infinite novelty; 1 is the smallest observable count). The mean is over all
    recommended slots, ignoring ``-1``.
    """
    pop = np.asarray(item_popularity, dtype=np.float64)
    if pop.ndim != 1 or (pop < 0).any():
        raise ValueError("item_popularity must be a 1-D array of non-negative counts")
    if n_users <= 0:
        raise ValueError(f"n_users must be positive, got {n_users}")
    a = _lists(lists, pop.size)
    rec = a[a != PAD]
    if rec.size == 0:
        raise ValueError("lists contain no items")
    p = np.maximum(pop[rec], 1.0) / n_users
    return float(np.mean(-np.log2(p)))


def _dedupe_rows(a: np.ndarray) -> np.ndarray:
    """Replace repeated items within a row by PAD (so each user's vector is binary)."""
    srt = np.sort(a, axis=1)
    dup = np.zeros(a.shape, dtype=bool)
    dup[:, 1:] = srt[:, 1:] == srt[:, :-1]
    srt[dup] = PAD
    return srt


def personalization(lists: np.ndarray, n_items: int, max_users: int | None = None,
                    rng: np.random.Generator | None = None) -> float:
    """``1 - mean_{u != v} cos(b_u, b_v)`` over users' binary recommendation vectors.

    ``b_u`` is the ``n_items``-long 0/1 vector of user ``u``'s list. 1 means no two
    users share an item; 0 means everyone got the same list. Users whose list is
    empty are left out.

    Exact and ``O(U * K)``: with unit vectors ``e_u = b_u / sqrt(|b_u|)``,
    ``sum_{u != v} cos = ||sum_u e_u||^2 - U`` (the sum of all entries of the Gram
    matrix minus its diagonal of ones), and ``sum_u e_u`` is a weighted ``bincount``
    over items. No ``U x U`` matrix is formed, so sampling is not needed for speed.

    Args:
        lists: ``(U, K)`` item indices (``-1`` = empty slot); ``U >= 2``.
        n_items: catalogue size (validates the indices).
        max_users: optional cap; if given and ``U > max_users``, a random subset of
            ``max_users`` users drawn with ``rng`` (then required) is used.
        rng: generator for that subset.
    """
    a = _lists(lists, n_items)
    if max_users is not None and a.shape[0] > max_users:
        if rng is None:
            raise ValueError(f"U={a.shape[0]} > max_users={max_users}: pass rng to sample")
        a = a[rng.choice(a.shape[0], size=max_users, replace=False)]
    a = _dedupe_rows(a)
    m = (a != PAD).sum(axis=1)
    a, m = a[m > 0], m[m > 0]
    n_users = a.shape[0]
    if n_users < 2:
        raise ValueError("personalization needs at least two users with non-empty lists")
    w = np.broadcast_to((1.0 / np.sqrt(m))[:, None], a.shape)
    valid = a != PAD
    total = np.bincount(a[valid], weights=w[valid], minlength=n_items)
    mean_sim = (total @ total - n_users) / (n_users * (n_users - 1))
    return float(1.0 - mean_sim)


def simulated_ctr(click_prob: np.ndarray) -> float:
    """CTR@K = mean of the ``(U, K)`` ground-truth click probabilities of the
    recommended items (the caller derives them from the synthetic generator)."""
    p = np.asarray(click_prob, dtype=np.float64)
    if p.size == 0:
        raise ValueError("click_prob is empty")
    if not ((p >= 0) & (p <= 1)).all():
        raise ValueError("click probabilities must lie in [0, 1] (and not be NaN)")
    return float(p.mean())


def beyond_accuracy(lists: np.ndarray, n_items: int,
                    item_categories: np.ndarray | sp.spmatrix | None = None,
                    item_popularity: np.ndarray | None = None, n_users: int | None = None,
                    rng: np.random.Generator | None = None,
                    max_users: int | None = None) -> dict[str, float]:
    """The beyond-accuracy metrics whose inputs are available, keyed with the list length.

    Always ``coverage@k``; ``personalization@k`` when at least two users have a
    non-empty list; ``diversity@k`` when ``item_categories`` is given (and some list
    has two items); ``novelty@k`` when both ``item_popularity`` and ``n_users`` are.
    ``k`` is ``lists.shape[1]``. ``rng`` and ``max_users`` go to
    :func:`personalization`.
    """
    a = _lists(lists, n_items)
    k = a.shape[1]
    out = {f"coverage@{k}": catalog_coverage(a, n_items)}
    if ((a != PAD).any(axis=1)).sum() >= 2:
        out[f"personalization@{k}"] = personalization(a, n_items, max_users=max_users,
                                                       rng=rng)
    if item_categories is not None and ((a != PAD).sum(axis=1) >= 2).any():
        out[f"diversity@{k}"] = intra_list_diversity(a, item_categories)
    if item_popularity is not None and n_users is not None:
        out[f"novelty@{k}"] = novelty(a, item_popularity, n_users)
    return out
