"""Warm-started NeuMF on the device: frozen released item factors, a personal user vector.

Issue #21 item 4, variant "frozen" (docs/neumf-warm-start.md). The item embeddings of a
GMF/NeuMF-style scorer ``s_i = u . q_i`` are not trained by any federation: they are
**item factors derived from a statistics release** and stay frozen.

* Source ``als`` (``--pipeline als``): the released ALS item factors (``Released.factors``).
* Source ``knn`` (``--pipeline knn``): a rank-``r`` factorisation of the released, already
  post-processed similarity ``S`` (``Released.similarity``): ``Q = U_r sqrt(lambda_r)``
  over the ``r`` largest positive eigenvalues of ``(S + S^T) / 2``
  (:func:`similarity_factors`).

Either way the factors are post-processing of released statistics. Each device then fits
only its own ``u`` (:func:`fit_user`): logistic loss on its own head items (positives,
the r-th newest weighing ``decay ** r``) against ``negatives`` items per positive drawn
from the head items it never touched, plain full-batch gradient descent from ``u = 0``,
ridge ``l2 ||u||^2``. ``u`` and the scores never leave the device, so this costs no
privacy: no DpEvent, no ε change. The draw of negatives is the device's own and seeded
from its history length (reproducible; it protects nothing, so it need not be secret).

Units: the factors are rescaled so that their rows' root-mean-square norm is 1
(:func:`unit_rms`), so ``lr`` and ``l2`` mean the same for every source; scores are logits.
"""

from __future__ import annotations

import numpy as np

#: Sources of the frozen item factors.
SOURCES = ("als", "knn")

_FACTOR_CACHE: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def unit_rms(factors: np.ndarray) -> np.ndarray:
    """``factors`` scaled so that the root-mean-square of its row norms is 1 (zeros kept)."""
    factors = np.asarray(factors, np.float64)
    rms = float(np.sqrt(np.mean(np.sum(factors ** 2, axis=1)))) if factors.size else 0.0
    return factors / rms if rms > 0 else factors


def similarity_factors(similarity: np.ndarray, rank: int) -> np.ndarray:
    """(h, rank) ``U_r sqrt(lambda_r)`` of the symmetrised similarity, over its ``rank``
    largest eigenvalues (negative ones, which noise creates, give zero columns)."""
    if rank < 1:
        raise ValueError(f"the factor rank must be >= 1, got {rank}")
    sym = (np.asarray(similarity, np.float64) + np.asarray(similarity, np.float64).T) / 2
    values, vectors = np.linalg.eigh(sym)
    top = np.argsort(values)[::-1][:rank]
    return vectors[:, top] * np.sqrt(np.maximum(values[top], 0.0))


def item_factors(released, rank: int) -> np.ndarray | None:
    """(h, r) frozen item factors of a release (unit RMS), or None when it has neither
    ALS factors nor a similarity (the popularity pipeline). The kNN factorisation is
    cached per similarity array, since every device of a simulation computes the same."""
    if released.factors is not None:
        return unit_rms(released.factors)
    if released.similarity is None:
        return None
    key = (id(released.similarity), rank)
    hit = _FACTOR_CACHE.get(key)
    if hit is None or hit[0] is not released.similarity:
        _FACTOR_CACHE.clear()
        hit = (released.similarity, unit_rms(similarity_factors(released.similarity, rank)))
        _FACTOR_CACHE[key] = hit
    return hit[1]


def fit_user(positions: np.ndarray, factors: np.ndarray, *, epochs: int, lr: float,
             l2: float, negatives: int, decay: float = 1.0,
             rng: np.random.Generator | None = None) -> np.ndarray:
    """(r,) the device's user vector ``u`` against frozen ``factors`` (h, r).

    ``positions``: its distinct head positions, newest first (the k-th weighs
    ``decay ** k``). Each epoch draws ``negatives`` head positions per positive, uniformly
    from the positions not in ``positions`` (with replacement), and takes one gradient
    step on ``L(u) = (1/W) [sum_pos w_i log(1 + e^{-u.q_i}) + sum_neg w_i log(1 + e^{u.q_j})]
    + l2 ||u||^2`` (a negative weighs its positive's ``w_i``; ``W = sum w_i``), from u = 0.
    Zeros when the device has no head item or no untouched head item.
    """
    factors = np.asarray(factors, np.float64)
    positions = np.asarray(positions, np.int64)
    u = np.zeros(factors.shape[1])
    untouched = np.setdiff1d(np.arange(len(factors)), positions)
    if not len(positions) or not len(untouched) or epochs < 1:
        return u
    rng = rng or np.random.default_rng(len(positions))
    weight = decay ** np.arange(len(positions), dtype=np.float64)
    q_pos = factors[positions]
    for _ in range(epochs):
        neg = untouched[rng.integers(len(untouched), size=(len(positions), negatives))]
        q_neg = factors[neg]                                   # (m, k, r)
        g_pos = -weight / (1.0 + np.exp(q_pos @ u))             # d/ds log(1+e^-s) = -sigma(-s)
        g_neg = weight[:, None] / (1.0 + np.exp(-(q_neg @ u)))  # d/ds log(1+e^s) = sigma(s)
        grad = (g_pos @ q_pos + np.einsum("mk,mkr->r", g_neg, q_neg)) / weight.sum()
        u = u - lr * (grad + 2.0 * l2 * u)
    return u


def warm_scores(items: np.ndarray, released, settings) -> np.ndarray:
    """(h,) ``Q u`` on the head for a history (oldest first): Q the release's frozen item
    factors (:func:`item_factors`, ``settings.warm_rank``), u fitted on the device
    (:func:`fit_user` with ``settings.warm_*`` and the scoring ``decay``). Zeros when
    the release has no factors. Nothing leaves the device."""
    from fedrec.shared.stats import head_positions, newest_distinct

    factors = item_factors(released, settings.warm_rank)
    if factors is None:
        return np.zeros(len(released.head))
    pos = head_positions(released.head, released.n_items)[newest_distinct(items)]
    u = fit_user(pos[pos >= 0], factors, epochs=settings.warm_epochs, lr=settings.warm_lr,
                 l2=settings.warm_l2, negatives=settings.warm_negatives, decay=settings.decay)
    return factors @ u
