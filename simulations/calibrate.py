"""Noise multipliers for a target ε: what a sweep cell asks for when it names ε, not z.

Both calibrate the run's *planned* mechanism with dp-accounting
(:func:`fedrec.shared.privacy.calibrate_noise`), so that the run reaches the target at its last
round: user level for every sampled client replying every round, example level for a
client with ``examples`` training examples (smaller clients sample at a higher rate and
reach the target sooner; with a client target ε they then decline).
"""

from __future__ import annotations

from dp_accounting import dp_event as dpe

from fedrec.shared import privacy
from fedrec.shared.config import RunConfig


def user_noise_multiplier(cfg: RunConfig, n_clients: int, target_epsilon: float) -> float:
    """z such that ``cfg.rounds`` rounds of DP-FedAvg reach ``target_epsilon`` (user level,
    δ = ``cfg.user_delta(n_clients)``, replace-one)."""
    from fedrec.server.strategy import per_round

    m = per_round(cfg.clients_per_round, n_clients)
    return privacy.calibrate_noise(
        target_epsilon, cfg.user_delta(n_clients),
        lambda z: dpe.SelfComposedDpEvent(
            privacy.user_level_event(n_clients, m, m, z * cfg.clip / m, cfg.clip), cfg.rounds),
        relation="replace_one")


def example_noise_multiplier(cfg: RunConfig, examples: int, target_epsilon: float) -> float:
    """σ such that a client with ``examples`` examples reaches ``target_epsilon`` after
    taking part in all ``cfg.rounds`` rounds (example level, δ = ``cfg.client_delta``,
    replace-one: the device's n is public)."""
    from fedrec.shared.protocol import LocalSettings

    def event(sigma: float) -> dpe.DpEvent:
        local = LocalSettings.from_run_config(cfg.replace(dp="client",
                                                          client_noise_multiplier=sigma))
        return dpe.SelfComposedDpEvent(local.dp_plan(examples).event(), cfg.rounds)

    return privacy.calibrate_noise(target_epsilon, cfg.client_delta, event,
                                   relation=privacy.EXAMPLE_RELATION)
