"""DP-FedAvg with distributed noise (``dp = distributed``, issue #22): Skellam shares
added on the devices, carried by Flower's SecAgg+; the server adds no noise.

Each round, every sampled device clips its update to L2 ``clip``, scales it by ``scale``
integer units per unit, rounds it (conditional randomized rounding) and adds its share
``Sk(mu / t)`` (``fedrec.client.ddp``); SecAgg+ (``fedrec.server.secagg``) unmasks only the
sum of the s survivors' vectors, which carries ``Sk(mu s / t)``. :class:`SkellamSum`, a
legacy strategy wrapper around Flower's legacy ``FedAvg`` (in place of Flower's DP
wrapper), turns what SecAgg+ hands it (the average) back into the integer sum
(``fedrec.server.distributed.decode_average``, shared with the releases), refuses a
round with s < t, and steps the global weights by ``sum / (scale * sampled)``.

Accounting (:class:`DistributedPrivacy`): every round is one ``SkellamEvent(mu, D1, D2)``
(``fedrec.shared.skellam.release_event``: replace-one sensitivities of one device's rounded
vector), composed by the replace-one RDP ledger, **without** amplification by sampling
(dp-accounting has none for Skellam; a user not sampled changes nothing, so the plain
event per round is a true upper bound). The event is recorded write-ahead, before the
round's shares are drawn. ``mu`` is calibrated for ``target-epsilon`` over the planned
rounds (``fedrec.shared.skellam.calibrate``), or is ``(z scale clip)^2`` for a noise
multiplier z without a target. Docs: docs/distributed-dp.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from dp_accounting import dp_event as dpe
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import Strategy

from fedrec.server.distributed import decode_average
from fedrec.shared import privacy, range_failure, secagg_prg, skellam
from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError
from fedrec.shared.ledger import Ledger
from fedrec.shared.protocol import SKELLAM_BITS, SKELLAM_CLIP, SKELLAM_MU_SHARE, SKELLAM_SCALE

RELATION = "replace_one"
MECHANISM = "skellam-distributed"
#: Who the claim holds against (privacy.json): the server too, as it only unmasks the sum.
ADVERSARY = ("anyone who sees the released models, and the server itself: SecAgg+ unmasks "
             "only the sum of the survivors' noisy integer vectors (devices honest about "
             "their noise; fewer than SecAgg+'s threshold colluding with the server)")


def survivor_threshold(min_survivors: float, sampled: int) -> int:
    """t = ceil(min_survivors * sampled) (rounded to 9 decimals first: 0.7 x 10 is 7)."""
    return max(1, math.ceil(round(min_survivors * sampled, 9)))


@dataclass(frozen=True)
class RoundPlan:
    """One round's mechanism, in integer units (real value x ``scale``).

    Attributes:
        dim: d, weights summed. clip: L2 bound of an update (real units).
        mu: Skellam variance the ledger accounts per round (t survivors' shares).
        sampled: devices drawn per round. threshold: t, fewest survivors aggregated.
        bits: SecAgg+'s range per device, [-2^(bits-1), 2^(bits-1)].
    """

    dim: int
    scale: float
    clip: float
    mu: float
    sampled: int
    threshold: int
    bits: int
    beta: float = skellam.BETA
    range_log2: float = skellam.RANGE_LOG2

    @property
    def mu_per_device(self) -> float:
        return self.mu / self.threshold

    def event(self) -> skellam.SkellamEvent:
        return skellam.release_event(self.mu, self.scale, self.clip, self.dim, self.beta)

    def range_failure(self, rounds: int) -> float:
        """p: probability that some device's noisy vector leaves SecAgg+'s [-c, c] in
        ``rounds`` rounds (union bound: rounds x sampled x 2^range_log2, the per-device
        Bernstein bound ``bits`` is sized for)."""
        return rounds * self.sampled * 2.0 ** self.range_log2

    def ranges(self) -> tuple[int, float, int]:
        """SecAgg+'s (Q, c, M) (``fedrec.shared.skellam.secagg_ranges``)."""
        return skellam.secagg_ranges(self.bits, self.sampled)

    def request(self) -> dict[str, Any]:
        """What each device is told in its fit config (``fedrec.client.ddp``)."""
        return {SKELLAM_SCALE: float(self.scale), SKELLAM_CLIP: float(self.clip),
                SKELLAM_MU_SHARE: float(self.mu_per_device), SKELLAM_BITS: int(self.bits)}

    def declared(self) -> dict[str, Any]:
        q, c, m = self.ranges()
        event = self.event()
        return {"dim": self.dim, "scale": self.scale, "clip": self.clip, "mu": self.mu,
                "threshold": self.threshold, "mu_per_device": self.mu_per_device,
                "beta": self.beta, "bits": self.bits, "range_log2_failure": self.range_log2,
                "secagg": {"quantization_range": q, "clipping_range": c, "modulus_range": m,
                           "max_weight": 1.0, "mask_generator": secagg_prg.generator_name()},
                "l1_sensitivity": event.l1_sensitivity, "l2_sensitivity": event.l2_sensitivity,
                "noise_std_of_sum": math.sqrt(self.mu) / self.scale,
                "noise_std_of_mean": math.sqrt(self.mu) / self.scale / self.sampled}


def calibrate_mu(target: float, delta: float, rounds: int, scale: float, clip: float,
                 dim: int) -> float:
    """Smallest mu (to 0.2 %) whose ``rounds`` Skellam events meet ``target`` under the
    ledger's accountant (bisection by ``skellam.calibrate``, then checked)."""
    d2 = skellam.replace_one_sensitivities(scale, clip, dim)[1]

    def events(mus):
        return [skellam.release_event(mus[0], scale, clip, dim)] * rounds

    z = skellam.calibrate(target, delta, [d2], [1.0], events)
    for _ in range(200):
        composed = dpe.ComposedDpEvent(events([(d2 * z) ** 2]))
        if privacy.epsilon(composed, delta, "rdp", RELATION) <= target:
            return (d2 * z) ** 2
        z *= 1.002
    raise RuntimeError(f"could not calibrate Skellam noise for ε = {target}")


def plan_rounds(cfg: RunConfig, n_clients: int, sampled: int, dim: int) -> RoundPlan:
    """The per-round mechanism of a run; refuses (one line) a range SecAgg+ cannot carry."""
    scale, clip = cfg.skellam_scale, cfg.clip
    t = survivor_threshold(cfg.min_survivors, sampled)
    if cfg.target_epsilon:
        mu = calibrate_mu(cfg.target_epsilon, cfg.user_delta(n_clients), cfg.rounds, scale,
                          clip, dim)
    else:
        mu = (cfg.noise_multiplier * scale * clip) ** 2
    rounded = skellam.replace_one_sensitivities(scale, clip, dim)[1] / 2.0
    bits = skellam.device_bits(rounded, mu / t, dim)
    if bits > skellam.SECAGG_MAX_BITS:
        raise ConfigError(f"dp distributed: a device's noisy vector needs {bits} bits per "
                          f"coordinate, more than SecAgg+'s {skellam.SECAGG_MAX_BITS}; lower "
                          f"--skellam-scale ({scale:g})")
    plan = RoundPlan(dim, scale, clip, mu, sampled, t, bits)
    bound = range_failure.target_bound(cfg.target_epsilon) or 0.0
    if range_failure.accounted_delta(cfg.user_delta(n_clients), plan.range_failure(cfg.rounds),
                                     bound) <= 0:
        raise ConfigError(f"dp distributed: SecAgg+'s range-failure probability over "
                          f"{cfg.rounds} rounds exceeds delta {cfg.user_delta(n_clients):.3g}")
    return plan


class DistributedPrivacy:
    """The user-level ledger of a ``dp = distributed`` run (the interface of
    ``fedrec.server.dp.ServerPrivacy`` that the round loop uses)."""

    def __init__(self, cfg: RunConfig, n_clients: int, plan: RoundPlan,
                 ledger: Ledger | None = None) -> None:
        self.cfg, self.n_clients, self.plan = cfg, n_clients, plan
        self.ledger = ledger or Ledger(RELATION, cfg.user_delta(n_clients))

    def restored(self, ledger: Ledger) -> "DistributedPrivacy":
        return DistributedPrivacy(self.cfg, self.n_clients, self.plan, ledger)

    def spent(self) -> float:
        return self.claim().epsilon if self.ledger.history else 0.0

    def epsilon_bound(self) -> float | None:
        """E for δ_acc: the target with a margin (``refuse`` allows 1e-9 above it)."""
        target = self.cfg.target_epsilon
        return range_failure.target_bound(target)

    def claim(self) -> range_failure.StrictClaim:
        """The strict claim at the stated δ: the ledger's RDP ε at δ_acc = δ - (1 + e^E) p,
        p = ``plan.range_failure`` of the rounds recorded (``fedrec.shared.range_failure``)."""
        led = self.ledger

        def epsilon_at(delta: float) -> float:
            return float(Ledger(led.relation, delta, led.history).epsilon("rdp"))

        p = self.plan.range_failure(len(led.history))
        return range_failure.strict_claim(epsilon_at, led.delta, p, self.epsilon_bound())

    def planned_event(self) -> dpe.DpEvent:
        return self.plan.event()

    def refuse(self, round_: int) -> str | None:
        """Why round ``round_`` must not run (its event would pass target ε), or None."""
        target = self.cfg.target_epsilon
        if not target:
            return None
        exceed, eps = self.ledger.would_exceed(self.planned_event(), target * (1 + 1e-9))
        return (f"round {round_} would raise user-level epsilon to {eps:.3f} > target "
                f"{target:g} (delta {self.ledger.delta:.3g})") if exceed else None

    def exceeded(self, round_: int) -> str | None:
        return None          # what ran is what was planned: refuse() covers the target

    def record_planned(self, round_: int) -> dict[str, Any]:
        """Write-ahead: the round's event into the ledger before any share is drawn;
        the fields the run's write-ahead log gets for it."""
        event = self.planned_event()
        self.ledger.record(round_, event)
        return {"clients_sampled": self.plan.sampled, "dp_event": privacy.event_to_dict(event)}

    def after_round(self, survivors: int) -> dict[str, Any]:
        """A round's metrics fields: survivors s (a count), t, the noise summed."""
        return {"survivors": survivors, "survivor_threshold": self.plan.threshold,
                "dp_mu": self.plan.mu, "dp_mu_summed": self.plan.mu_per_device * survivors,
                "epsilon": self.claim().epsilon, "epsilon_pld": None}

    def declared(self, n_clients: int) -> dict[str, Any]:
        """The manifest's user-level section."""
        cfg = self.cfg
        return {"level": "user", "mechanism": "DP-FedAvg, distributed Skellam noise under "
                "SecAgg+", "kind": MECHANISM, **self.plan.declared(),
                "clients": n_clients, "clients_per_round": self.plan.sampled,
                "min_survivors": cfg.min_survivors, "rounds": cfg.rounds,
                "sampling": "fixed size without replacement (no amplification claimed)",
                "delta": self.ledger.delta, "relation": RELATION, "accountant": "rdp",
                "second_opinion": None, "target_epsilon": cfg.target_epsilon or None,
                "noise_multiplier": None if cfg.target_epsilon else cfg.noise_multiplier,
                "noise_generator": ("each device: PCG64DXSM keyed with 128 bits of OS entropy"
                                    if cfg.noise_seed < 0 else "each device: PCG64DXSM "
                                    "seeded from (seed, noise-seed, user, round): not private"),
                "adversary": ADVERSARY}

    def summary(self) -> dict[str, Any]:
        """privacy.json's user record. A device's noisy vector outside SecAgg+'s range is
        clamped (prob. <= p): the run is within total variation p of the accounted one,
        so the claim is the ledger's ε at δ_acc = δ - (1 + e^E) p, strict for the stated
        δ (``claim``; docs/distributed-dp.md)."""
        strict = self.claim()
        eps = strict.epsilon
        return {"level": "user", **strict.as_record(),
                "accountant": "rdp", "epsilon_by_accountant": {"rdp": eps, "pld": None},
                "relation": RELATION, "kind": MECHANISM,
                "rounds": len(set(self.ledger.rounds)), "releases": len(self.ledger.history),
                "finite": eps is not None and math.isfinite(eps),
                "dp_event": privacy.event_to_dict(self.ledger.event())}


def user_scope(record: dict[str, Any]) -> dict[str, Any]:
    """``privacy.json``'s user section: who the claim holds against; with no amplification
    claimed, knowing who took part does not change it."""
    return {**record, "adversary": ADVERSARY,
            "participation_known": {"epsilon": record["epsilon"], "delta": record["delta"],
                                    "accountant": "rdp", "relation": RELATION,
                                    "note": "no amplification by sampling is claimed"}}


class SkellamSum(Strategy):
    """Legacy strategy wrapper for SecAgg+ rounds with distributed noise (module
    docstring): ``strategy`` (Flower's legacy FedAvg) samples and averages; this adds the
    devices' request to the fit config and turns the unmasked average into the step."""

    def __init__(self, strategy: Strategy, plan: RoundPlan) -> None:
        self.strategy, self.plan = strategy, plan
        self.current: list[np.ndarray] = []
        self.survivors, self.total = 0, None

    def initialize_parameters(self, client_manager):
        return self.strategy.initialize_parameters(client_manager)

    def configure_fit(self, server_round, parameters, client_manager):
        self.current = parameters_to_ndarrays(parameters)
        self.survivors, self.total = 0, None
        pairs = self.strategy.configure_fit(server_round, parameters, client_manager)
        for _, fitins in pairs:
            fitins.config.update(self.plan.request())
        return pairs

    def aggregate_fit(self, server_round, results, failures):
        """None for a round of fewer than t survivors (less noise than accounted)."""
        self.survivors = len(results)
        if self.survivors < self.plan.threshold:
            return None, {}
        mean, metrics = self.strategy.aggregate_fit(server_round, results, failures)
        if mean is None:
            return None, metrics
        self.total = decode_average(
            np.concatenate([a.ravel() for a in parameters_to_ndarrays(mean)]), self.survivors)
        step = self.total / (self.plan.scale * self.plan.sampled)
        new, start = [], 0
        for w in self.current:
            new.append((w.astype(np.float64) + step[start:start + w.size].reshape(w.shape)))
            start += w.size
        return ndarrays_to_parameters(new), metrics

    def configure_evaluate(self, server_round, parameters, client_manager):
        return self.strategy.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(self, server_round, results, failures):
        return self.strategy.aggregate_evaluate(server_round, results, failures)

    def evaluate(self, server_round, parameters):
        return self.strategy.evaluate(server_round, parameters)
