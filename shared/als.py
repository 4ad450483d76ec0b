"""DP alternating least squares as a statistics release (``--pipeline als``): the math.

Chien et al. (ICML 2021, "Private alternating least squares") solve the item factors
from noisy per-item sufficient statistics while each user's factor stays on the device.
Here, on the head of h items picked by the DP popularity release, with rank r:

* **init** (:func:`initial_factors`): V (h, r) is drawn from a fixed public seed, so it
  carries no data; one ALS pass from it is one step of subspace iteration on the
  item-item Gram, which is what the eigenvector init of a released co-occurrence would
  give without spending budget on a co-occurrence release.
* **device** (:func:`user_factor`, free: it never leaves the device in the clear except
  through its bounded contribution): ``u = argmin sum_{i in S} (1 - u.V_i)^2 + nu sum_j
  (u.V_j)^2 + lam ||u||^2`` over its head items S (implicit weak negatives ``nu``).
* **contribution** (:func:`contribution`): u normalised to ``||u|| = 1``; for each of its
  m (<= cap) head items the block ``w (triu(u u^T), u)`` with ``w = 1/sqrt(2 m)``, zero
  elsewhere. Norm: ``sum_i w^2 (||triu(uu^T)||^2 + ||u||^2) <= m/(2m) (||u||^4 + ||u||^2)
  <= 1`` (``||triu(uu^T)||_F <= ||uu^T||_F = ||u||^2``), so the sum over devices has
  sensitivity 2 under REPLACE_ONE, as every other release (``fedrec.shared.stats``).
* **server** (:func:`item_factors`, post-processing of the noisy sum): per item
  ``A_i = sum_u w_u u u^T``, ``b_i = sum_u w_u u``, projected to PSD;
  ``V_i = (A_i + nu sum_j A_j + lam_item I)^-1 b_i``; an item whose noisy support
  ``trace(A_i)`` is at most ``min_support`` gets ``V_i = 0`` (it ranks by popularity).

Units: contributions are dimensionless (unit user factors); the noise std is in the
same units (``2 z`` per coordinate).
"""

from __future__ import annotations

import math

import numpy as np

#: The statistic a device contributes to in every ALS pass; pass p is released as
#: ``als-p`` (:func:`release_name`).
ALS = "als"
#: Public seed of the initial item factors (no data enters them).
INIT_SEED = 0xA15


def release_name(pass_index: int) -> str:
    """Budget / ledger name of ALS pass ``pass_index`` (1-based)."""
    return f"{ALS}-{pass_index}"


def block_size(rank: int) -> int:
    """Coordinates per head item: the packed upper triangle of u u^T and u."""
    return rank * (rank + 1) // 2 + rank


def contribution_size(h: int, rank: int) -> int:
    return h * block_size(rank)


def initial_factors(h: int, rank: int) -> np.ndarray:
    """(h, rank) public initial item factors: N(0, 1/rank) from :data:`INIT_SEED`."""
    rng = np.random.default_rng([INIT_SEED, h, rank])
    return rng.normal(0.0, 1.0 / math.sqrt(rank), size=(h, rank))


def user_factor(positions: np.ndarray, factors: np.ndarray, negative: float,
                lam: float) -> np.ndarray:
    """(r,) ridge solution ``(V_S^T V_S + nu V^T V + lam I)^-1 V_S^T 1`` for a device's
    head positions S (zeros when S is empty): rating 1 on its items, 0 with weight
    ``negative`` on every head item (implicit weak negatives)."""
    rank = factors.shape[1]
    positions = np.asarray(positions, np.int64)
    if not len(positions):
        return np.zeros(rank)
    vs = factors[positions]
    gram = vs.T @ vs + lam * np.eye(rank)
    if negative:
        gram += negative * (factors.T @ factors)
    return np.linalg.solve(gram + 1e-12 * np.eye(rank), vs.sum(axis=0))


def contribution(positions: np.ndarray, u: np.ndarray, h: int) -> np.ndarray:
    """(h * block_size(r),) a device's dense ALS contribution, L2 norm <= 1.

    ``positions``: its distinct head positions (already cut to ``cap``); ``u`` is
    normalised to unit norm (a zero u contributes zeros)."""
    rank = len(u)
    out = np.zeros((h, block_size(rank)))
    norm = float(np.linalg.norm(u))
    positions = np.asarray(positions, np.int64)
    if not len(positions) or norm == 0 or not math.isfinite(norm):
        return out.ravel()
    u = np.asarray(u, np.float64) / norm
    block = np.concatenate([np.outer(u, u)[np.triu_indices(rank)], u])
    out[positions] = block / math.sqrt(2.0 * len(positions))
    return out.ravel()


def unpack_blocks(total: np.ndarray, h: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)``: (h, r, r) symmetric Gram blocks and (h, r) vectors of a summed (noisy)
    contribution vector (the triangle's off-diagonal entries mirrored)."""
    blocks = np.asarray(total, np.float64).reshape(h, block_size(rank))
    tri = rank * (rank + 1) // 2
    rows, cols = np.triu_indices(rank)
    gram = np.zeros((h, rank, rank))
    gram[:, rows, cols] = blocks[:, :tri]
    gram[:, cols, rows] = blocks[:, :tri]
    return gram, blocks[:, tri:]


def psd(gram: np.ndarray) -> np.ndarray:
    """Each symmetric block with its negative eigenvalues set to 0 (noise can make a
    Gram block indefinite; the projection is post-processing)."""
    values, vectors = np.linalg.eigh(gram)
    return (vectors * np.maximum(values, 0.0)[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def item_factors(total: np.ndarray, h: int, rank: int, negative: float, lam: float,
                 min_support: float) -> np.ndarray:
    """(h, rank) item factors solved from the (noisy) summed contributions.

    ``V_i = (A_i + negative * sum_j A_j + lam I)^-1 b_i`` with the PSD-projected blocks;
    rows whose support ``trace(A_i)`` (before the projection) is <= ``min_support`` are 0:
    too little signal above the noise, so those items rank by popularity on the device.
    """
    if lam <= 0:
        raise ValueError(f"the item ridge penalty must be > 0, got {lam}")
    gram, b = unpack_blocks(total, h, rank)
    support = np.trace(gram, axis1=1, axis2=2)
    gram = psd(gram)
    system = gram + lam * np.eye(rank)
    if negative:
        system = system + negative * gram.sum(axis=0)
    factors = np.linalg.solve(system, b[..., None])[..., 0]
    factors[support <= min_support] = 0.0
    return factors


def support_threshold(min_support: float, noise_std: float, rank: int) -> float:
    """Support cut in units of the trace's noise std (``noise_std sqrt(r)``); with no
    noise, any positive support counts."""
    return min_support * noise_std * math.sqrt(rank)
