"""Which of Flower's user-level DP strategy wrappers a run gets, configured from its
:class:`RunConfig`.

Its own module so that the layers point one way: ``fedrec.server.strategy`` builds a run's
strategy with :func:`wrap_strategy`, and ``fedrec.server.dp`` (the ε ledger, which reads what
the wrapper did after each round) uses the strategy module and this one, never the
other way round.
"""

from __future__ import annotations

from flwr.common.differential_privacy import compute_adaptive_noise_params
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
)

from fedrec.server.adaptive import AdaptiveClipping
from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError


def dp_wrapper(strategy):
    """Flower's DP wrapper (Message API or legacy, as SecAgg+ uses): ``strategy`` itself
    or the one it wraps (post-processing such as
    :class:`fedrec.server.momentum.ServerMomentumAfterNoise` sits outside it)."""
    while not hasattr(strategy, "noise_multiplier"):
        strategy = strategy.strategy
    return strategy


def wrap_strategy(strategy, cfg: RunConfig, sampled: int):
    """``strategy`` wrapped in the Flower DP wrapper ``cfg.dp_clipping`` names.

    ``sampled``: clients drawn per round (the wrappers' ``num_sampled_clients``)."""
    try:
        if cfg.dp_clipping == "server-fixed":
            return DifferentialPrivacyServerSideFixedClipping(
                strategy, cfg.noise_multiplier, cfg.clip, sampled)
        if cfg.dp_clipping == "client-fixed":
            return DifferentialPrivacyClientSideFixedClipping(
                strategy, cfg.noise_multiplier, cfg.clip, sampled)
        count_std, z_update = compute_adaptive_noise_params(   # Flower's split of z
            cfg.noise_multiplier, sampled, cfg.clipped_count_stddev or None)
        fixed = DifferentialPrivacyServerSideFixedClipping(strategy, z_update, cfg.clip, sampled)
        return AdaptiveClipping(fixed, count_std, cfg.clip_quantile, cfg.clip_lr,
                                adaptive_range(cfg))
    except ValueError as err:  # Flower's own argument checks, e.g. adaptive noise split
        raise ConfigError(f"dp settings: {err}") from None


def adaptive_range(cfg: RunConfig) -> tuple[float, float]:
    """[C_lo, C_hi] that an adaptive clip stays in, fixed before the run."""
    return cfg.clip / cfg.clip_adapt_range, cfg.clip * cfg.clip_adapt_range
