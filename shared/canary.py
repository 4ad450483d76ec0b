"""Canary clients for the empirical privacy audit (Andrew, Kairouz, Oh, Oprea, McMahan,
Suriyakumar: "One-shot Empirical Privacy Estimation for Federated Learning", ICLR 2024).

A canary is a fake client whose every update is one fixed random unit direction of the
global weight space, scaled to the user-level clipping norm: the largest change one user
may make. After training, the cosine between the final model's total change and each
*inserted* canary's direction is compared with the cosine for *held-out* canaries (drawn
the same way, never inserted). The more the two distributions differ, the more a single
client's participation shows in the released model.

Pure functions: directions come from (seed, canary index) alone, so the audit redraws
exactly the directions the canary clients used, and held-out ones from indices past k.
"""

from __future__ import annotations

import numpy as np

#: Random stream of canary directions (apart from every other stream of the run).
STREAM_CANARY = 40


def direction(seed: int, index: int, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Canary ``index``'s unit direction (L2 norm 1 over all arrays), one array per name.

    Args:
        seed: the run's seed.
        index: canary number; 0..k-1 are inserted, k and above held out.
        shapes: name -> shape of the global weights; arrays are drawn in sorted name
            order, so the direction does not depend on the order weights travel in.
    """
    rng = np.random.default_rng([seed, index, STREAM_CANARY])
    parts = {name: rng.standard_normal(shapes[name]) for name in sorted(shapes)}
    norm = np.sqrt(sum(float(np.sum(p * p)) for p in parts.values()))
    return {name: p / norm for name, p in parts.items()}


def update(sent: dict[str, np.ndarray], seed: int, index: int,
           norm: float) -> dict[str, np.ndarray]:
    """What canary ``index`` replies: the received weights moved by ``norm`` (L2) along
    its direction, in the received dtypes and order."""
    step = direction(seed, index, {k: v.shape for k, v in sent.items()})
    return {k: (v + norm * step[k]).astype(v.dtype) for k, v in sent.items()}


def flatten(weights: dict[str, np.ndarray]) -> np.ndarray:
    """All arrays in sorted name order as one float64 vector."""
    return np.concatenate([np.asarray(weights[k], np.float64).ravel() for k in sorted(weights)])


def cosines(initial: dict[str, np.ndarray], final: dict[str, np.ndarray], seed: int,
            indices: range) -> np.ndarray:
    """Cosine between the model's total change (final - initial) and each canary's direction."""
    delta = flatten({k: final[k].astype(np.float64) - initial[k] for k in initial})
    length = float(np.linalg.norm(delta))
    if length == 0:
        raise ValueError("the model did not change: no cosine to measure")
    shapes = {k: v.shape for k, v in initial.items()}
    return np.array([float(flatten(direction(seed, i, shapes)) @ delta) / length for i in indices])
