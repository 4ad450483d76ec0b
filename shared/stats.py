"""One-shot user-level DP statistics: what a device contributes, and what a release costs.

Instead of noisy models every round, a federation can release a few *aggregate
statistics* once, each with one Gaussian noise draw, and let every device personalise on
its own history (which costs nothing: nothing a device computes for itself leaves it).

Two statistics (McSherry & Mironov, KDD 2009, "Differentially private recommender
systems"):

* **popularity**: device u contributes ``p_u`` with ``1/sqrt(m_u)`` on each of its m_u
  distinct items, so ``||p_u||_2 = 1``.
* **co-occurrence** over a *head* of h items (chosen from the released popularity):
  device u takes its most recent ``cap`` head items (m of them) and contributes the
  strict upper triangle of ``v_u * 1 1^T`` on them, with ``v_u = sqrt(2 / (m (m - 1)))``:
  m (m - 1) / 2 pairs of value v_u have L2 norm exactly 1.

Both are sums over devices of vectors of L2 norm <= 1. Without DP (``bounded=False``) a
device contributes the raw indicators instead (1 per item, 1 per pair of its items), so
the sums are exactly the centralized item counts and co-occurrence counts ``X^T X``; their
sensitivity is unbounded, so no noise can make them private and the pipeline refuses it.
fedrec states user-level DP under
**replace one user's entire history** (REPLACE_ONE: the roster size is public, as for
DP-FedAvg), so a sum's sensitivity is ``||p_u - p_u'||_2 <= 2`` and a release with noise
standard deviation ``sigma`` per coordinate is ``GaussianDpEvent(sigma / 2)``.

Units: a *noise multiplier* z is the noise std divided by the sensitivity (2);
``noise std = 2 z`` in the units of the contributions above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from dp_accounting import dp_event as dpe

#: L2 sensitivity of a sum of unit-norm contributions under REPLACE_ONE (swap a user).
SENSITIVITY = 2.0
RELATION = "replace_one"
#: The statistics a device contributes to (each also names its release in the budget).
POPULARITY, COOCCURRENCE = "popularity", "cooccurrence"
STATISTICS = (POPULARITY, COOCCURRENCE)


# ----- what a device contributes (pure; the device runs these on its own history) -----

def distinct_in_order(values: np.ndarray) -> np.ndarray:
    """``values`` without repeats, each kept at its first occurrence."""
    values = np.asarray(values, np.int64).ravel()
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]


def newest_distinct(items: np.ndarray) -> np.ndarray:
    """Distinct items of a history (oldest first), newest first."""
    return distinct_in_order(np.asarray(items, np.int64)[::-1])


def popularity_contribution(items: np.ndarray, n_items: int, decay: float = 1.0,
                            cap: int = 0, bounded: bool = True) -> np.ndarray:
    """(n_items,) float64 of L2 norm 1 over the device's distinct items (its ``cap``
    newest when ``cap > 0``): the r-th newest weighs ``decay ** r`` before normalising
    (``decay = 1``: ``1/sqrt(m)`` on each).

    Recent items say more about what a user wants next, so a recency-weighted
    popularity is the stronger prior (MovieLens-100k: docs/results). ``bounded=False``
    (no DP): 1 on each distinct item, so the sum over devices is the item counts.
    """
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    out = np.zeros(n_items, np.float64)
    distinct = newest_distinct(items)
    if cap > 0:
        distinct = distinct[:cap]
    if len(distinct) and not bounded:
        out[distinct] = 1.0
    elif len(distinct):
        weight = decay ** np.arange(len(distinct), dtype=np.float64)
        out[distinct] = weight / np.linalg.norm(weight)
    return out


def recent_head_items(items: np.ndarray, head_position: np.ndarray, cap: int) -> np.ndarray:
    """Positions (in the head) of the ``cap`` most recent distinct head items of a history.

    Args:
        items: the device's items, oldest first (repeats allowed).
        head_position: (n_items,) position of each catalogue item in the head, -1 if not.
        cap: at most this many items (the most recent) contribute (0: all).
    """
    pos = head_position[newest_distinct(items)]
    pos = pos[pos >= 0]
    return pos if cap <= 0 else pos[:cap]


def pair_weight(m: int, bounded: bool = True) -> float:
    """Value of each of the m (m - 1) / 2 pairs so that their L2 norm is 1 (0 if m < 2);
    1 when not ``bounded`` (no DP: raw co-occurrence counts)."""
    if m < 2:
        return 0.0
    return math.sqrt(2.0 / (m * (m - 1))) if bounded else 1.0


def pair_scale(a: np.ndarray) -> float:
    """c with ``sum over pairs i < j of (c a_i a_j)^2 = 1``: the unit-norm scale of a
    device's pairs weighted ``a_i a_j`` (``a = 1``: :func:`pair_weight`)."""
    a2 = np.square(np.asarray(a, np.float64))
    total = (a2.sum() ** 2 - np.square(a2).sum()) / 2.0
    return 1.0 / math.sqrt(total) if total > 0 else 0.0


def cooccurrence_contribution(positions: np.ndarray, h: int, bounded: bool = True,
                              item_weight: np.ndarray | None = None) -> np.ndarray:
    """The packed strict upper triangle (length h (h - 1) / 2) a device uploads: its
    pairs of head positions at :func:`pair_weight` (with ``item_weight``: pair (i, j)
    at ``c a_i a_j``, :func:`pair_scale`, as :func:`cooccurrence_sum` weighs them).
    Dense, so it can go through SecAgg+."""
    full = np.zeros((h, h), np.float64)
    positions = np.asarray(positions, np.int64)
    if item_weight is None or not bounded or len(positions) < 2:
        full[np.ix_(positions, positions)] = pair_weight(len(positions), bounded)
    else:
        a = np.asarray(item_weight, np.float64)[positions]
        full[np.ix_(positions, positions)] = pair_scale(a) * np.outer(a, a)
    return full[np.triu_indices(h, k=1)]


def unpack_triangle(packed: np.ndarray, h: int) -> np.ndarray:
    """(h, h) symmetric matrix, zero diagonal, from a packed strict upper triangle."""
    full = np.zeros((h, h), np.float64)
    full[np.triu_indices(h, k=1)] = packed
    return full + full.T


def cooccurrence_sum(histories: list[np.ndarray], h: int, bounded: bool = True,
                     item_weight: np.ndarray | None = None) -> np.ndarray:
    """(h, h) symmetric sum of many devices' co-occurrence contributions, zero diagonal.

    The server's sum of the packed triangles, computed sparsely (for simulations: equal
    to summing :func:`cooccurrence_contribution` over devices, see the tests).
    ``item_weight`` (h,) reweights a device's pair (i, j) in proportion to
    ``item_weight[i] * item_weight[j]`` before its unit-norm scaling (:func:`pair_scale`),
    so its norm stays 1; None: every pair alike.
    """
    rows, cols, vals = [], [], []
    for u, pos in enumerate(histories):
        if len(pos) >= 2:
            pos = np.asarray(pos, np.int64)
            a = np.ones(len(pos)) if item_weight is None or not bounded else item_weight[pos]
            scale = pair_scale(a) if bounded else 1.0
            rows.append(np.full(len(pos), u))
            cols.append(pos)
            vals.append(math.sqrt(scale) * a)
    if not rows:
        return np.zeros((h, h))
    w = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(len(histories), h))
    total = (w.T @ w).toarray()
    np.fill_diagonal(total, 0.0)
    return total


# ----- noise and events (the server runs these once per release) -----

def add_noise(total: np.ndarray, noise_multiplier: float, rng: np.random.Generator,
              symmetric: bool = False) -> np.ndarray:
    """``total`` plus N(0, (2 z)^2) on every released coordinate.

    ``symmetric``: ``total`` is an (h, h) co-occurrence matrix whose strict upper triangle
    is what is released; the noise is drawn once per pair and mirrored (post-processing),
    and the diagonal stays zero.
    """
    std = SENSITIVITY * noise_multiplier
    if not symmetric:
        return total + rng.normal(0.0, std, size=total.shape)
    h = total.shape[0]
    noise = np.zeros((h, h))
    noise[np.triu_indices(h, k=1)] = rng.normal(0.0, std, size=h * (h - 1) // 2)
    return total + noise + noise.T


def release_event(noise_multiplier: float) -> dpe.DpEvent:
    """The DpEvent of one release (every device contributes once, no sampling)."""
    if noise_multiplier < 0 or not math.isfinite(noise_multiplier):
        raise ValueError(f"noise multiplier must be a finite number >= 0, got {noise_multiplier}")
    if noise_multiplier == 0:
        return dpe.NonPrivateDpEvent()
    return dpe.GaussianDpEvent(noise_multiplier)


@dataclass(frozen=True)
class BudgetSplit:
    """Noise multipliers of the releases that share one budget.

    Gaussian mechanisms on the same data compose into one Gaussian whose multiplier z
    satisfies ``1/z^2 = sum 1/z_k^2``; the split gives release k the share ``f_k`` of
    ``1/z^2`` (its "precision"): ``z_k = z / sqrt(f_k)``.
    """

    total: float
    shares: dict[str, float]

    def __post_init__(self) -> None:
        if not self.shares or any(f <= 0 for f in self.shares.values()):
            raise ValueError(f"every release needs a share > 0, got {self.shares}")
        if abs(sum(self.shares.values()) - 1.0) > 1e-9:
            raise ValueError(f"budget shares must sum to 1, got {self.shares}")

    def multiplier(self, release: str) -> float:
        return self.total / math.sqrt(self.shares[release]) if self.total else 0.0

    def events(self) -> dict[str, dpe.DpEvent]:
        return {name: release_event(self.multiplier(name)) for name in self.shares}


def split_budget(total_multiplier: float, popularity_share: float,
                 releases: tuple[str, ...] = STATISTICS) -> BudgetSplit:
    """:class:`BudgetSplit` giving ``popularity_share`` to popularity and the rest in
    equal parts to the other releases (the co-occurrence, or each ALS pass), or
    everything to popularity when it is the only one."""
    if releases == (POPULARITY,):
        return BudgetSplit(total_multiplier, {POPULARITY: 1.0})
    if not 0 < popularity_share < 1:
        raise ValueError(f"popularity share must be in (0, 1), got {popularity_share}")
    others = [r for r in releases if r != POPULARITY]
    rest = (1.0 - popularity_share) / len(others)
    return BudgetSplit(total_multiplier, {POPULARITY: popularity_share,
                                          **{name: rest for name in others}})


def gaussian_delta(noise_multiplier: float, epsilon: float) -> float:
    """Exact δ(ε) of one Gaussian mechanism with multiplier z (Balle & Wang, ICML 2018,
    Theorem 8): ``Φ(1/(2z) - ε z) - e^ε Φ(-1/(2z) - ε z)``. Gaussians on the same data
    compose into one Gaussian with ``1/z^2 = sum 1/z_k^2``, so this is also the exact
    curve of several releases. Independent of dp-accounting (audits compare the two)."""
    from scipy.stats import norm

    a, b = 1.0 / (2.0 * noise_multiplier), epsilon * noise_multiplier
    return float(norm.cdf(a - b) - math.exp(epsilon) * norm.cdf(-a - b))


def gaussian_epsilon(noise_multiplier: float, delta: float) -> float:
    """Smallest ε with :func:`gaussian_delta` <= ``delta`` (bisection to 1e-9)."""
    if noise_multiplier <= 0:
        return math.inf
    lo, hi = 0.0, 1.0
    while gaussian_delta(noise_multiplier, hi) > delta:
        if hi > 256:          # beyond any useful ε (and e^ε overflows soon after)
            return math.inf
        lo, hi = hi, 2 * hi
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gaussian_delta(noise_multiplier, mid) > delta else (lo, mid)
        if hi - lo < 1e-9:
            break
    return hi


def composed_multiplier(multipliers: list[float]) -> float:
    """z of the single Gaussian equivalent to composing Gaussians ``multipliers``."""
    if any(z <= 0 for z in multipliers):
        return 0.0
    return 1.0 / math.sqrt(sum(1.0 / z ** 2 for z in multipliers))


def choose_head(noisy_popularity: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` items with the largest released popularity, by item index (sorted):
    post-processing of the popularity release, so choosing it costs nothing (0: all)."""
    size = len(noisy_popularity) if size <= 0 else min(size, len(noisy_popularity))
    top = np.argpartition(-noisy_popularity, size - 1)[:size]
    return np.sort(top)


def head_positions(head: np.ndarray, n_items: int) -> np.ndarray:
    """(n_items,) position of each item in ``head``, -1 for items outside it."""
    pos = np.full(n_items, -1, np.int64)
    pos[head] = np.arange(len(head))
    return pos


def upload_bytes(h: int, dtype_bytes: int = 4) -> int:
    """Bytes of one device's dense co-occurrence upload (packed upper triangle)."""
    return dtype_bytes * h * (h - 1) // 2
