"""Audit of a statistics-release run (``fedrec simulate --pipeline popularity|knn|als``).

Recomputes the user-level ε claim three ways and checks each against the records:

1. **declared -> ledger**: every release the manifest declares (noise multiplier per
   release) is in the ledger as exactly that ``GaussianDpEvent``, once, and nothing else
   is (the ledger is written before each release's noise is drawn, so a crash can only
   leave an event without its release, never the reverse).
2. **ledger -> ε (dp-accounting)**: a fresh PLD and RDP accountant over the ledger
   under the declared relation gives the claimed ε (PLD) to 1e-6.
3. **independent arithmetic**: the declared multipliers compose into one Gaussian
   (1/z^2 = sum 1/z_k^2), whose exact ε at δ (Balle & Wang's closed form, not
   dp-accounting) must not exceed the claim and be within 1 % of it.

It trusts that the noise std the manifest declares is what the server added (the same
code path computes both: ``fedrec.server.releases``).

Distributed noise (``noise: distributed``, ``fedrec.server.distributed``): check 1 rebuilds each
release's ``SkellamEvent`` from the declared scale, dimension, clip and beta (the
rounding-inflated sensitivities recomputed by ``fedrec.shared.skellam``); check 2 uses the RDP
accountant (PLD has no Skellam); check 3 is ``fedrec.shared.skellam``'s own composition of the
declared releases (its closed-form RDP summed by order), plus the declared noise split
(shares of mu / t, t = ceil(min_survivors * n)) and a bit width in which the sum of all n
cannot wrap (noise mu n / t). A fourth check reads the survivors record (``privacy.json``
``distributed``, equal to the manifest's ``survivors``): every release summed s >= t
shares (s <= n), its noise ``mu s / t`` is recomputed here, and the ε of that noise
actually summed (own closed form) is at most the claim. A Flower-engine run (its shares
travel through SecAgg+, ``transport: secagg+``) has each release's recorded SecAgg+ setup
recomputed (threshold t, ranges Q, c, M). The distributed claim is strict: a fifth check
recomputes the range-failure probability p (a SecAgg+ device refusing a share beyond c;
0 in-process) and requires ``δ_acc + (1 + e^E) p <= δ`` with ε <= E; checks 2 and 3
convert at that δ_acc (``fedrec.shared.range_failure``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dp_accounting import dp_event as dpe

from fedrec.shared import privacy, skellam, stats
from fedrec.shared.ledger import Ledger

KIND = "statistics-release"
#: The claim (PLD) may sit above the exact curve by the PLD's pessimistic discretisation.
EXACT_TOLERANCE = 0.01
SURVIVORS_CHECK = "every release summed >= t shares; ε of the noise summed <= claim"
RANGE_CHECK = "range failure p recomputed; delta_acc + (1 + e^E) p <= delta, ε <= E"


def is_release_run(path: str | Path) -> bool:
    try:
        return json.loads((Path(path) / "manifest.json").read_text()).get("kind") == KIND
    except (OSError, json.JSONDecodeError):
        return False


def _check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "level": "user", "passed": bool(passed), "detail": detail}


def audit(path: str | Path) -> dict[str, Any]:
    """The audit result (same shape as ``fedrec.simulations.audit.audit_accounting``)."""
    path = Path(path)
    manifest = json.loads((path / "manifest.json").read_text())
    declared = manifest["privacy"]
    claim = json.loads((path / "privacy.json").read_text())["user"]
    ledger = Ledger.loads((path / "ledger.json").read_text())
    checks = [_declared_vs_ledger(declared, ledger),
              _check("manifest ledger equals ledger.json",
                     manifest.get("accounting", {}).get("user") == ledger.to_dict(),
                     "the manifest's accounting section is the server's ledger")]
    recomputed = {kind: ledger.epsilon(kind) for kind in privacy.ACCOUNTANTS}
    distributed = declared.get("noise") == "distributed"
    kind = "rdp" if distributed else "pld"
    private = bool(declared["secret_randomness"])
    claimed = claim["epsilon"]
    delta_acc = ledger.delta
    if distributed:
        secagg = declared.get("transport") == "secagg+" or manifest.get("engine") == "flower"
        range_check, delta_acc = _range_failure_check(declared, claim, secagg)
        checks.append(range_check)
        recomputed["rdp"] = Ledger(ledger.relation, delta_acc, ledger.history).epsilon("rdp")
    fresh = recomputed[kind]
    if private:
        checks.append(_check(f"claim = fresh {kind.upper()} over the ledger"
                             + (" at delta_acc" if distributed else ""),
                             fresh is not None and math.isclose(claimed, fresh, rel_tol=1e-6),
                             f"claimed {claimed:.6g}, recomputed {fresh}"))
        checks.append(_skellam_check(declared, claimed, delta_acc) if distributed
                      else _exact_check(declared, claimed))
    if distributed:
        checks.append(_survivors_check(declared, manifest, claim, claimed))
        if declared.get("transport") == "secagg+" or manifest.get("engine") == "flower":
            checks.append(_secagg_check(declared))
    if not private:
        checks.append(_check("not private is said", math.isinf(claimed),
                             "seeded or noiseless releases must claim ε = inf"))
    return {"run": str(path), "kind": KIND, "mode": f"{manifest['config']['pipeline']} releases",
            "rounds": len(ledger.history), "passed": all(c["passed"] for c in checks),
            "checks": checks, "warnings": [] if private else
            ["the releases are not private (no noise, or a test seed)"],
            "levels": {"user": {"claimed": claimed, "recomputed": recomputed,
                                "delta": ledger.delta}}}


def _declared_vs_ledger(declared: dict[str, Any], ledger: Ledger) -> dict[str, Any]:
    want = sorted(json.dumps(privacy.event_to_dict(_event(r)), sort_keys=True)
                  for r in declared["releases"].values())
    have = sorted(json.dumps(h[1], sort_keys=True) for h in ledger.history)
    ok = (want == have and ledger.relation == declared["relation"]
          and math.isclose(ledger.delta, declared["delta"]))
    return _check("declared releases = ledger events", ok,
                  f"{len(want)} declared, {len(have)} in the ledger ({ledger.relation})")


def _event(release: dict[str, Any]) -> dpe.DpEvent:
    """The event a declared release implies (Skellam: sensitivities recomputed)."""
    if release.get("mechanism") == "skellam":
        return skellam.release_event(release["mu"], release["scale"], release["clip"],
                                     release["dim"], release["beta"])
    z = release["noise_multiplier"]
    return dpe.GaussianDpEvent(z) if z > 0 else dpe.NonPrivateDpEvent()


def _range_failure_check(declared: dict[str, Any], claim: dict[str, Any],
                         secagg: bool) -> tuple[dict[str, Any], float]:
    """p recomputed here: with SecAgg+ a device refuses a share beyond c = 2^(bits-1);
    per release n x 2d exp(-x^2 / (2 (mu / t + x / 3))), x = c - floor(R), R = D2 / 2
    (Bernstein, union over coordinates and devices), summed over releases; in-process 0.
    Then δ_acc + (1 + e^E) p <= δ and the claimed ε <= E. Returns the check and δ_acc."""
    p, t = 0.0, _threshold(declared)
    for r in declared["releases"].values() if secagg else ():
        x = 2 ** (r["bits"] - 1) - math.floor(_event(r).l2_sensitivity / 2)
        tail = (math.log(2 * r["dim"]) - x * x / (2 * (r["mu"] / t + x / 3))) if x > 0 else 0
        p += r["devices"] * math.exp(min(0.0, tail))
    delta, delta_acc = declared["delta"], claim.get("delta_accounted", -1.0)
    bound, claimed = claim.get("epsilon_bound", -math.inf), claim["epsilon"]
    total = delta_acc + (1 + math.exp(bound)) * p if bound < 700 else math.inf
    recorded = claim.get("range_failure_probability", -1.0)
    ok = (0 < delta_acc <= delta and total <= delta * (1 + 1e-12)
          and (claimed <= bound or not declared["secret_randomness"])
          and (recorded == p or math.isclose(recorded, p, rel_tol=1e-9)))
    return _check(RANGE_CHECK, ok,
                  f"p = {p:.3g} ({'SecAgg+' if secagg else 'in-process: nothing clipped'}), "
                  f"recorded {recorded:.3g}; delta_acc {delta_acc:.6g} + (1 + e^E) p = "
                  f"{total:.6g} <= delta {delta:.6g}, E = {bound:.6g}"), \
        (delta_acc if 0 < delta_acc < 1 else delta)


def _skellam_check(declared: dict[str, Any], claimed: float,
                   delta_acc: float) -> dict[str, Any]:
    releases = list(declared["releases"].values())
    events = [_event(r) for r in releases]
    t = _threshold(declared)
    shares_ok = all(math.isclose(r["mu_per_device"] * r.get("threshold", -1), r["mu"])
                    and r["threshold"] == t and r["devices"] == declared["users"]
                    for r in releases)
    bits_ok = all(r["bits"] >= skellam.bits_needed(r["devices"], e.l2_sensitivity / 2,
                                                   r["mu"] * r["devices"] / t, r["dim"])
                  for r, e in zip(releases, events))
    own = skellam.epsilon(events, delta_acc, privacy.RDP_ORDERS)
    ok = shares_ok and bits_ok and math.isclose(own, claimed, rel_tol=1e-6)
    return _check("Skellam ε from the declared releases (fedrec.shared.skellam) = claim", ok,
                  f"closed-form RDP composed {own:.6g}, claimed {claimed:.6g}; noise shares "
                  f"{'are mu / t' if shares_ok else 'ARE NOT mu / t'}; bit width "
                  f"{'cannot wrap' if bits_ok else 'TOO SMALL'}")


def _threshold(declared: dict[str, Any]) -> int:
    """t = ceil(min_survivors * n), recomputed (as ``ReleaseConfig.survivor_threshold``)."""
    n = declared["users"]
    return max(1, math.ceil(round(declared.get("min_survivors", 1.0) * n, 9)))


def _survivors_check(declared: dict[str, Any], manifest: dict[str, Any],
                     claim: dict[str, Any], claimed: float) -> dict[str, Any]:
    """Every release summed t <= s <= n shares; the ε of the noise actually summed
    (mu s / t, recomputed here) is at most the claim."""
    records = claim.get("distributed", {}).get("releases")
    releases = declared["releases"]
    if not records or set(records) != set(releases) or manifest.get("survivors") != records:
        return _check(SURVIVORS_CHECK, False,
                      "survivors not recorded for every release, or privacy.json and the "
                      "manifest's survivors section differ")
    t, short, actual = _threshold(declared), [], []
    for name, r in releases.items():
        rec = records[name]
        s = rec["survivors"]
        if not (rec["threshold"] == t <= s <= rec["devices"] == r["devices"]
                and rec["mu"] == r["mu"] and math.isclose(rec["mu_actual"], r["mu"] * s / t)):
            short.append(f"{name} (s={s}, t={rec['threshold']}, n={rec['devices']})")
        actual.append(_event({**r, "mu": r["mu"] * s / t}))
    own = skellam.epsilon(actual, declared["delta"], privacy.RDP_ORDERS)
    ok = not short and own <= claimed * (1 + 1e-9)
    return _check(SURVIVORS_CHECK, ok,
                  f"t = {t}; {'bad: ' + ', '.join(short) if short else 'all releases s >= t'}; "
                  f"ε with mu s / t {own:.6g}, claimed {claimed:.6g}")


def _secagg_check(declared: dict[str, Any]) -> dict[str, Any]:
    """Every release's recorded SecAgg+ setup, recomputed here: reconstruction threshold
    = t, a key shared with all n devices, weight 1, ``Q = 2^bits`` (<= 2^30: int32),
    ``c = Q / 2`` (quantizer exactly 1), ``M`` the smallest power of two above
    ``n (Q + 1)``, ``n 2^bits < 2^50`` (the sum is recovered exactly), and masks drawn
    by the full-seed generator (``fedrec.shared.secagg_prg``, not Flower's 32-bit one)."""
    t, bad = _threshold(declared), []
    for name, r in declared["releases"].items():
        n, q = r["devices"], 2 ** r["bits"]
        m = 1
        while m <= n * (q + 1):
            m *= 2
        want = {"threshold": t, "num_shares": n, "quantization_range": q,
                "clipping_range": q // 2, "modulus_range": m, "max_weight": 1,
                "mask_generator": "shake-256"}
        if r.get("secagg") != want or r["bits"] > 30 or n * q >= 2 ** 50:
            bad.append(name)
    return _check("SecAgg+ setup: threshold = t, Q = 2^bits, c = Q/2, M > n (Q + 1)", not bad,
                  f"t = {t}; " + ("bad: " + ", ".join(bad) if bad else
                                  "every release's SecAgg+ ranges carry its shares exactly"))


def _exact_check(declared: dict[str, Any], claimed: float) -> dict[str, Any]:
    multipliers = [r["noise_multiplier"] for r in declared["releases"].values()]
    std_ok = all(math.isclose(r["noise_std"], declared["sensitivity"] * r["noise_multiplier"])
                 for r in declared["releases"].values())
    exact = stats.gaussian_epsilon(stats.composed_multiplier(multipliers), declared["delta"])
    ok = std_ok and exact <= claimed * (1 + 1e-9) and claimed <= exact * (1 + EXACT_TOLERANCE)
    return _check("exact Gaussian ε <= claim (within 1 %)", ok,
                  f"exact {exact:.6g} from std / sensitivity {declared['sensitivity']}, "
                  f"claimed {claimed:.6g}")
