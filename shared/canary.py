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

Example-level canaries (``example-canaries`` = m; Steinke, Nasr, Jagielski: "Privacy
Auditing with One (1) Training Run", NeurIPS 2023): m users each get one extra
interaction, one of two random items they never interacted with, chosen by a fair coin
drawn from (seed, user) before training (:func:`interaction_canary`). The audit guesses
each coin from the trained device models (``fedrec.simulations.empirical_audit``).
"""

from __future__ import annotations

from dataclasses import dataclass

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


# ----- example-level canaries: one interaction per chosen user, in or out by a coin -----

#: Random streams: which users get a canary interaction; each one's coin and candidates.
STREAM_INTERACTION_USERS = 42
STREAM_INTERACTION_SLOT = 43


@dataclass(frozen=True)
class InteractionCanary:
    """One example-level canary: user ``user`` trains on exactly one of two items it never
    interacted with, ``a`` if its coin came up heads (``a_inserted``), else ``b``.

    The other item is held out. Either way the user holds one more interaction, so its
    example count n does not depend on the coin: the two outcomes are neighbours under
    substitution (replace one interaction), the relation that holds when n is public.
    """

    user: int
    a: int
    b: int
    a_inserted: bool

    @property
    def inserted(self) -> int:
        return self.a if self.a_inserted else self.b

    @property
    def held_out(self) -> int:
        return self.b if self.a_inserted else self.a


def interaction_users(seed: int, train_sizes: np.ndarray, count: int) -> np.ndarray:
    """The users (sorted indices) that get a canary interaction: ``count`` of the users
    with at least one training interaction (all of them if fewer), drawn by ``seed``."""
    eligible = np.flatnonzero(np.asarray(train_sizes) > 0)
    rng = np.random.default_rng([seed, STREAM_INTERACTION_USERS])
    return np.sort(rng.permutation(eligible)[:max(0, count)])


def interaction_coin(seed: int, user: int) -> bool:
    """User ``user``'s fair coin (True: candidate ``a`` is inserted), drawn from
    (seed, user) alone: fixed before training and independent of every interaction."""
    return bool(np.random.default_rng([seed, user, STREAM_INTERACTION_SLOT]).random() < 0.5)


def interaction_canary(seed: int, user: int, positives: np.ndarray, n_items: int,
                       avoid: np.ndarray | None = None) -> InteractionCanary:
    """User ``user``'s canary: its coin (:func:`interaction_coin`), then two distinct
    candidate items drawn uniformly from those not in ``positives`` (the user's train,
    validation and test items) and, while at least two remain, not in ``avoid`` (its
    evaluation candidates). Pure: the audit redraws exactly what the device trained on."""
    free = np.setdiff1d(np.arange(n_items), np.asarray(positives, np.int64))
    if avoid is not None and len(preferred := np.setdiff1d(free, avoid)) >= 2:
        free = preferred
    if len(free) < 2:
        raise ValueError(f"user {user}: fewer than 2 items left for a canary interaction")
    rng = np.random.default_rng([seed, user, STREAM_INTERACTION_SLOT])
    coin = bool(rng.random() < 0.5)   # the same first draw as interaction_coin
    a, b = rng.choice(free, 2, replace=False)
    return InteractionCanary(int(user), int(a), int(b), coin)
