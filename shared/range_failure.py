"""A strict (ε, δ) claim for a run that can leave the accounted mechanism with
probability p (issue #22: SecAgg+'s range [-c, c]).

Why: with distributed noise under SecAgg+, a device's noisy integer vector can (with a
tiny, data-independent probability bound p) leave Flower's range: DP-FedAvg's device
clamps it, a statistics-release device refuses and drops out. Either way the run is the
accounted mechanism except on an event of probability <= p, for every dataset.

Derivation (total variation): couple the run M with the accounted mechanism M' so that
they differ only on that event; then for every set S and datasets D, D',
``P[M(D) in S] <= P[M'(D) in S] + p <= e^ε P[M'(D') in S] + δ_acc + p
<= e^ε P[M(D') in S] + δ_acc + (1 + e^ε) p``. So if M' is (ε, δ_acc)-DP, M is
(ε, δ_acc + (1 + e^ε) p)-DP. Choosing ``δ_acc = δ - (1 + e^E) p`` for a bound E >= ε makes
the sum <= δ: the claim (ε at δ_acc, for the stated δ) is strict.

E: the caller's (``target ε`` with a small margin), checked after the fact (ε at δ_acc
must be <= E); otherwise ``ε(δ / 2)``, which is a bound whenever ``(1 + e^E) p <= δ / 2``
(then δ_acc >= δ / 2 and ε is non-increasing in δ). p so large that no δ_acc > 0 works
is refused with one line (:class:`RangeFailureTooLikely`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from fedrec.shared.errors import FedrecError

#: exp() overflows above this; (1 + e^E) p is then treated as infinite.
_MAX_EXP = 700.0
#: E = target ε x (1 + TARGET_MARGIN): covers a ledger's check ``ε <= target (1 + 1e-9)``.
TARGET_MARGIN = 1e-6


def target_bound(target_epsilon: float | None) -> float | None:
    """E from a run's target ε (None without a finite, positive target)."""
    if not target_epsilon or not math.isfinite(target_epsilon):
        return None
    return target_epsilon * (1 + TARGET_MARGIN)


class RangeFailureTooLikely(FedrecError):
    """p is too large for any accounted δ > 0 below the stated δ."""


@dataclass(frozen=True)
class StrictClaim:
    """(ε, δ) with the range-failure term folded in.

    Attributes:
        epsilon: ε of the accounted events at ``delta_accounted`` (the claim).
        delta: the stated δ; ``delta_accounted + (1 + e^epsilon_bound) p <= delta``.
        delta_accounted: δ_acc, the δ at which the accountant converted.
        range_failure_probability: p, probability the run leaves the accounted mechanism.
        epsilon_bound: E >= epsilon, the bound δ_acc was sized with.
    """

    epsilon: float
    delta: float
    delta_accounted: float
    range_failure_probability: float
    epsilon_bound: float

    def as_record(self) -> dict[str, float]:
        return {"epsilon": self.epsilon, "delta": self.delta,
                "delta_accounted": self.delta_accounted,
                "range_failure_probability": self.range_failure_probability,
                "epsilon_bound": self.epsilon_bound}


def accounted_delta(delta: float, p: float, epsilon_bound: float) -> float:
    """δ_acc = δ - (1 + e^E) p (<= 0 when p is too large; -inf on overflow)."""
    if p == 0:
        return delta
    if epsilon_bound > _MAX_EXP:
        return -math.inf
    return delta - (1.0 + math.exp(epsilon_bound)) * p


def strict_claim(epsilon_at: Callable[[float], float], delta: float, p: float,
                 epsilon_bound: float | None = None) -> StrictClaim:
    """The claim at the stated ``delta`` for a run within total variation ``p`` of the
    mechanism whose ε at a given δ is ``epsilon_at(δ)`` (non-increasing in δ).

    Tries ``epsilon_bound`` (if given), then ``epsilon_at(delta / 2)``, as E; keeps the
    first with δ_acc > 0 and ε(δ_acc) <= E. Refuses (:class:`RangeFailureTooLikely`)
    when neither works. ``p = 0``: ε at δ itself (E = ε)."""
    if not 0 < delta < 1 or not 0 <= p <= 1:
        raise ValueError(f"need delta in (0, 1) and p in [0, 1], got {delta}, {p}")
    if p == 0:
        eps = epsilon_at(delta)
        return StrictClaim(eps, delta, delta, 0.0, eps)
    bounds = [] if epsilon_bound is None else [epsilon_bound]
    bounds.append(epsilon_at(delta / 2))
    for bound in bounds:
        delta_acc = accounted_delta(delta, p, bound)
        if delta_acc <= 0:
            continue
        eps = epsilon_at(delta_acc)
        if eps <= bound:
            return StrictClaim(eps, delta, delta_acc, p, bound)
    raise RangeFailureTooLikely(
        f"range-failure probability {p:.3g} leaves no accounted delta > 0 below the stated "
        f"delta {delta:.3g}: raise the bit width (--skellam-bits) or lower --skellam-scale")
