"""Privacy accounting: the DpEvents fedrec's mechanisms emit, and ε from them.

The spine of fedrec's privacy story follows dp-accounting's design: a ``DpEvent``
describes *what a mechanism did* (noise, sampling, composition), apart from any code that
accounts for it. Training code emits the event of what it ran; ledgers compose events;
run manifests store them as JSON (via ``DpEvent.to_named_tuple``); audits recompute ε
from the stored event with a fresh accountant. Nothing here re-implements accounting:
every ε comes from dp-accounting's RDP or PLD accountant.

Units: ε is the privacy-loss bound (natural log), δ the failure probability; both refer
to the neighbouring relation stored next to the event. fedrec states both levels under
``replace_one``: user level because Flower samples a fixed number of clients without
replacement, example level because a device's number of examples n is public (its reply
and its DpEvent's rate B/n carry it), so neighbouring datasets have the same n. RDP of
Poisson-sampled events under ``replace_one`` comes from :mod:`fedrec.shared.substitution`
(dp-accounting only accounts them under add-or-remove); PLD has no such route.
"""

from __future__ import annotations

import collections
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import dp_accounting
from dp_accounting import dp_event as dpe
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from fedrec.shared.substitution import ReplaceOneRdpAccountant

NeighborRel = dp_accounting.NeighboringRelation
ACCOUNTANTS = ("rdp", "pld")
#: RDP orders: dense near 1 for small ε, sparse up to 512 for large noise.
RDP_ORDERS = ([1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64))
              + [128, 256, 512])
RELATIONS = {"add_or_remove_one": NeighborRel.ADD_OR_REMOVE_ONE,
             "replace_one": NeighborRel.REPLACE_ONE}
#: Relation of example-level DP-SGD (on devices and in central DP-NeuMF): substitution
#: of one interaction, because n is public (see the module docstring).
EXAMPLE_RELATION = "replace_one"
#: How RDP under replace-one is obtained for Poisson-sampled events (manifests say so).
EXAMPLE_RDP_METHOD = ("q = 1: Gaussian with half the noise multiplier (sensitivity 2C); "
                      "q < 1: Mironov's weak triangle inequality (RDP, Prop. 11, p = 2) over "
                      "dp-accounting's add-or-remove RDP at orders 2a and 2a - 1")


def dpsgd_event(noise_multiplier: float, sampling_rate: float, steps: int) -> dpe.DpEvent:
    """DP-SGD with Poisson subsampling: ``steps`` x Poisson(q) o Gaussian(σ).

    Args:
        noise_multiplier: σ, noise standard deviation divided by the clipping norm.
        sampling_rate: q, probability that one example joins a step's batch.
        steps: number of noisy gradient steps.
    """
    _check_mechanism(noise_multiplier, sampling_rate, steps)
    step = dpe.PoissonSampledDpEvent(sampling_rate, dpe.GaussianDpEvent(noise_multiplier))
    return dpe.SelfComposedDpEvent(step, steps)


#: Under REPLACE_ONE, swapping one client's clipped update (norm <= C) for another's
#: moves their sum by up to 2C: the sensitivity the event's noise multiplier refers to.
REPLACE_ONE_SENSITIVITY = 2.0


def user_level_event(n_clients: int, sampled: int, replied: int, noise_std: float,
                     clip: float, count_noise_std: float | None = None,
                     rounding_l2: float = 0.0) -> dpe.DpEvent:
    """One round of DP-FedAvg as Flower's DP wrappers run it.

    Flower samples ``sampled`` of ``n_clients`` clients without replacement, averages the
    ``replied`` clipped updates with equal weights (sum / replied), and adds Gaussian
    noise of standard deviation ``noise_std`` (= z * clip / sampled) to that average.
    Under the REPLACE_ONE relation the average's sensitivity is
    2 * (clip + rounding_l2) / replied, so the Gaussian's noise multiplier is
    ``noise_std * replied / (2 * (clip + rounding_l2))`` (z / 2 when every sampled client
    replies and nothing is rounded).

    Args:
        n_clients: N, clients that can be sampled.
        sampled: m, clients sampled this round (fixed size, without replacement).
        replied: clients whose update was averaged (<= m; fewer replies, less privacy).
        noise_std: standard deviation of the noise actually added to the average.
        clip: L2 bound that the averaged updates were clipped to this round.
        count_noise_std: adaptive clipping only: std of the noise on the count of
            clipped updates (sensitivity 1 under REPLACE_ONE), composed with the update.
        rounding_l2: L2 bound on how far an update the sum received lies from the
            clipped one (SecAgg+'s quantization, ``fedrec.server.secagg_bounds.rounding_l2``;
            0 where updates are summed in floating point).
    """
    if not 0 < sampled <= n_clients or not 0 < replied <= sampled:
        raise ValueError(f"need 0 < replied ({replied}) <= sampled ({sampled}) <= N ({n_clients})")
    if clip <= 0 or noise_std < 0 or rounding_l2 < 0:
        raise ValueError(f"need clip > 0, noise std >= 0 and rounding >= 0, got {clip}, "
                         f"{noise_std}, {rounding_l2}")
    if noise_std == 0:  # no noise: not private at all, whatever else happened
        return dpe.NonPrivateDpEvent()
    update = dpe.GaussianDpEvent(
        noise_std * replied / (REPLACE_ONE_SENSITIVITY * (clip + rounding_l2)))
    inner: dpe.DpEvent = update
    if count_noise_std is not None:
        inner = dpe.ComposedDpEvent([update, dpe.GaussianDpEvent(count_noise_std)])
    if sampled == n_clients:  # everyone takes part: no sampling to amplify (and PLD applies)
        return inner
    return dpe.SampledWithoutReplacementDpEvent(n_clients, sampled, inner)


def _check_mechanism(noise_multiplier: float, rate: float, steps: int) -> None:
    if noise_multiplier < 0 or not math.isfinite(noise_multiplier):
        raise ValueError(f"noise multiplier must be a finite number >= 0, got {noise_multiplier}")
    if not 0 < rate <= 1:
        raise ValueError(f"sampling rate must be in (0, 1], got {rate}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")


def make_accountant(kind: str, relation: str):
    """A fresh accountant (``rdp`` or ``pld``) for a neighbouring relation.

    dp-accounting's own, except RDP under ``replace_one``: :class:`ReplaceOneRdpAccountant`,
    which passes every event dp-accounting supports under REPLACE_ONE to it unchanged and
    adds Poisson-sampled Gaussians (weak triangle over dp-accounting's add-or-remove RDP).
    """
    if relation not in RELATIONS:
        raise ValueError(f"unknown neighbouring relation {relation!r}; use one of {sorted(RELATIONS)}")
    if kind == "rdp" and relation == "replace_one":
        return ReplaceOneRdpAccountant(RDP_ORDERS)
    if kind == "rdp":
        return rdp_privacy_accountant.RdpAccountant(RDP_ORDERS, RELATIONS[relation])
    if kind == "pld":
        return pld_privacy_accountant.PLDAccountant(RELATIONS[relation])
    raise ValueError(f"unknown accountant {kind!r}; use one of {ACCOUNTANTS}")


def epsilon(event: dpe.DpEvent, delta: float, accountant: str = "rdp",
            relation: str = "add_or_remove_one") -> float:
    """ε of ``event`` at ``δ = delta`` with a fresh accountant (``inf`` if not private)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    acc = make_accountant(accountant, relation)
    acc.compose(event)
    return float(acc.get_epsilon(delta))


def epsilons(event: dpe.DpEvent, delta: float, relation: str) -> dict[str, float | None]:
    """ε of ``event`` by accountant (RDP the claim, PLD the second opinion); None where
    an accountant cannot account the event under ``relation``."""
    out: dict[str, float | None] = {}
    for kind in ACCOUNTANTS:
        acc = make_accountant(kind, relation)
        out[kind] = float(acc.compose(event).get_epsilon(delta)) if acc.supports(event) else None
    return out


def calibrate_noise(target_epsilon: float, delta: float,
                    make_event: Callable[[float], dpe.DpEvent],
                    accountant: str = "rdp", relation: str = "add_or_remove_one") -> float:
    """Smallest noise multiplier σ whose event meets ``target_epsilon`` at ``delta``.

    Uses ``dp_accounting.calibrate_dp_mechanism`` (Brent search over σ).
    """
    if target_epsilon <= 0:
        raise ValueError(f"target epsilon must be > 0, got {target_epsilon}")
    sigma = dp_accounting.calibrate_dp_mechanism(
        lambda: make_accountant(accountant, relation), make_event, target_epsilon, delta,
        bracket_interval=dp_accounting.LowerEndpointAndGuess(0.05, 1.0), tol=1e-4)
    return float(sigma)


# ----- serialisation: DpEvent <-> JSON-able dict (manifests store these) -----


def event_json(event: dpe.DpEvent) -> str:
    """The event as canonical JSON (:func:`event_to_dict`, sorted keys): what a device
    reports so that the server's manifest records every example-level event, in a
    deployment too. It tells the server the device's sampling rate, hence roughly its
    number of examples; the ε the device reports already implies as much."""
    return json.dumps(event_to_dict(event), sort_keys=True)


def event_to_dict(event: dpe.DpEvent) -> dict[str, Any]:
    """``event.to_named_tuple()`` as nested plain dicts (JSON-serialisable)."""
    return _tuple_to_dict(event.to_named_tuple())


def _tuple_to_dict(value: Any) -> Any:
    if hasattr(value, "_fields") and hasattr(value, "class_name"):
        return {f: _tuple_to_dict(getattr(value, f)) for f in value._fields}
    if isinstance(value, (list, tuple)):
        return [_tuple_to_dict(v) for v in value]
    return value


#: fedrec's own DpEvent classes (dp-accounting lacks them): ``fedrec.shared.skellam.SkellamEvent``.
OWN_EVENT_MODULES = ("fedrec.shared.skellam",)
#: Module names that ledgers and manifests written before the ``fedrec.*`` namespace
#: (issue #20) hold for the same classes: read as the new name, so old ledgers still load.
LEGACY_EVENT_MODULES = {"shared.skellam": "fedrec.shared.skellam"}


def event_from_dict(data: Mapping[str, Any]) -> dpe.DpEvent:
    """Inverse of :func:`event_to_dict` (through ``DpEvent.from_named_tuple``).

    Only classes of the ``dp_accounting`` package and :data:`OWN_EVENT_MODULES` are
    accepted, so a manifest cannot make the auditor import arbitrary code.
    """
    return dpe.DpEvent.from_named_tuple(_dict_to_tuple(data))


def _dict_to_tuple(value: Any) -> Any:
    if isinstance(value, Mapping) and "class_name" in value:
        module = str(value.get("module_name", ""))
        module = LEGACY_EVENT_MODULES.get(module, module)
        if not module.startswith("dp_accounting.") and module not in OWN_EVENT_MODULES:
            raise ValueError(f"refusing DpEvent from module {module!r}")
        fields = list(value.keys())
        cls = collections.namedtuple("_Event_" + str(value["class_name"]), fields)
        return cls(**{k: _dict_to_tuple(v) for k, v in {**value, "module_name": module}.items()})
    if isinstance(value, list):
        return [_dict_to_tuple(v) for v in value]
    return value
