"""Validation of a :class:`~fedrec.shared.config.RunConfig`: one clear line for the first
setting that cannot work, raised when the config is built (at the edge)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from fedrec.shared.config_flower import flower_key
from fedrec.shared.errors import ConfigError

if TYPE_CHECKING:
    from fedrec.shared.config import RunConfig

STRATEGIES = ("fedavg", "fedadam", "fedyogi", "fedavgm")
LOCAL_OPTIMIZERS = ("adam", "sgd")
DP_MODES = ("none", "client", "server", "both", "distributed")
HOLDOUTS = ("test", "validation")
DP_CLIPPING = ("server-fixed", "server-adaptive", "client-fixed")


def check(cfg: RunConfig) -> None:
    """Raise ConfigError, one line, for the first setting of ``cfg`` that cannot work."""
    positive = ("synthetic_users", "synthetic_items", "rounds", "eval_every", "local_epochs",
                "batch_size", "negatives", "gmf_dim", "mlp_dim", "min_replies")
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{flower_key(name)} must be >= 1, got {getattr(cfg, name)}")
    for name in ("clients_per_round", "eval_clients", "reconstruction_steps", "content_dim",
                 "canaries", "example_canaries", "serve_passes"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{flower_key(name)} must be >= 0, got {getattr(cfg, name)}")
    for name in ("dropout", "straggler_fraction"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise ConfigError(f"{flower_key(name)} must be in [0, 1], got {getattr(cfg, name)}")
    if not 0 <= cfg.synthetic_heterogeneity <= 1:
        raise ConfigError(f"synthetic-heterogeneity must be in [0, 1], "
                          f"got {cfg.synthetic_heterogeneity}")
    if not 0 <= cfg.synthetic_activity_skew <= 3:
        raise ConfigError(f"synthetic-activity-skew must be in [0, 3], "
                          f"got {cfg.synthetic_activity_skew}")
    if not 0 <= cfg.late_users <= 1:
        raise ConfigError(f"late-users must be in [0, 1], got {cfg.late_users}")
    if cfg.join_round < 1:
        raise ConfigError(f"join-round must be >= 1, got {cfg.join_round}")
    if not 0 <= cfg.new_items <= 0.5:
        raise ConfigError(f"new-items must be in [0, 0.5], got {cfg.new_items}")
    if cfg.items_round < 1:
        raise ConfigError(f"items-round must be >= 1, got {cfg.items_round}")
    if not (cfg.straggler_delay >= 0 and cfg.participation_window >= 0):
        raise ConfigError("straggler-delay and participation-window must be >= 0")
    if not cfg.max_update_norm >= 0:
        raise ConfigError(f"max-update-norm must be >= 0, got {cfg.max_update_norm}")
    for name in ("learning_rate", "reconstruction_lr", "round_timeout", "local_adam_eps"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"{flower_key(name)} must be > 0, got {getattr(cfg, name)}")
    if not cfg.server_learning_rate >= 0:
        raise ConfigError(f"server-learning-rate must be >= 0, got {cfg.server_learning_rate}")
    if not 0 <= cfg.server_momentum < 1:
        raise ConfigError(f"server-momentum must be in [0, 1), got {cfg.server_momentum}")
    for name in ("lr_decay", "recency_decay", "serve_recency_decay"):
        if not 0 < getattr(cfg, name) <= 1:
            raise ConfigError(f"{flower_key(name)} must be in (0, 1], got {getattr(cfg, name)}")
    if cfg.local_optimizer not in LOCAL_OPTIMIZERS:
        raise ConfigError(f"local-optimizer must be one of {', '.join(LOCAL_OPTIMIZERS)}, "
                          f"got {cfg.local_optimizer!r}")
    if cfg.serve_average < 1:
        raise ConfigError(f"serve-average must be >= 1, got {cfg.serve_average}")
    if cfg.serve_average > 1 and not cfg.serve_passes:
        raise ConfigError("serve-average > 1 needs serve-passes > 0 (it averages fresh "
                          "serving fits)")
    if cfg.holdout not in HOLDOUTS:
        raise ConfigError(f"holdout must be one of {', '.join(HOLDOUTS)}, "
                          f"got {cfg.holdout!r}")
    if cfg.strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {cfg.strategy!r}")
    _check_dp(cfg)
    if cfg.lazy_clients:
        _check_lazy(cfg)
    if cfg.catalogue and (cfg.canaries or cfg.example_canaries):
        raise ConfigError("canaries are for simulated audit runs; a deployment "
                          "(catalogue is set) cannot have them")
    if cfg.example_canaries and cfg.new_items:
        raise ConfigError("example-canaries cannot be combined with new-items: a canary "
                          "item released late would make the user's example count "
                          "depend on the coin")
    if cfg.catalogue and cfg.clients < 1:
        raise ConfigError("clients must be >= 1 in a deployment (catalogue is set): "
                          "the number of devices taking part")


def _check_lazy(cfg: RunConfig) -> None:
    """lazy-clients: what the scale path supports."""
    if cfg.dataset != "synthetic":
        raise ConfigError(f"lazy-clients is for dataset = synthetic, got {cfg.dataset!r}")
    if cfg.clients_per_round < 1 or cfg.eval_clients < 1:
        raise ConfigError("lazy-clients needs clients-per-round and eval-clients > 0: "
                          "a round runs as many simulation nodes as it samples clients")
    for name in ("secagg", "canaries", "example_canaries", "catalogue"):
        if getattr(cfg, name):
            raise ConfigError(f"lazy-clients cannot be combined with {flower_key(name)}")


def _check_dp(cfg: RunConfig) -> None:
    """DP settings: one clear line for each impossible value."""
    if cfg.dp not in DP_MODES:
        raise ConfigError(f"dp must be one of {', '.join(DP_MODES)}, got {cfg.dp!r}")
    if cfg.dp_clipping not in DP_CLIPPING:
        raise ConfigError(f"dp-clipping must be one of {', '.join(DP_CLIPPING)}, "
                          f"got {cfg.dp_clipping!r}")
    for name in ("noise_multiplier", "client_noise_multiplier", "target_epsilon",
                 "client_target_epsilon", "clipped_count_stddev"):
        value = getattr(cfg, name)
        if not (value >= 0 and math.isfinite(value)):
            raise ConfigError(f"{flower_key(name)} must be a finite number >= 0, got {value}")
    for name in ("clip", "client_clip", "clip_lr"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"{flower_key(name)} must be > 0, got {getattr(cfg, name)}")
    if not 0 <= cfg.clip_quantile <= 1:
        raise ConfigError(f"clip-quantile must be in [0, 1], got {cfg.clip_quantile}")
    if not 0 <= cfg.delta < 1:
        raise ConfigError(f"delta must be in [0, 1) (0: 1/N^1.1), got {cfg.delta}")
    if not 0 < cfg.client_delta < 1:
        raise ConfigError(f"client-delta must be in (0, 1), got {cfg.client_delta}")
    if cfg.secagg and cfg.dp != "distributed" and (cfg.dp != "server"
                                                    or cfg.dp_clipping != "client-fixed"):
        raise ConfigError(f"secagg needs dp = server with dp-clipping = client-fixed, or dp = "
                          f"distributed (got dp = {cfg.dp}, dp-clipping = {cfg.dp_clipping}): "
                          f"under SecAgg+ only the devices see an update, so they must clip it")
    if cfg.dp == "distributed":
        _check_distributed(cfg)
    if cfg.secagg_shares and cfg.secagg_shares <= 2:
        raise ConfigError(f"secagg-shares must be 0 (all) or > 2, got {cfg.secagg_shares}")
    if not 0 < cfg.secagg_threshold <= 1:
        raise ConfigError(f"secagg-threshold must be in (0, 1], got {cfg.secagg_threshold}")
    if not cfg.secagg_clipping_range > 0:
        raise ConfigError(f"secagg-clipping-range must be > 0, got {cfg.secagg_clipping_range}")
    if not 1 <= cfg.secagg_quantization_range <= 2 ** 31 - 2:   # Q + 1 fits int32
        raise ConfigError(f"secagg-quantization-range must be in [1, 2^31 - 2], "
                          f"got {cfg.secagg_quantization_range}")
    if not cfg.clip_adapt_range >= 1 or not math.isfinite(cfg.clip_adapt_range):
        raise ConfigError(f"clip-adapt-range must be a finite number >= 1, "
                          f"got {cfg.clip_adapt_range}")
    if cfg.client_dp and cfg.recency_decay != 1:
        raise ConfigError(f"recency-decay must be 1 with client-level DP (got "
                          f"{cfg.recency_decay:g}): an example's weight would depend on "
                          f"the user's other examples, which per-example ε does not cover")
    if cfg.server_dp and (cfg.strategy not in ("fedavg", "fedavgm")
                           or cfg.secagg and cfg.strategy != "fedavg"):
        # Flower's DP wrappers noise the inner strategy's *output*; a server optimiser's
        # state (momentum, Adam moments) inside would be built from the un-noised
        # average and carry it into later rounds, outside what the per-round Gaussian
        # accounts for. FedAvgM's momentum is applied after the noise instead
        # (fedrec.server.momentum), which SecAgg+'s legacy workflow does not support.
        raise ConfigError(f"user-level DP (dp = {cfg.dp}) needs strategy fedavg or "
                          f"fedavgm{' (fedavg with secagg)' if cfg.secagg else ''}: with "
                          f"{cfg.strategy} the server optimiser state would see un-noised "
                          f"averages")


def _check_distributed(cfg: RunConfig) -> None:
    """dp = distributed: devices add Skellam shares, SecAgg+ carries them
    (``fedrec.server.ddp``)."""
    if not cfg.secagg:
        raise ConfigError("dp = distributed needs secagg: the devices' Skellam noise shares "
                          "protect the sum only if the server never sees one share alone")
    if cfg.strategy != "fedavg":
        raise ConfigError(f"dp = distributed needs strategy fedavg, got {cfg.strategy}")
    if not (cfg.skellam_scale > 0 and math.isfinite(cfg.skellam_scale)):
        raise ConfigError(f"skellam-scale must be a finite number > 0, got {cfg.skellam_scale}")
    if not 0 < cfg.min_survivors <= 1:
        raise ConfigError(f"min-survivors must be in (0, 1], got {cfg.min_survivors}")
    if not cfg.target_epsilon and not cfg.noise_multiplier > 0:
        raise ConfigError("dp = distributed needs target-epsilon (mu calibrated for the "
                          "planned rounds) or noise-multiplier > 0")
