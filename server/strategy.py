"""Server strategies: Flower's, configured from a :class:`RunConfig`, plus their state.

fedrec never writes aggregation math: FedAvg, FedAvgM, FedAdam and FedYogi are Flower's
``flwr.serverapp.strategy`` classes. This module only picks and configures one, and reads
and restores the optimiser state those classes keep (for checkpoints).
"""

from __future__ import annotations

import random

import numpy as np
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedYogi

from shared.config import RunConfig

#: Attributes where Flower's server optimisers keep state between rounds.
_STATE_ATTRS = ("m_t", "v_t", "momentum_vector")


def per_round(requested: int, n_clients: int) -> int:
    """Clients per round: ``requested`` (0 = all), never more than exist."""
    return n_clients if requested == 0 else min(requested, n_clients)


def make_strategy(cfg: RunConfig, n_clients: int):
    """Flower strategy sampling exactly ``clients_per_round`` / ``eval_clients`` nodes.

    Flower samples ``max(int(N * fraction), min_nodes)`` nodes; with fraction M/N and
    min M that is exactly M, without replacement.
    """
    m_train = per_round(cfg.clients_per_round, n_clients)
    m_eval = per_round(cfg.eval_clients, n_clients)
    common = dict(fraction_train=m_train / n_clients, min_train_nodes=m_train,
                  fraction_evaluate=m_eval / n_clients, min_evaluate_nodes=m_eval,
                  min_available_nodes=n_clients)
    if cfg.strategy == "fedavg":
        return FedAvg(**common)
    if cfg.strategy == "fedavgm":
        return FedAvgM(**common, server_learning_rate=cfg.server_learning_rate,
                       server_momentum=cfg.server_momentum)
    if cfg.strategy == "fedadam":
        return FedAdam(**common, eta=cfg.server_learning_rate, eta_l=cfg.learning_rate)
    if cfg.strategy == "fedyogi":
        return FedYogi(**common, eta=cfg.server_learning_rate, eta_l=cfg.learning_rate)
    raise ValueError(f"unknown strategy {cfg.strategy!r}")


def seed_sampling(seed: int, round_: int, phase: int) -> None:
    """Seed the ``random`` module that Flower's ``sample_nodes`` draws from.

    Flower samples clients with the global ``random.sample``; seeding it from
    (seed, round, phase) right before each draw makes every round's sample reproducible
    and independent of earlier rounds, so a resumed run samples what an uninterrupted
    run would have.
    """
    random.seed(int(np.random.SeedSequence([seed, round_, phase]).generate_state(1)[0]))


def get_state(strategy) -> dict[str, np.ndarray]:
    """Flatten the server optimiser's state into named arrays (empty for FedAvg)."""
    out: dict[str, np.ndarray] = {}
    for attr in _STATE_ATTRS:
        value = getattr(strategy, attr, None)
        if isinstance(value, dict):
            out.update({f"{attr}:{k}": v for k, v in value.items()})
        elif isinstance(value, list):
            out.update({f"{attr}:{i}": v for i, v in enumerate(value)})
    return out


def set_state(strategy, state: dict[str, np.ndarray]) -> None:
    """Inverse of :func:`get_state`."""
    for attr in _STATE_ATTRS:
        items = {k.split(":", 1)[1]: v for k, v in state.items() if k.startswith(attr + ":")}
        if not items:
            continue
        if attr == "momentum_vector":
            setattr(strategy, attr, [items[str(i)] for i in range(len(items))])
        else:
            setattr(strategy, attr, items)
