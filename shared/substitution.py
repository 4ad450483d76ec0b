"""RDP under replace-one (substitution) for Poisson-sampled Gaussians.

Why: example-level DP-SGD samples Poisson batches at q = B / n, and the device's n is
public (its reply and its DpEvent carry it), so the relation that holds is substitution
of one interaction (datasets of equal size), not add-or-remove-one. dp-accounting 0.4.3
accounts ``PoissonSampledDpEvent`` only under ADD_OR_REMOVE_ONE (its RDP and PLD
accountants both refuse it under REPLACE_ONE), so this module composes a sound bound
around dp-accounting's own add-or-remove RDP; it computes no RDP itself.

A Poisson event with q = 1 is a plain Gaussian on the whole data set: replacing one
example moves the clipped sum by at most twice the clip, so it is accounted exactly as
a Gaussian with half the noise multiplier under REPLACE_ONE.

For q < 1 the bound: a substitution D = S + {x} -> D' = S + {x'} passes through S (one removal,
one addition). Mironov's weak triangle inequality for Rényi divergence (Rényi DP, CSF
2017, Proposition 11 with p = q = 2) gives, for every order α > 1,

    D_α(M(D) || M(D')) <= (α - 1/2) / (α - 1) * D_2α(M(D) || M(S)) + D_(2α-1)(M(S) || M(D'))

and dp-accounting's add-or-remove RDP at orders 2α and 2α - 1 bounds both terms (it
holds for removal and addition alike). The bound is linear in the per-step RDP, so
applying it to the composed transcript equals applying it step by step: other events
(fixed-size sampling without replacement, plain Gaussians) that dp-accounting accounts
under REPLACE_ONE natively add their own RDP at α, and everything composes.

Units: the noise multiplier of a ``PoissonSampledDpEvent`` stays what the training code
emits, the noise std over the clip of *one* example (the add-or-remove sensitivity);
native REPLACE_ONE events keep theirs (std over the replace-one sensitivity).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from dp_accounting import dp_event as dpe
from dp_accounting import privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant as rdp

from fedrec.shared import skellam

NeighborRel = privacy_accountant.NeighboringRelation
CompositionErrorDetails = privacy_accountant.PrivacyAccountant.CompositionErrorDetails


def weak_triangle_rdp(orders: Sequence[float], removal_at_2a: Sequence[float],
                      addition_at_2a_minus_1: Sequence[float]) -> np.ndarray:
    """Replace-one RDP at ``orders`` α from add-or-remove RDP at 2α and 2α - 1.

    Pure arithmetic of Mironov's Proposition 11 (p = q = 2): ε_sub(α) =
    (α - 1/2) / (α - 1) * ε(2α) + ε(2α - 1). Orders must be > 1; RDP in nats.
    """
    a = np.asarray(orders, dtype=np.float64)
    if np.any(a <= 1):
        raise ValueError("weak triangle: every RDP order must be > 1")
    return ((a - 0.5) / (a - 1.0) * np.asarray(removal_at_2a, dtype=np.float64)
            + np.asarray(addition_at_2a_minus_1, dtype=np.float64))


class ReplaceOneRdpAccountant(privacy_accountant.PrivacyAccountant):
    """RDP accountant for REPLACE_ONE that also takes Poisson-sampled Gaussians.

    Every ``PoissonSampledDpEvent`` is composed into two dp-accounting add-or-remove
    RDP accountants (orders 2α and 2α - 1) and converted by :func:`weak_triangle_rdp`;
    every other event goes to dp-accounting's REPLACE_ONE RDP accountant at α. ε comes
    from dp-accounting's ``compute_epsilon`` over the sum.
    """

    def __init__(self, orders: Sequence[float]) -> None:
        super().__init__(NeighborRel.REPLACE_ONE)
        self._orders = np.asarray(orders, dtype=np.float64)
        if np.any(self._orders <= 1):
            raise ValueError("ReplaceOneRdpAccountant needs RDP orders > 1")
        self._native = rdp.RdpAccountant(list(self._orders), NeighborRel.REPLACE_ONE)
        self._removal = rdp.RdpAccountant(list(2 * self._orders), NeighborRel.ADD_OR_REMOVE_ONE)
        self._addition = rdp.RdpAccountant(list(2 * self._orders - 1),
                                           NeighborRel.ADD_OR_REMOVE_ONE)
        self._skellam = np.zeros(len(self._orders))

    def _maybe_compose(self, event: dpe.DpEvent, count: int,
                       do_compose: bool) -> CompositionErrorDetails | None:
        if isinstance(event, dpe.SelfComposedDpEvent):
            return self._maybe_compose(event.event, event.count * count, do_compose)
        if isinstance(event, dpe.ComposedDpEvent):
            for part in event.events:
                error = self._maybe_compose(part, count, do_compose)
                if error is not None:
                    return error
            return None
        if (isinstance(event, dpe.PoissonSampledDpEvent) and event.sampling_probability == 1
                and isinstance(event.event, dpe.GaussianDpEvent)):
            # every example in every batch: a plain Gaussian whose replace-one
            # sensitivity is twice one example's clip, accounted exactly
            return self._maybe_compose(
                dpe.GaussianDpEvent(event.event.noise_multiplier / 2), count, do_compose)
        if isinstance(event, skellam.SkellamEvent):
            # its RDP under the relation its sensitivities were stated for (replace-one)
            if do_compose:
                self._skellam += count * skellam.rdp(event, self._orders)
            return None
        if isinstance(event, dpe.PoissonSampledDpEvent):
            if not self._removal.supports(event):
                return CompositionErrorDetails(
                    invalid_event=event,
                    error_message="PoissonSampledDpEvent must wrap Gaussian noise")
            if do_compose:
                self._removal.compose(event, count)
                self._addition.compose(event, count)
            return None
        if not self._native.supports(event):
            return CompositionErrorDetails(
                invalid_event=event, error_message="not supported under REPLACE_ONE")
        if do_compose:
            self._native.compose(event, count)
        return None

    @property
    def orders(self) -> np.ndarray:
        return np.copy(self._orders)

    @property
    def rdp(self) -> np.ndarray:
        """Replace-one RDP at each order (nats): native part plus weak-triangle part."""
        return self._native.rdp + self._skellam + weak_triangle_rdp(
            self._orders, self._removal.rdp, self._addition.rdp)

    def get_epsilon(self, target_delta: float) -> float:
        return float(rdp.compute_epsilon(self._orders, self.rdp, target_delta)[0])

    def get_delta(self, target_epsilon: float) -> float:
        return float(rdp.compute_delta(self._orders, self.rdp, target_epsilon)[0])
