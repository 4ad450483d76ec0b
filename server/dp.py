"""User-level DP on the server: Flower's DP strategy wrappers plus fedrec's ε ledger.

Flower's wrappers (``flwr.serverapp.strategy.DifferentialPrivacy*``) clip and noise; they
do not report ε. :class:`ServerPrivacy` reads, after every round, what the wrapper actually
did (clipping norm used, noise standard deviation added, replies averaged), turns it into
the round's ``DpEvent`` (:func:`fedrec.shared.privacy.user_level_event`), records it in a
:class:`fedrec.shared.ledger.Ledger`, and reports ε with RDP (the claim) and PLD (second opinion
where PLD applies). With a target ε it refuses a round that would exceed it.

Sampling: Flower's strategies draw a fixed number of clients without replacement, so the
event is ``SampledWithoutReplacementDpEvent`` under the REPLACE_ONE relation.

Noise: Flower's wrappers draw from numpy's global ``np.random`` and take no generator.
:meth:`ServerPrivacy.aggregating` installs the round's generator as that global one's bit
generator for the aggregation only (:func:`seed_noise`), then puts the previous one back:
by default PCG64DXSM keyed with 128 bits of OS entropy (secret, fresh every round; unlike
MT19937 its outputs are not a linear function of its state), or, with ``noise-seed``
>= 0, MT19937 seeded from (seed, noise-seed, round) for reproducible experiments that are
not private against whoever knows the seeds.

Adaptive clipping is :class:`fedrec.server.adaptive.AdaptiveClipping` around Flower's
server-side fixed clipping (Flower's adaptive wrapper steps the clip the wrong way and
noises a round with the next round's clip; see that module). Which wrapper a run gets is
``fedrec.server.wrappers`` (``fedrec.server.strategy`` builds the strategy with it; this module only
reads what the wrapper did).
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
from collections.abc import Iterator
from typing import Any

import numpy as np
from dp_accounting import dp_event as dpe
from flwr.common.differential_privacy import compute_adaptive_noise_params, compute_stdv

from fedrec.server.secagg_bounds import FLOWER_MODULUS_RANGE, check_no_wrap, max_clients
from fedrec.server.strategy import make_strategy, per_round, server_lr
from fedrec.server.wrappers import adaptive_range, dp_wrapper
from fedrec.shared import privacy, secagg_prg
from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError
from fedrec.shared.ledger import Ledger
from fedrec.shared.protocol import STREAM_SERVER_NOISE, LocalSettings, reported_event
from fedrec.shared.training import DP_NEGATIVES

RELATION = "replace_one"


def noise_bit_generator(cfg: RunConfig, round_: int) -> np.random.BitGenerator:
    """The bit generator of round ``round_``'s server noise (module docstring): secret
    PCG64DXSM keyed with 128 bits of OS entropy, or (``noise-seed`` >= 0, tests and
    reproducible experiments only, not private) MT19937 seeded exactly as
    ``np.random.seed`` would be from (seed, noise-seed, round)."""
    if cfg.noise_seed < 0:
        return np.random.PCG64DXSM(secrets.randbits(128))
    state = np.random.SeedSequence([cfg.seed, cfg.noise_seed, round_,
                                    STREAM_SERVER_NOISE]).generate_state(4)
    legacy = np.random.RandomState(state)       # numpy's legacy seeding of MT19937
    generator = np.random.MT19937()
    generator.state = legacy.get_state(legacy=False)
    return generator


def seed_noise(cfg: RunConfig, round_: int) -> None:
    """Make round ``round_``'s noise generator numpy's global one, which Flower's DP
    wrappers draw from (they take no generator); :meth:`ServerPrivacy.aggregating` puts
    the previous one back afterwards."""
    np.random.set_bit_generator(noise_bit_generator(cfg, round_))


def noise_std(wrapper) -> float:
    """Standard deviation of the noise the wrapper added to the last average: what
    :class:`AdaptiveClipping` recorded, else Flower's formula on the wrapper's clip."""
    added = getattr(wrapper, "last_noise_std", None)
    if added is not None:
        return float(added)
    return compute_stdv(wrapper.noise_multiplier, wrapper.clipping_norm,
                        wrapper.num_sampled_clients)


def mechanism(cfg: RunConfig, n_clients: int, sampled: int) -> dict[str, Any]:
    """Every declared user-level mechanism parameter, for the manifest."""
    how = ("fedrec adaptive clipping around Flower server-fixed"
           if cfg.dp_clipping == "server-adaptive" else "Flower " + cfg.dp_clipping)
    return {"level": "user", "mechanism": f"DP-FedAvg ({how})",
            "noise_multiplier": cfg.noise_multiplier, "clip": cfg.clip,
            "sampling": "fixed size without replacement", "clients": n_clients,
            "clients_per_round": sampled, "sampling_rate": sampled / n_clients,
            "rounds": cfg.rounds, "delta": cfg.user_delta(n_clients),
            "relation": RELATION, "accountant": "rdp", "second_opinion": "pld",
            "target_epsilon": cfg.target_epsilon or None,
            "noise_generator": ("PCG64DXSM keyed with 128 bits of OS entropy, every round"
                                if cfg.noise_seed < 0 else
                                "MT19937 seeded from (seed, noise-seed, round): not private"),
            "sensitivity": (f"{privacy.REPLACE_ONE_SENSITIVITY:g} * (clip + rounding_l2) / "
                            "replies (rounding_l2: SecAgg+ quantization, per round in "
                            "metrics as dp_rounding_l2; 0 without secagg)"),
            "adaptive": _adaptive_declared(cfg, sampled),
            "secagg": _secagg_declared(cfg) if cfg.secagg else None,
            # applied to the released (noised) averages only: no privacy cost
            "post_processing": ({"server_momentum": cfg.server_momentum,
                                 "server_learning_rate": server_lr(cfg)}
                                if cfg.strategy == "fedavgm" else None)}


def _adaptive_declared(cfg: RunConfig, sampled: int) -> dict[str, Any] | None:
    """How the adaptive clip moves (``fedrec.server.adaptive``), for the manifest."""
    if cfg.dp_clipping != "server-adaptive":
        return None
    return {"target_quantile": cfg.clip_quantile, "clip_lr": cfg.clip_lr,
            "clipped_count_stddev": cfg.clipped_count_stddev or sampled / 20,
            "clip_range": list(adaptive_range(cfg)),
            "rule": "C_{t+1} = clamp(C_t * exp(-clip_lr * (noisy unclipped fraction - "
                    "target_quantile)), clip_range)",
            "noise": "z_update * C_t / clients_per_round, C_t the clip of the same round "
                     "(per-round event independent of C_t)"}


def _secagg_declared(cfg: RunConfig) -> dict[str, Any]:
    """SecAgg+'s integer arithmetic (``fedrec.server.secagg_bounds``), for the manifest."""
    q, r = cfg.secagg_quantization_range, cfg.secagg_clipping_range
    return {"quantization_range": q, "modulus_range": FLOWER_MODULUS_RANGE,
            "clipping_range": r, "max_clients_per_round": max_clients(q),
            "rounding_l2": f"sqrt(d) * 2 * {r:g} / {q} * (1 + 2^-20), d = weights summed",
            "mask_generator": secagg_prg.generator_name()}


class ServerPrivacy:
    """The server's user-level ledger for one run (see module docstring)."""

    def __init__(self, cfg: RunConfig, n_clients: int, sampled: int,
                 ledger: Ledger | None = None) -> None:
        self.cfg = cfg
        self.n_clients = n_clients
        self.sampled = sampled
        self.ledger = ledger or Ledger(RELATION, cfg.user_delta(n_clients))
        #: L2 bound on an update's distance from its clipped value in the sum (SecAgg+'s
        #: quantization: set by ``fedrec.server.secagg.SecAggTrainer``; 0 in floating point)
        self.rounding_l2 = 0.0
        self._clip_before = cfg.clip
        self._spent: tuple[int, float] = (-1, 0.0)

    def spent(self) -> float:
        """RDP ε of the rounds recorded so far (0 before the first; cached per round)."""
        rounds = len(self.ledger.history)
        if self._spent[0] != rounds:
            self._spent = (rounds, float(self.ledger.epsilon("rdp") or 0.0) if rounds else 0.0)
        return self._spent[1]

    def resume(self, strategy) -> None:
        """Continue from a restored strategy (its DP wrapper's clipping norm, when adaptive)."""
        self._clip_before = float(dp_wrapper(strategy).clipping_norm)

    def planned_event(self) -> dpe.DpEvent:
        """The next round as declared: every sampled client replies, the clip unchanged
        (adaptive: Flower splits z between the update and the clipped count)."""
        z, count = self.cfg.noise_multiplier, None
        if self.cfg.dp_clipping == "server-adaptive":
            count = self._count_std()
            z = compute_adaptive_noise_params(z, self.sampled, count)[1]
        return privacy.user_level_event(self.n_clients, self.sampled, self.sampled,
                                        z * self._clip_before / self.sampled,
                                        self._clip_before, count, self.rounding_l2)

    def _count_std(self) -> float:
        return self.cfg.clipped_count_stddev or self.sampled / 20

    def refuse(self, round_: int) -> str | None:
        """Why round ``round_`` must not run (target ε), or None."""
        target = self.cfg.target_epsilon
        if not target:
            return None
        exceed, eps = self.ledger.would_exceed(self.planned_event(), target)
        if exceed:
            return (f"round {round_} would raise user-level epsilon to {eps:.3f} "
                    f"> target {target:g} (delta {self.ledger.delta:.3g})")
        return None

    def exceeded(self, round_: int) -> str | None:
        """After a round: did what actually ran (fewer replies than planned, an adaptive
        clip that shrank) take ε past the target? Then the run must stop here."""
        target = self.cfg.target_epsilon
        eps = self.ledger.epsilon("rdp")
        if target and (eps is None or eps > target):
            return (f"round {round_} took user-level epsilon to {eps:.3f} > target {target:g} "
                    "(it ran with less noise per update than planned)")
        return None

    def before_aggregation(self, strategy, round_: int) -> None:
        """Note the clip the round's updates are clipped to; install its noise generator
        (:func:`seed_noise`; :meth:`aggregating` also restores the previous one)."""
        self._clip_before = float(dp_wrapper(strategy).clipping_norm)
        seed_noise(self.cfg, round_)

    @contextlib.contextmanager
    def aggregating(self, strategy, round_: int) -> Iterator[None]:
        """:meth:`before_aggregation`, and numpy's previous global bit generator back
        afterwards (later ``np.random.seed`` calls then seed MT19937 again)."""
        previous = np.random.get_bit_generator()
        self.before_aggregation(strategy, round_)
        try:
            yield
        finally:
            np.random.set_bit_generator(previous)

    def after_aggregation(self, strategy, round_: int, replied: int) -> dict[str, Any]:
        """Record what ``strategy``'s DP wrapper just did; return the round's privacy fields."""
        wrapper = dp_wrapper(strategy)
        std = noise_std(wrapper)
        count = (float(wrapper.clipped_count_stddev)
                 if self.cfg.dp_clipping == "server-adaptive" else None)
        clip_used = self._clip_before
        event = privacy.user_level_event(self.n_clients, self.sampled, replied, std,
                                         clip_used, count, self.rounding_l2)
        self.ledger.record(round_, event)
        self._clip_before = float(wrapper.clipping_norm)
        eps = self.ledger.epsilon("rdp")
        self._spent = (len(self.ledger.history), float(eps or 0.0))   # for spent(): no recompute
        rounding = {"dp_rounding_l2": self.rounding_l2} if self.rounding_l2 else {}
        return {"dp_clip": clip_used, "dp_noise_std": std, "dp_replied": replied, **rounding,
                "dp_event": privacy.event_to_dict(event),
                "epsilon": eps, "epsilon_pld": self.ledger.epsilon("pld")}

    def summary(self) -> dict[str, Any]:
        eps = self.ledger.epsilons()
        return {"level": "user", "epsilon": eps["rdp"], "delta": self.ledger.delta,
                "accountant": "rdp", "epsilon_by_accountant": eps, "relation": RELATION,
                "rounds": len(set(self.ledger.rounds)),
                # a round re-run after a crash that followed its release counts twice
                "releases": len(self.ledger.history),
                "finite": eps["rdp"] is not None and math.isfinite(eps["rdp"]),
                "dp_event": privacy.event_to_dict(self.ledger.event())}


def check_settings(cfg: RunConfig, n_clients: int, client_examples: list[int]) -> None:
    """Refuse DP settings that cannot work, before anything runs (one clear line each).

    Args:
        n_clients: N, clients in the federation.
        client_examples: training examples of every client (read only under
            example-level DP).
    """
    make_strategy(cfg, n_clients)  # Flower's own argument checks
    if cfg.secagg and per_round(cfg.clients_per_round, n_clients) < 3:
        raise ConfigError(f"secagg needs at least 3 clients per round, got "
                          f"{per_round(cfg.clients_per_round, n_clients)}")
    if cfg.secagg and not cfg.distributed_dp:   # SecAgg+ sums modulo 2^32: refuse a
        # cohort whose sum can wrap (distributed: the modulus is sized, fedrec.server.ddp)
        check_no_wrap(per_round(cfg.clients_per_round, n_clients), cfg.secagg_quantization_range)
    if cfg.user_dp:
        cfg.user_delta(n_clients)
    if cfg.server_dp and cfg.target_epsilon:
        first = ServerPrivacy(cfg, n_clients, per_round(cfg.clients_per_round, n_clients))
        exceed, eps = first.ledger.would_exceed(first.planned_event(), cfg.target_epsilon)
        if exceed:
            raise ConfigError(f"target-epsilon {cfg.target_epsilon:g} is already exceeded by one "
                              f"round (epsilon {eps:.3f}); raise the noise multiplier or the target")
    if cfg.client_dp:
        largest = max(client_examples, default=0)
        if largest and cfg.client_delta >= 1.0 / largest:
            raise ConfigError(f"client-delta {cfg.client_delta:g} must be < 1/n = {1.0 / largest:g} "
                              f"for the largest client ({largest} examples)")
        if cfg.client_target_epsilon and largest:
            plan = LocalSettings.from_run_config(cfg).dp_plan(largest)
            eps = Ledger(privacy.EXAMPLE_RELATION, cfg.client_delta).epsilon("rdp", plan.event())
            if eps > cfg.client_target_epsilon:
                raise ConfigError(f"client-target-epsilon {cfg.client_target_epsilon:g} is already "
                                  f"exceeded by one round on every client (at least {eps:.3f})")


def declared_privacy(cfg: RunConfig, n_clients: int, sampled: int) -> dict[str, Any]:
    """Every declared mechanism parameter, per level, for the manifest."""
    example = None
    if cfg.client_dp:
        example = {
            "level": "example", "mechanism": "DP-SGD (tensorflow-privacy fast gradient clipping)",
            "noise_multiplier": cfg.client_noise_multiplier, "clip": cfg.client_clip,
            "sampling": "poisson", "expected_batch_size": cfg.batch_size,
            "sampling_rate": "min(1, batch_size / client examples)",
            "steps_per_round": "reconstruction_steps + ceil(local_epochs / sampling_rate)",
            "reconstruction_steps": cfg.reconstruction_steps, "local_epochs": cfg.local_epochs,
            "delta": cfg.client_delta, "relation": privacy.EXAMPLE_RELATION,
            "relation_why": "a device's number of examples is public (its reply and its "
                            "DpEvent's rate carry it): neighbours replace one interaction",
            "negatives": DP_NEGATIVES,
            "accountant": "rdp", "rdp_under_replace_one": privacy.EXAMPLE_RDP_METHOD,
            "second_opinion": None, "target_epsilon": cfg.client_target_epsilon or None,
            "ledgers": "client_state/<user>/ledger.json"}
    return {"mode": cfg.dp,
            "randomness": ("secret (OS entropy)" if cfg.secret_randomness else
                           f"seeded (seed {cfg.seed}, noise-seed {cfg.noise_seed}): reproducible, "
                           "not private against anyone holding the seeds"),
            "user": mechanism(cfg, n_clients, sampled) if cfg.server_dp else None,
            "example": example}


def final_privacy(cfg: RunConfig, dp: ServerPrivacy | None, history: list[dict],
                  stopped: dict | None) -> dict[str, Any] | None:
    """``privacy.json``: final ε per level and accountant, the largest client ε."""
    if cfg.dp == "none":
        return None
    record: dict[str, Any] = {"mode": cfg.dp, "stopped": stopped}
    record["user"] = dp.summary() if dp is not None else None
    if cfg.client_dp:
        reported = [r["client_epsilon_max"] for r in history
                    if r.get("client_epsilon_max") is not None]
        record["example"] = {"level": "example", "delta": cfg.client_delta, "accountant": "rdp",
                             "relation": privacy.EXAMPLE_RELATION,
                             "max_client_epsilon": max(reported) if reported else None,
                             "source": "clients' own ledgers, as reported in their replies"}
    main = record["user"] or record.get("example") or {}
    record["epsilon"] = main.get("epsilon", main.get("max_client_epsilon"))
    record["delta"] = main.get("delta")
    record["level"] = main.get("level")
    return record


def reported_events(replies: list, position) -> list[dict[str, Any]]:
    """The example-level DpEvents devices report running this round (their reply's
    ``dp-event``), grouped: ``[{"event": to_named_tuple as dicts, "clients": [positions]}]``.

    ``position`` maps a node id to the device's stable position. The code that trained
    emits the event; the server only records it (it cannot know a device's data size).
    """
    groups: dict[str, list[int]] = {}
    for m in replies:
        if (event := reported_event(m.content)) is not None:
            groups.setdefault(event, []).append(position(m.metadata.src_node_id))
    return [{"event": json.loads(e), "clients": sorted(c)} for e, c in sorted(groups.items())]


def client_accounting(history: list[dict]) -> dict[str, list[dict[str, Any]]]:
    """Per device position, the events it reported and the rounds it ran each:
    ``{"7": [{"event": {...}, "rounds": [1, 2]}, ...]}`` (a device whose data grows
    between rounds runs a different event). Rounds whose update was averaged or
    rejected both count; declined rounds ran nothing."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in history:
        for group in row.get("client_events", []):
            for p in group["clients"]:
                entries = out.setdefault(str(p), [])
                same = next((e for e in entries if e["event"] == group["event"]), None)
                if same is None:
                    entries.append(same := {"event": group["event"], "rounds": []})
                same["rounds"].append(int(row["round"]))
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def accounting_record(cfg: RunConfig, dp: ServerPrivacy | None,
                      history: list[dict]) -> dict[str, Any] | None:
    """The ``accounting`` section of ``manifest.json``: every DpEvent that ran, composed
    by nobody, so that an auditor gets each ε from the manifest alone.

    ``user``: the server's ledger (one DP-FedAvg event per round, as run). ``example``:
    per device, the local DP-SGD events it reported with the rounds it ran them
    (:func:`client_accounting`), in simulation and deployment alike. A round a device
    spent whose reply never arrived (failed, timed out) is known to its own ledger only.
    """
    if cfg.dp == "none":
        return None
    record: dict[str, Any] = {"user": dp.ledger.to_dict() if dp is not None else None}
    if cfg.client_dp:
        record["example"] = {"relation": privacy.EXAMPLE_RELATION, "delta": cfg.client_delta,
                             "clients": client_accounting(history)}
    return record
