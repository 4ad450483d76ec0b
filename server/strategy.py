"""Server strategies: Flower's, configured from a :class:`RunConfig`, plus their state.

fedrec never writes aggregation math: FedAvg, FedAvgM, FedAdam and FedYogi are Flower's
``flwr.serverapp.strategy`` classes. This module only picks and configures one, and reads
and restores the optimiser state those classes keep (for checkpoints).
"""

from __future__ import annotations

import logging
import random
import secrets
import time

import numpy as np
from flwr.app import MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedYogi
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from fedrec.server.momentum import ServerMomentumAfterNoise
from fedrec.server.wrappers import wrap_strategy
from fedrec.shared.config import RunConfig
from fedrec.shared.protocol import METRICS

log = logging.getLogger("flwr")

#: Attributes where Flower's server optimisers keep state between rounds (and the
#: adaptive DP wrapper its current clipping norm).
_STATE_ATTRS = ("m_t", "v_t", "momentum_vector", "clipping_norm")


def per_round(requested: int, n_clients: int) -> int:
    """Clients per round: ``requested`` (0 = all), never more than exist."""
    return n_clients if requested == 0 else min(requested, n_clients)


#: Server learning rate when the config leaves it at 0 ("the strategy's default").
DEFAULT_SERVER_LR = {"fedavgm": 1.0, "fedadam": 0.01, "fedyogi": 0.01, "fedavg": 1.0}


def server_lr(cfg: RunConfig) -> float:
    return cfg.server_learning_rate or DEFAULT_SERVER_LR[cfg.strategy]


def weighted_metrics(records: list[RecordDict], weighted_by_key: str) -> MetricRecord | None:
    """Flower's weighted average, or None when every reply has weight 0.

    Clients without a held-out item reply ``num-examples = 0``; if a round samples only
    such clients, Flower's average would divide by zero.
    """
    total = sum(float(r[METRICS][weighted_by_key]) for r in records
                if METRICS in r and weighted_by_key in r[METRICS])
    return aggregate_metricrecords(records, weighted_by_key) if total > 0 else None


def make_strategy(cfg: RunConfig, n_clients: int):
    """Flower strategy sampling exactly ``clients_per_round`` / ``eval_clients`` nodes,
    wrapped in Flower's DP wrapper under user-level DP (``fedrec.server.wrappers``): FedAvg inside it,
    and with ``fedavgm`` FedAvgM's server momentum applied to the wrapper's noised output
    (``fedrec.server.momentum``), never inside it.

    Flower samples ``max(int(N * fraction), min_nodes)`` nodes; with fraction M/N and
    min M that is exactly M, without replacement.

    A deployment without user-level DP tolerates lost devices: it samples the fraction
    M/N of the nodes online (at least ``min-replies``) instead of waiting for all N to be
    connected, so a SuperNode that dies costs its replies, not the run. Under user-level
    DP the accounted sampler (M of N, without replacement) is kept exactly: the server
    waits for all N.
    """
    m_train = per_round(cfg.clients_per_round, n_clients)
    m_eval = per_round(cfg.eval_clients, n_clients)
    tolerant = bool(cfg.catalogue) and not cfg.user_dp
    floor = min(cfg.min_replies, n_clients)
    common = dict(fraction_train=m_train / n_clients,
                  min_train_nodes=floor if tolerant else m_train,
                  fraction_evaluate=m_eval / n_clients,
                  min_evaluate_nodes=floor if tolerant else m_eval,
                  min_available_nodes=floor if tolerant else n_clients,
                  evaluate_metrics_aggr_fn=weighted_metrics)
    if not cfg.server_dp:
        return _base_strategy(cfg, common)
    wrapped = wrap_strategy(FedAvg(**common), cfg, m_train)
    if cfg.strategy == "fedavgm":   # FedAvgM's momentum after the noise: post-processing
        return ServerMomentumAfterNoise(wrapped, server_lr(cfg), cfg.server_momentum)
    return wrapped


def _base_strategy(cfg: RunConfig, common: dict):
    if cfg.strategy == "fedavg":
        return FedAvg(**common)
    if cfg.strategy == "fedavgm":
        return FedAvgM(**common, server_learning_rate=server_lr(cfg),
                       server_momentum=cfg.server_momentum)
    if cfg.strategy == "fedadam":
        return FedAdam(**common, eta=server_lr(cfg), eta_l=cfg.learning_rate)
    if cfg.strategy == "fedyogi":
        return FedYogi(**common, eta=server_lr(cfg), eta_l=cfg.learning_rate)
    raise ValueError(f"unknown strategy {cfg.strategy!r}")


def wait_for_nodes(grid, count: int, what: str = "nodes",
                   timeout: float | None = None) -> list[int]:
    """Block until ``grid`` lists at least ``count`` nodes; return their sorted ids.

    Logs progress each second. With ``timeout`` (seconds) it raises ``TimeoutError``
    after that long; without, it waits as long as it takes (a deployment waiting for
    its devices).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < count:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{len(nodes)} of {count} {what} connected")
        log.info("waiting for %s: %d of %d connected", what, len(nodes), count)
        time.sleep(1)
    return nodes


class OrderedGrid:
    """A Grid whose ``get_node_ids`` lists nodes in a stable order (by position).

    Flower's strategies sample with ``random.sample(list(grid.get_node_ids()), k)``; node
    ids are random per launch and come back as a set, so even a seeded ``random`` picks
    different users each launch. Listing nodes by their stable position (a simulated
    client's partition id) makes the seeded draw pick the same users every time.
    Everything else is passed through to the real Grid.
    """

    def __init__(self, grid, positions: dict[int, int]) -> None:
        self._grid = grid
        self._positions = positions

    def position(self, node_id: int) -> int:
        """The node's stable position (partition id in simulation; -1 if unknown)."""
        return self._positions.get(node_id, -1)

    def get_node_ids(self):
        nodes = list(self._grid.get_node_ids())
        return sorted(nodes, key=lambda n: (self._positions.get(n, 1 << 62), n))

    def __getattr__(self, name):
        return getattr(self._grid, name)


def seed_sampling(seed: int, round_: int, phase: int, secret: bool = False) -> None:
    """Seed the ``random`` module that Flower's ``sample_nodes`` draws from.

    Flower samples clients with the global ``random.sample``; seeding it from
    (seed, round, phase) right before each draw (over an :class:`OrderedGrid`) makes
    every round's sample reproducible and independent of earlier rounds, so a resumed
    run samples what an uninterrupted run would have. ``secret`` (DP runs without a
    noise seed): seed from OS entropy instead, so that who was sampled stays unknown to
    anyone holding the run config (amplification by sampling needs that).
    """
    if secret:
        random.seed(secrets.randbits(128))
        return
    random.seed(int(np.random.SeedSequence([seed, round_, phase]).generate_state(1)[0]))


def layers(strategy) -> list:
    """``strategy`` and every strategy it wraps (DP wrappers keep theirs in ``.strategy``)."""
    out = [strategy]
    while hasattr(out[-1], "strategy"):
        out.append(out[-1].strategy)
    return out


def get_state(strategy) -> dict[str, np.ndarray]:
    """Flatten the state of the strategy and its wrappers into named arrays.

    Names are ``<depth>:<attr>:<key>``; FedAvg alone has none.
    """
    out: dict[str, np.ndarray] = {}
    for depth, layer in enumerate(layers(strategy)):
        for attr in _STATE_ATTRS:
            value = getattr(layer, attr, None)
            if isinstance(value, dict):
                out.update({f"{depth}:{attr}:{k}": v for k, v in value.items()})
            elif isinstance(value, list):
                out.update({f"{depth}:{attr}:{i}": v for i, v in enumerate(value)})
            elif isinstance(value, float):
                out[f"{depth}:{attr}:"] = np.array(value)
    return out


def set_state(strategy, state: dict[str, np.ndarray]) -> None:
    """Inverse of :func:`get_state` (also reads checkpoints written before wrappers
    existed, ``<attr>:<key>`` names, into the innermost strategy)."""
    depth = len(layers(strategy)) - 1
    state = {(k if k.split(":", 1)[0].isdigit() else f"{depth}:{k}"): v for k, v in state.items()}
    for depth, layer in enumerate(layers(strategy)):
        for attr in _STATE_ATTRS:
            prefix = f"{depth}:{attr}:"
            items = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not items:
                continue
            if attr == "momentum_vector":
                setattr(layer, attr, [items[str(i)] for i in range(len(items))])
            elif set(items) == {""}:
                setattr(layer, attr, float(items[""]))
            else:
                setattr(layer, attr, items)
