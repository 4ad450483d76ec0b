"""The audit's own derivation of the user-level events, apart from the training code.

The consistency checks of :mod:`fedrec.simulations.audit` rebuild each round's DpEvent with
``fedrec.shared.privacy.user_level_event``, the function that made the claim; a bug there would
be repeated, not caught. Here each release's Gaussian noise multiplier is re-derived
from the logged noise std, clip and replies with this module's own arithmetic, the events
are built from dp-accounting's classes, composed with dp-accounting's default RDP
accountant (its own orders), and compared with what the claim composed.

What this trusts: the logged std is what Flower's DP wrapper reports for the noise it
added (``compute_stdv`` over the wrapper's ``noise_multiplier``, ``clipping_norm`` and
``num_sampled_clients``), and the clip is the wrapper's attribute; neither is a
measurement of the noise actually drawn, which would need the un-noised aggregate.
"""

from __future__ import annotations

import json
import math
from typing import Any

from dp_accounting import NeighboringRelation as NeighborRel
from dp_accounting import dp_event as dpe
from dp_accounting.rdp import rdp_privacy_accountant

from fedrec.shared import privacy

#: Replacing one user's clipped update (L2 norm <= C) by another's moves the sum of the
#: averaged updates by at most 2C (triangle inequality), the mean of r of them by 2C/r.
AUDIT_REPLACE_ONE_SENSITIVITY = 2.0


def own_multiplier(std: float, clip: float, replied: int, rounding: float = 0.0) -> float:
    """Noise multiplier of one round's Gaussian, by this module's arithmetic: Flower adds
    N(0, std²) to the mean of ``replied`` updates clipped to ``clip``, each moved by at
    most ``rounding`` in L2 on its way into the sum (SecAgg+'s quantization, logged as
    ``dp_rounding_l2``; 0 otherwise). One update then lies within clip + rounding of the
    origin, the mean's replace-one sensitivity is 2·(clip + rounding)/replied, and the
    multiplier is std·replied/(2·(clip + rounding))."""
    return std * replied / (AUDIT_REPLACE_ONE_SENSITIVITY * (clip + rounding))


def _multiplier(r: dict[str, Any]) -> float:
    """:func:`own_multiplier` of a logged release."""
    return own_multiplier(float(r["dp_noise_std"]), float(r["dp_clip"]), int(r["dp_replied"]),
                          float(r.get("dp_rounding_l2", 0.0)))


def _gaussians(event: dict[str, Any]) -> tuple[tuple[int, int] | None, list[float | None]]:
    """(N, m) of a sampled event (None: no sampling) and its Gaussians' multipliers
    (None for a non-private event), read from the stored dict by hand."""
    name = event.get("class_name")
    if name == "SampledWithoutReplacementDpEvent":
        return (int(event["source_dataset_size"]), int(event["sample_size"])), \
            _gaussians(event["event"])[1]
    if name == "ComposedDpEvent":
        return None, [z for e in event["events"] for z in _gaussians(e)[1]]
    if name == "GaussianDpEvent":
        return None, [float(event["noise_multiplier"])]
    return None, [None]


def _own_inner(declared: dict[str, Any], r: dict[str, Any]) -> dpe.DpEvent:
    """The round's unsampled mechanism from dp-accounting's classes and this module's
    multiplier (plus the noised clipped count when adaptive: sensitivity 1)."""
    if float(r["dp_noise_std"]) <= 0:   # no noise: not private, whatever else ran
        return dpe.NonPrivateDpEvent()
    inner: dpe.DpEvent = dpe.GaussianDpEvent(_multiplier(r))
    if declared.get("adaptive"):
        inner = dpe.ComposedDpEvent(
            [inner, dpe.GaussianDpEvent(float(declared["adaptive"]["clipped_count_stddev"]))])
    return inner


def _own_event(declared: dict[str, Any], r: dict[str, Any]) -> dpe.DpEvent:
    """The round's event: its mechanism on m of N users sampled without replacement."""
    n, m = int(declared["clients"]), int(declared["clients_per_round"])
    inner = _own_inner(declared, r)
    if m == n or isinstance(inner, dpe.NonPrivateDpEvent):
        return inner
    return dpe.SampledWithoutReplacementDpEvent(n, m, inner)


def _own_epsilon(events: list[dpe.DpEvent], delta: float) -> float:
    """RDP ε at ``delta`` under REPLACE_ONE with dp-accounting's default orders."""
    acc = rdp_privacy_accountant.RdpAccountant(neighboring_relation=NeighborRel.REPLACE_ONE)
    for event in events:
        acc.compose(event)
    return float(acc.get_epsilon(delta))


def independent_events(declared: dict[str, Any], mech: list[dict],
                       manifest_events: list[dict] | None) -> tuple[bool, str, float | None]:
    """Each release's multiplier re-derived from the logged std, clip and replies and
    compared with the event the claim composed (the manifest's, else the logged one).

    Returns (every release matches, detail, RDP ε of the re-derived events composed
    afresh at the declared δ; None when nothing was logged)."""
    claimed = manifest_events if manifest_events is not None else [r.get("dp_event", {})
                                                                   for r in mech]
    n, m = int(declared["clients"]), int(declared["clients_per_round"])
    bad, own = [], []
    for i, r in enumerate(mech):
        if r.get("dp_noise_std") is None:
            bad.append(f"release {i + 1} (round {r['round']}): no mechanism logged")
            continue
        own.append(_own_event(declared, r))
        z = _multiplier(r) if r["dp_noise_std"] > 0 else None
        sampling, zs = _gaussians(claimed[i]) if i < len(claimed) else (None, [])
        want = [z] + ([float(declared["adaptive"]["clipped_count_stddev"])]
                      if declared.get("adaptive") else [])
        if not _same(zs, want) or sampling != (None if m == n else (n, m)):
            bad.append(f"release {i + 1} (round {r['round']}): claimed sampling {sampling}, "
                       f"multipliers {zs}; derived {None if m == n else (n, m)}, {want}")
    eps = _own_epsilon(own, float(declared["delta"])) if own else None
    if len(claimed) != len(mech):
        bad.append(f"{len(claimed)} claimed events for {len(mech)} releases")
    return (not bad, "; ".join(bad[:3]) or f"{len(own)} releases: z = std·replies/"
            f"(2·(clip + rounding)) matches every claimed event; own RDP ε {eps}", eps)


def _same(a: list[float | None], b: list[float | None]) -> bool:
    """Equal multiplier lists (None: non-private), up to float rounding."""
    return len(a) == len(b) and all(
        (x is None and y is None)
        or (x is not None and y is not None and math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-12))
        for x, y in zip(a, b))


def participation_known(declared: dict[str, Any], releases: list[dict],
                        users: int | None) -> float:
    """ε for a party who sees the participation log (no amplification), recomputed: per
    user (positions below ``users``), the unsampled mechanisms of every release it was
    sampled in (averaged, declined or rejected), composed; the worst user."""
    per_user: dict[int, list[int]] = {}
    for i, r in enumerate(releases):
        for p in {int(p) for k in ("participants", "declined", "rejected") for p in r.get(k, [])}:
            if users is None or p < users:
                per_user.setdefault(p, []).append(i)
    inner = [_own_inner(declared, r) if r.get("dp_noise_std") is not None else None
             for r in releases]
    text = [None if e is None else json.dumps(privacy.event_to_dict(e), sort_keys=True)
            for e in inner]
    cache: dict[tuple[str, ...], float] = {}
    worst = 0.0
    for indices in per_user.values():   # users with the same rounds' events: composed once
        key = tuple(sorted(text[i] for i in indices if text[i] is not None))
        if key not in cache:
            events = [privacy.event_from_dict(json.loads(t)) for t in key]
            cache[key] = _own_epsilon(events, float(declared["delta"])) if key else 0.0
        worst = max(worst, cache[key])
    return worst
