"""Adaptive clipping (Andrew et al. 2019) composed around Flower's *fixed* clipping wrapper.

Why not Flower's ``DifferentialPrivacyServerSideAdaptiveClipping`` (1.23): it counts the
updates it *clipped* but applies the paper's rule for the *unclipped* fraction b,
``C <- C exp(-lr (b - target))``, so when every update is clipped the clip shrinks
(exp(-0.1), about 10 % a round at lr 0.2, target 0.5) instead of growing, and runs away
to 0. It also updates C *before* adding the round's noise, so the noise on round t's
updates (clipped to C_t) is ``z C_{t+1} / m``: a noise level chosen by the round's own
noisy output, which a per-round RDP bound fixed in advance does not cover.

:class:`AdaptiveClipping` keeps Flower's clipping and noise (its
``DifferentialPrivacyServerSideFixedClipping``, whose ``clipping_norm`` it sets) and only
adds the clip's update, in this order each round t:

1. count the unclipped replies, ``sum_i [||Δ_i|| <= C_t]`` (before Flower clips them);
2. Flower clips every update to C_t, averages, adds noise of std ``z_u C_t / m``;
3. release ``b~ = (count + N(0, σ_b²)) / replies`` and set
   ``C_{t+1} = clamp(C_t exp(-lr (b~ - target)), [C_lo, C_hi])`` (:func:`next_clip`).

Privacy: the update's noise is ``z_u`` times the clip the same updates were clipped to,
so round t's Gaussian has multiplier ``z_u replied / (2 m)`` under REPLACE_ONE whatever
C_t is; the count has sensitivity 1 and std σ_b. Each round's RDP curve is therefore
fixed before the run (given the number of replies); only the scale C_t is chosen
adaptively, and RDP composes under adaptive choice of mechanisms whose RDP bound holds
for every choice (Mironov 2017, Prop. 1). ``[C_lo, C_hi]`` (``clip-adapt-range``)
is fixed in advance too; it keeps the clip from running to 0 or infinity (utility, and
float range), not the privacy, which does not depend on C_t.

The noise split ``(σ_b, z_u)`` is Flower's ``compute_adaptive_noise_params``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.differential_privacy import compute_stdv, get_norm
from flwr.serverapp import Grid
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, Strategy


def next_clip(clip: float, unclipped_fraction: float, target_quantile: float,
              clip_lr: float, low: float, high: float) -> float:
    """Andrew et al.'s geometric step on the (noisy) unclipped fraction, clamped.

    ``clip * exp(-clip_lr * (unclipped_fraction - target_quantile))`` in ``[low, high]``:
    more unclipped than the target quantile, the clip shrinks; fewer, it grows.
    """
    if not 0 < low <= high:
        raise ValueError(f"need 0 < low <= high, got {low}, {high}")
    step = clip * math.exp(-clip_lr * (unclipped_fraction - target_quantile))
    return min(max(step, low), high)


def unclipped_count(replies: list[Message], current: list[np.ndarray], clip: float) -> int:
    """Replies whose update (their arrays minus ``current``) has L2 norm <= ``clip``
    (Flower's ``get_norm``; Flower clips exactly the others)."""
    count = 0
    for reply in replies:
        for record in reply.content.array_records.values():
            update = [r - c for r, c in zip(record.to_numpy_ndarrays(), current)]
            count += int(get_norm(update) <= clip)
    return count


class AdaptiveClipping(Strategy):
    """Adaptive clipping around a Flower server-side fixed-clipping wrapper (module doc).

    Parameters
    ----------
    strategy : DifferentialPrivacyServerSideFixedClipping
        Flower's wrapper with the update's noise multiplier z_u and the initial clip.
    clipped_count_stddev : float
        σ_b, std of the noise on the unclipped count.
    target_quantile : float
        Fraction of updates meant to stay unclipped (Andrew et al.'s γ).
    clip_lr : float
        Step of the geometric update (η_C).
    clip_range : tuple[float, float]
        ``[C_lo, C_hi]``, fixed before the run.
    """

    def __init__(self, strategy: DifferentialPrivacyServerSideFixedClipping,
                 clipped_count_stddev: float, target_quantile: float, clip_lr: float,
                 clip_range: tuple[float, float]) -> None:
        super().__init__()
        low, high = clip_range
        if not 0 < low <= strategy.clipping_norm <= high:
            raise ValueError(f"the initial clip {strategy.clipping_norm} must lie in "
                             f"[{low}, {high}]")
        if clipped_count_stddev < 0 or clip_lr <= 0 or not 0 <= target_quantile <= 1:
            raise ValueError("need count std >= 0, clip lr > 0 and target quantile in [0, 1]")
        self.strategy = strategy
        self.clipped_count_stddev = float(clipped_count_stddev)
        self.target_quantile, self.clip_lr = target_quantile, clip_lr
        self.clip_range = (float(low), float(high))
        #: Clip and noise std of the last aggregated round (what was clipped to / added).
        self.last_clip: float | None = None
        self.last_noise_std: float | None = None
        self._current: list[np.ndarray] = []

    def __repr__(self) -> str:
        return f"AdaptiveClipping(range={self.clip_range}, {self.strategy!r})"

    @property
    def noise_multiplier(self) -> float:
        """z_u, the update's noise multiplier (Flower's wrapper's)."""
        return self.strategy.noise_multiplier

    @property
    def num_sampled_clients(self) -> int:
        return self.strategy.num_sampled_clients

    @property
    def clipping_norm(self) -> float:
        """C_t, the clip the next round's updates are clipped to (held by Flower's wrapper)."""
        return self.strategy.clipping_norm

    @clipping_norm.setter
    def clipping_norm(self, value: float) -> None:
        self.strategy.clipping_norm = float(value)

    def summary(self) -> None:
        self.strategy.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._current = arrays.to_numpy_ndarrays()
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Count, let Flower clip to C_t and noise with z_u C_t / m, then step the clip."""
        replies = list(replies)
        clip = self.clipping_norm
        ok = [m for m in replies if not m.has_error()]
        count = unclipped_count(ok, self._current, clip)
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        if arrays is None:          # nothing released, nothing counted
            return arrays, metrics
        self.last_clip = clip
        self.last_noise_std = compute_stdv(self.noise_multiplier, clip, self.num_sampled_clients)
        noisy = float(np.random.normal(count, self.clipped_count_stddev)) / len(ok)
        self.clipping_norm = next_clip(clip, noisy, self.target_quantile, self.clip_lr,
                                       *self.clip_range)
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)
