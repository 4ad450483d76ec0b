"""Audit of DP-FedAvg with distributed Skellam noise (``dp = distributed``, ``fedrec.server.ddp``).

The federation audit (``fedrec.simulations.audit.audit_accounting``) calls
:func:`audit_distributed` when the manifest declares ``kind: skellam-distributed``. It
recomputes, from the declared scale, dimension, clip, beta, mu and rounds only:

1. the round's ``SkellamEvent`` (sensitivities of one device's rounded vector recomputed
   by ``fedrec.shared.skellam``), the noise split (shares mu / t, t = ceil(min_survivors x
   clients_per_round)), the per-device bit width (a noisy vector leaves SecAgg+'s range
   with probability <= 2^-64), SecAgg+'s ranges (Q = 2^bits, c = Q / 2, M > m (Q + 1))
   and its masks' generator (the full-seed ``shake-256``, ``fedrec.shared.secagg_prg``);
2. that every event in the write-ahead log and in the manifest is that event, logged
   before the round's participation entry (before its shares were drawn);
3. the range-failure probability p (rounds x m x 2^-64, a device's vector leaving
   SecAgg+'s range) and the strict claim's δ_acc: ``δ_acc + (1 + e^E) p <= δ`` with the
   claimed ε <= E (``fedrec.shared.range_failure``); the ε of the events logged at δ_acc,
   with a fresh replace-one RDP accountant and with ``fedrec.shared.skellam``'s closed form
   composed by order; the claim must equal both;
   with a target, the planned rounds' ε must meet it (the calibration);
4. survivors: every aggregated round summed t <= s <= m vectors, recorded as a count.

No amplification by sampling is claimed, so the participation log changes nothing.
"""

from __future__ import annotations

import math
from typing import Any

from fedrec.shared import privacy, secagg_prg, skellam
from fedrec.shared.ledger import Ledger

KIND = "skellam-distributed"
SURVIVORS_CHECK = "every aggregated round summed t <= s <= m devices"
RANGE_CHECK = "range failure p recomputed; delta_acc + (1 + e^E) p <= delta, epsilon <= E"


def is_distributed(declared_user: dict[str, Any] | None) -> bool:
    return bool(declared_user) and declared_user.get("kind") == KIND


def _threshold(declared: dict[str, Any]) -> int:
    return max(1, math.ceil(round(declared["min_survivors"] * declared["clients_per_round"], 9)))


def declared_event(declared: dict[str, Any]) -> skellam.SkellamEvent:
    """The per-round event the declared mechanism implies (sensitivities recomputed)."""
    return skellam.release_event(declared["mu"], declared["scale"], declared["clip"],
                                 declared["dim"], declared["beta"])


def _mechanism_check(check, declared: dict[str, Any]) -> Any:
    event, t, m = declared_event(declared), _threshold(declared), declared["clients_per_round"]
    bits = declared["bits"]
    need = skellam.device_bits(event.l2_sensitivity / 2, declared["mu"] / t, declared["dim"])
    q, c, mod = skellam.secagg_ranges(bits, m)
    sa = declared["secagg"]
    bad = [msg for ok, msg in (
        (declared["threshold"] == t, f"threshold {declared['threshold']} != t {t}"),
        (math.isclose(declared["mu_per_device"] * t, declared["mu"]), "shares are not mu / t"),
        (bits >= need and bits <= skellam.SECAGG_MAX_BITS, f"{bits} bits, need {need} (<= 30)"),
        ((sa["quantization_range"], sa["clipping_range"], sa["modulus_range"]) == (q, c, mod)
         and mod > m * (q + 1), f"SecAgg+ ranges {sa} != (Q, c, M) = {(q, c, mod)}"),
        (sa.get("mask_generator") == secagg_prg.NAME,
         f"SecAgg+ masks from {sa.get('mask_generator')!r}, not the full-seed "
         f"{secagg_prg.NAME!r} (fedrec.shared.secagg_prg)"),
        (math.isclose(declared["l2_sensitivity"], event.l2_sensitivity)
         and math.isclose(declared["l1_sensitivity"], event.l1_sensitivity),
         "declared sensitivities differ from the recomputed ones")) if not ok]
    return check("Skellam mechanism recomputed from the declared settings", "user", not bad,
                 "; ".join(bad) or f"D2 {event.l2_sensitivity:.6g}, D1 {event.l1_sensitivity:.6g}, "
                 f"t {t}, {bits} bits, M = 2^{mod.bit_length() - 1}")


def _log_checks(check, declared: dict[str, Any], releases: list[dict] | None,
                rows: list[dict], stored: dict[str, Any] | None) -> list:
    want = privacy.event_to_dict(declared_event(declared))
    if releases is None:
        return [check("write-ahead log of events present", "user", False,
                      "no server-private/participation.jsonl")]
    events = [(int(e["round"]), e["dp_event"]) for e in releases if "dp_event" in e]
    first_event = {}
    first_entry = {}
    for i, e in enumerate(releases):
        if "dp_event" in e:
            first_event.setdefault(int(e["round"]), i)
        elif "participants" in e:
            first_entry.setdefault(int(e["round"]), i)
    late = [r["round"] for r in rows
            if not first_event.get(r["round"], math.inf) < first_entry.get(r["round"], -1)]
    out = [check("logged events are the declared event, written before the shares", "user",
                 all(e == want for _, e in events) and not late,
                 f"{len(events)} events logged for {len(rows)} rounds; rounds without an "
                 f"earlier event: {late[:10]}")]
    if stored is not None:
        manifest = [(int(h[0]), h[1]) for h in Ledger.from_dict(stored).history]
        out.append(check("manifest events match the write-ahead log", "user", manifest == events,
                         f"{len(manifest)} in manifest.json, {len(events)} logged"))
    return out


def _range_failure_check(check, declared: dict[str, Any], n_events: int,
                         claim: dict[str, Any]) -> tuple[Any, float]:
    """p = rounds x m x 2^-64 recomputed; δ_acc + (1 + e^E) p <= δ with ε <= E; returns
    the check and δ_acc (the δ the claim is converted at)."""
    p = n_events * declared["clients_per_round"] * 2.0 ** skellam.RANGE_LOG2
    delta, delta_acc = declared["delta"], claim.get("delta_accounted", -1.0)
    bound, claimed = claim.get("epsilon_bound", -math.inf), claim.get("epsilon")
    total = delta_acc + (1 + math.exp(bound)) * p if bound < 700 else math.inf
    ok = (claimed is not None and 0 < delta_acc <= delta and claimed <= bound
          and total <= delta * (1 + 1e-12) and claim.get("delta") == delta
          and math.isclose(claim.get("range_failure_probability", -1.0), p, rel_tol=1e-9,
                           abs_tol=0.0))
    return check(RANGE_CHECK, "user", ok,
                 f"p = {p:.3g} ({n_events} rounds x {declared['clients_per_round']} devices x "
                 f"2^{skellam.RANGE_LOG2}), recorded {claim.get('range_failure_probability')}; "
                 f"delta_acc {delta_acc:.6g} + (1 + e^{bound:.6g}) p = {total:.6g} <= delta "
                 f"{delta:.6g}; claimed {claimed} <= E"), delta_acc


def _epsilon_checks(check, declared: dict[str, Any], n_events: int, claim: dict[str, Any],
                    stored: dict[str, Any] | None) -> tuple[list, dict[str, Any]]:
    event, delta = declared_event(declared), declared["delta"]
    range_check, delta_acc = _range_failure_check(check, declared, n_events, claim)
    at = delta_acc if 0 < delta_acc < 1 else delta
    own = skellam.epsilon([event] * n_events, at, privacy.RDP_ORDERS) if n_events else 0.0
    fresh = None
    if stored is not None:
        led = Ledger.from_dict(stored)
        fresh = Ledger(led.relation, at, led.history).epsilon("rdp") if led.history else 0.0
    claimed = claim.get("epsilon")
    ok = (claimed is not None and math.isclose(claimed, own, rel_tol=1e-6)
          and (fresh is None or math.isclose(claimed, fresh, rel_tol=1e-6)))
    out = [range_check,
           check("epsilon claim = fresh RDP = Skellam closed form, at delta_acc", "user", ok,
                 f"claimed {claimed}, fresh RDP {fresh}, closed form composed {own:.6g} "
                 f"({n_events} rounds, delta_acc {at:.6g})")]
    target = declared.get("target_epsilon")
    if target:
        planned = skellam.epsilon([event] * declared["rounds"], delta, privacy.RDP_ORDERS)
        out.append(check("calibrated mu meets target-epsilon over the planned rounds", "user",
                         planned <= target * (1 + 1e-6),
                         f"{declared['rounds']} rounds: {planned:.6g}, target {target:g}"))
    return out, {"claimed": claimed, "recomputed": {"rdp": fresh, "pld": None},
                 "independent_rdp": own, "delta": delta, "delta_accounted": at,
                 "source": "manifest.json" if stored is not None else "write-ahead log"}


def _survivors_check(check, declared: dict[str, Any], rows: list[dict]) -> Any:
    t, m, bad = _threshold(declared), declared["clients_per_round"], []
    share = declared["mu"] / t
    for r in rows:
        s = r.get("survivors")
        aggregated = bool(r.get("participants"))
        if s is None or r.get("survivor_threshold") != t:
            bad.append(f"round {r['round']}: survivors {s}, threshold {r.get('survivor_threshold')}")
        elif aggregated and not (t <= s <= m and len(r["participants"]) == s
                                 and math.isclose(r.get("dp_mu_summed", -1), share * s)):
            bad.append(f"round {r['round']}: s = {s}, t = {t}, m = {m}")
    return check(SURVIVORS_CHECK, "user", not bad,
                 "; ".join(bad[:5]) or f"t = {t}; {len(rows)} rounds recorded")


def audit_distributed(run, check) -> tuple[list, dict[str, Any]]:
    """Checks and the level's summary for a ``dp = distributed`` run (module docstring).
    ``run``: ``fedrec.simulations.audit.RunRecord``; ``check``: its ``Check`` class."""
    declared = run.manifest["privacy"]["user"]
    stored = (run.manifest.get("accounting") or {}).get("user")
    claim = (run.privacy or {}).get("user") or {}
    checks = [_mechanism_check(check, declared)]
    checks += _log_checks(check, declared, run.releases, run.rows, stored)
    n_events = (len(Ledger.from_dict(stored).history) if stored is not None
                else sum("dp_event" in e for e in run.releases or []))
    found, level = _epsilon_checks(check, declared, n_events, claim, stored)
    checks += found
    checks.append(_survivors_check(check, declared, run.rows))
    checks.append(check("rounds reported", "user", claim.get("rounds") == len(run.rows),
                        f"claimed {claim.get('rounds')}, run {len(run.rows)}"))
    return checks, level
