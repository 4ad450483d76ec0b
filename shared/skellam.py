"""The (distributed) Skellam mechanism: quantizer, integer noise, and its RDP accounting.

Why: central Gaussian noise protects a release against whoever *sees the release*; the
server that adds it sees the exact sum. With distributed noise each device adds its own
share of *integer* noise to its *integer* contribution, so only a noisy sum is ever
formed. Skellam noise, ``Sk(mu) = Poisson(mu/2) - Poisson(mu/2)`` (mean 0, variance
``mu``), is closed under summation: n devices adding ``Sk(mu / n)`` each give exactly
``Sk(mu)`` on the sum (Agarwal, Kairouz, Liu, "The Skellam Mechanism for Differentially
Private Federated Learning", NeurIPS 2021, arXiv:2110.04995).

Pipeline of one device (all units are *integer units*: the real value times ``scale``):

1. scale its vector ``x`` (L2 norm <= ``clip``) by ``scale`` and clip it to ``scale*clip``;
2. **conditional randomized rounding** (Kairouz, Liu, Steinke, ICML 2021, "The Distributed
   Discrete Gaussian Mechanism", Section 4.1 / Theorem 1 of arXiv:2102.06387): round every
   coordinate up or down at random with the probabilities that keep its mean, and redraw
   until the rounded vector's L2 norm is at most :func:`rounded_l2_norm_bound`; the bound
   then holds with certainty (``beta`` only sets how often a redraw happens, at most
   ``beta`` of the time);
3. add ``Sk(mu / n)`` per coordinate.

**Accounting.** RDP of the Skellam mechanism on an integer query whose neighbouring values
differ by a shift of L1 norm <= ``Delta1`` and L2 norm <= ``Delta2``, at integer order
alpha > 1: the multi-dimensional Skellam bound of Agarwal, Kairouz & Liu (NeurIPS 2021,
arXiv:2110.04995), exactly as its authors' reference implementation computes it
(google-research/federated ``distributed_dp/accounting_utils.py``, ``_skellam_rdp``, which
cites it as Corollary 4.1; the theorem number in the paper was not re-checked here)::

    eps(alpha) <= alpha Delta2^2 / (2 mu)
                  + min( ((2 alpha - 1) Delta2^2 + 6 Delta1) / (4 mu^2),  3 Delta1 / (2 mu) )

The first term is the Gaussian's RDP with variance ``sigma^2 = mu`` (noise multiplier
``sqrt(mu) / Delta2``); the second is the price of discreteness, O(1/mu^2) or O(1/mu),
so as mu grows the Skellam RDP tends to the Gaussian's ``alpha Delta2^2 / (2 mu)``.
Rényi divergence is non-decreasing in alpha, so a non-integer order is bounded by the
formula at ``ceil(alpha)`` (:func:`skellam_rdp`).

Sensitivities after rounding: a device's rounded vector has L2 norm <= ``R =
rounded_l2_norm_bound(scale * clip, beta, dim)`` and, being an integer vector, L1 norm
<= ``R * min(sqrt(dim), R)`` (:func:`rounded_l1_norm_bound`). Under REPLACE_ONE (swap one
device's contribution) the sum moves by the difference of two such vectors:
``Delta2 = 2 R``, ``Delta1 = 2 R min(sqrt(dim), R)`` (:func:`replace_one_sensitivities`).

**Modular sum.** Devices' integers are summed modulo ``2^bits`` (what SecAgg+ computes);
reducing modulo ``2^bits`` is post-processing of the noisy sum, so it adds no privacy
term; it only spoils *utility* when the sum leaves ``[-2^(bits-1), 2^(bits-1))``.
:func:`bits_needed` sizes ``bits`` so that cannot happen except with probability
``<= 2^-40``: ``|sum| <= n R + t`` with ``t`` from Bernstein's inequality for the Skellam
tail (a difference of Poisson variables is a limit of sums of independent {-1, 0, 1}
steps, variance mu): ``P(|Sk(mu)| >= t) <= 2 exp(-t^2 / (2 (mu + t/3)))``, union over
coordinates.

dp-accounting 0.4.3 has no Skellam (nor discrete Gaussian) event, so :class:`SkellamEvent`
is a ``DpEvent`` subclass defined here, and :func:`epsilon` sums its RDP per order and
converts with dp-accounting's ``rdp_privacy_accountant.compute_epsilon`` (the same
conversion its RdpAccountant uses). ``fedrec.shared.substitution.ReplaceOneRdpAccountant``
composes these events with dp-accounting's own by orders.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import attr
import numpy as np
from dp_accounting import dp_event as dpe
from dp_accounting.rdp import rdp_privacy_accountant as rdp_acc

#: Conditional rounding's beta: a redraw happens with probability <= beta (the Google
#: reference's default, exp(-1/2)).
BETA = math.exp(-0.5)
#: The modular sum may wrap with probability at most 2^WRAP_LOG2 (utility only).
WRAP_LOG2 = -40
#: Integer orders for the Skellam RDP (the closed form holds at integer alpha > 1).
ORDERS = tuple(range(2, 129)) + (160, 192, 256, 384, 512)
_MAX_REDRAWS = 10_000
#: SecAgg+ transport: one device's noisy vector leaves Flower's range [-c, c] with
#: probability at most 2^RANGE_LOG2 per round (Bernstein, union over coordinates).
RANGE_LOG2 = -64


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SkellamEvent(dpe.DpEvent):
    """One Skellam release: integer noise ``Sk(mu)`` on an integer sum whose
    neighbouring values (under the ledger's relation) differ by a shift of L1 norm
    <= ``l1_sensitivity`` and L2 norm <= ``l2_sensitivity``. All in integer units."""

    mu: float
    l1_sensitivity: float
    l2_sensitivity: float

    def __attrs_post_init__(self) -> None:
        if not (self.mu > 0 and self.l2_sensitivity > 0 and self.l1_sensitivity > 0):
            raise ValueError(f"Skellam event needs mu, l1 and l2 > 0, got {self}")
        if not all(map(math.isfinite, (self.mu, self.l1_sensitivity, self.l2_sensitivity))):
            raise ValueError(f"Skellam event needs finite parameters, got {self}")

    def to_dict(self) -> dict[str, Any]:
        """As ``fedrec.shared.privacy.event_to_dict`` writes any DpEvent (ledgers store this)."""
        return {"module_name": type(self).__module__, "class_name": type(self).__name__,
                "mu": float(self.mu), "l1_sensitivity": float(self.l1_sensitivity),
                "l2_sensitivity": float(self.l2_sensitivity)}


# ----- accounting (pure) -----

def skellam_rdp(alpha: float, l1: float, l2: float, mu: float) -> float:
    """RDP (nats) of Skellam noise of variance ``mu`` for a shift of L1 norm ``l1`` and
    L2 norm ``l2`` at order ``alpha`` > 1 (the bound above; ``ceil(alpha)`` when not an
    integer, valid because RDP is non-decreasing in the order)."""
    if alpha <= 1:
        raise ValueError(f"RDP order must be > 1, got {alpha}")
    a = math.ceil(alpha - 1e-12)
    gaussian = a * l2 ** 2 / (2.0 * mu)
    return gaussian + min(((2 * a - 1) * l2 ** 2 + 6 * l1) / (4.0 * mu ** 2), 3 * l1 / (2.0 * mu))


def rdp(event: SkellamEvent, orders: Sequence[float] = ORDERS) -> np.ndarray:
    """The event's RDP at every order (nats)."""
    return np.array([skellam_rdp(a, event.l1_sensitivity, event.l2_sensitivity, event.mu)
                     for a in orders], dtype=np.float64)


def epsilon(events: Iterable[SkellamEvent], delta: float,
            orders: Sequence[float] = ORDERS) -> float:
    """ε at ``delta`` of composing ``events`` (RDP summed per order, converted by
    dp-accounting's ``compute_epsilon``)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    total = np.zeros(len(orders))
    for event in events:
        total += rdp(event, orders)
    return float(rdp_acc.compute_epsilon(np.asarray(orders, np.float64), total, delta)[0])


def rounded_l2_norm_bound(l2: float, beta: float, dim: int) -> float:
    """L2 norm bound of a vector of L2 norm <= ``l2`` (already scaled) after conditional
    randomized rounding to integers (arXiv:2102.06387, Theorem 1): ``l2 + sqrt(dim)``
    for beta = 0 (every coordinate moves by < 1), else the smaller of that and
    ``sqrt(l2^2 + dim/4 + sqrt(2 ln(1/beta)) (l2 + sqrt(dim)/2))``."""
    if dim < 1 or l2 <= 0 or not 0 <= beta < 1:
        raise ValueError(f"need dim >= 1, l2 > 0 and beta in [0, 1), got {dim}, {l2}, {beta}")
    bound_1 = l2 + math.sqrt(dim)
    if beta == 0:
        return bound_1
    squared = l2 ** 2 + 0.25 * dim + math.sqrt(2.0 * math.log(1.0 / beta)) * (l2 + 0.5 * math.sqrt(dim))
    return min(bound_1, math.sqrt(squared))


def rounded_l1_norm_bound(rounded_l2: float, dim: int) -> float:
    """L1 bound of an integer vector of L2 norm <= ``rounded_l2`` in ``dim`` coordinates:
    ``L1 <= sqrt(dim) L2`` always, and ``L1 <= L2^2`` for integers (|x| <= x^2)."""
    return rounded_l2 * min(math.sqrt(dim), rounded_l2)


def replace_one_sensitivities(scale: float, clip: float, dim: int,
                              beta: float = BETA) -> tuple[float, float]:
    """(L1, L2) sensitivity in integer units of a sum of rounded contributions under
    REPLACE_ONE: twice one device's rounded bounds."""
    r = rounded_l2_norm_bound(scale * clip, beta, dim)
    return 2.0 * rounded_l1_norm_bound(r, dim), 2.0 * r


def release_event(mu: float, scale: float, clip: float, dim: int,
                  beta: float = BETA) -> SkellamEvent:
    """The event of one Skellam release of a ``dim``-coordinate sum (REPLACE_ONE)."""
    l1, l2 = replace_one_sensitivities(scale, clip, dim, beta)
    return SkellamEvent(mu=float(mu), l1_sensitivity=l1, l2_sensitivity=l2)


def calibrate(target_epsilon: float, delta: float, sensitivities: Sequence[float],
              shares: Sequence[float], make_events) -> float:
    """Smallest Gaussian-equivalent multiplier z (bisection, to 1e-4 relative) whose
    events meet ``target_epsilon``: release k gets ``mu_k = (Delta2_k z / sqrt(f_k))^2``
    (``sensitivities`` Delta2_k in integer units, ``shares`` f_k of the precision 1/z^2,
    as the central split); ``make_events(mus)`` builds the releases' events."""
    def eps(z: float) -> float:
        mus = [(d * z) ** 2 / f for d, f in zip(sensitivities, shares)]
        return epsilon(make_events(mus), delta)

    lo, hi = 1e-3, 1.0
    while eps(hi) > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            raise ValueError(f"no Skellam noise meets ε = {target_epsilon}")
    while hi / lo > 1 + 1e-4:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if eps(mid) > target_epsilon else (lo, mid)
    return hi


# ----- the modular sum -----

def noise_tail(mu: float, dim: int, log2_failure: float = WRAP_LOG2) -> float:
    """t with ``P(max over dim coordinates |Sk(mu)| >= t) <= 2^log2_failure`` (Bernstein:
    ``2 dim exp(-t^2 / (2 (mu + t/3)))``; the positive root of that quadratic)."""
    big_l = math.log(2.0 * dim) - log2_failure * math.log(2.0)
    return big_l / 3.0 + math.sqrt(big_l ** 2 / 9.0 + 2.0 * big_l * mu)


def bits_needed(n_devices: int, rounded_l2: float, mu: float, dim: int,
                log2_failure: float = WRAP_LOG2) -> int:
    """Bits per coordinate so that the modular sum of ``n_devices`` rounded
    contributions (each coordinate |x| <= ``rounded_l2``) plus ``Sk(mu)`` cannot wrap
    except with probability 2^log2_failure: two's complement of ``n R + t``."""
    bound = n_devices * math.floor(rounded_l2) + math.ceil(noise_tail(mu, dim, log2_failure))
    return int(math.ceil(math.log2(2 * bound + 2)))


def wrap(values: np.ndarray, bits: int) -> np.ndarray:
    """``values`` modulo ``2^bits`` as int64 in ``[0, 2^bits)`` (what a device uploads)."""
    return np.mod(np.asarray(values, np.int64), np.int64(1) << bits)


def unwrap(values: np.ndarray, bits: int) -> np.ndarray:
    """Centered representative in ``[-2^(bits-1), 2^(bits-1))`` of a modular sum."""
    modulus = np.int64(1) << bits
    values = np.mod(np.asarray(values, np.int64), modulus)
    return np.where(values >= modulus // 2, values - modulus, values)


#: Flower's SecAgg+ quantizes to int32: ``Q = 2^bits`` must fit, so bits <= 30.
SECAGG_MAX_BITS = 30
#: The server's sum is recovered exactly from Flower's float64 average while
#: ``n 2^bits < 2^SECAGG_EXACT_LOG2`` (|sum| <= n c, relative error of two roundings).
SECAGG_EXACT_LOG2 = 50


def secagg_ranges(bits: int, n: int) -> tuple[int, int, int]:
    """Flower SecAgg+ ranges ``(Q, c, M)`` that carry ``n`` devices' centered integer
    shares (|x| <= c) of a ``bits``-wide modular sum without any rounding or wrap.

    Flower maps ``x`` to ``(x + c) Q / (2c)`` with stochastic rounding: with ``Q = 2^bits``
    and ``c = Q / 2`` the quantizer is exactly 1, so an integer ``x`` passes unrounded
    (``ceil(x + c) - (x + c) = 0``) to an integer in ``[0, Q]``. Flower masks each
    coordinate and the weight factor (``s Q`` summed) modulo ``M``: the smallest power
    of two with ``M > n (Q + 1)`` holds both sums of up to n devices. Refuses (one line,
    ``ValueError``) ``bits > 30`` (int32) and ``n 2^bits >= 2^50`` (not exact)."""
    if not 2 <= bits <= SECAGG_MAX_BITS:
        raise ValueError(f"SecAgg+ carries at most {SECAGG_MAX_BITS} bits per coordinate "
                         f"(Flower quantizes to int32), the sum needs {bits}")
    if n < 1 or n * 2 ** bits >= 2 ** SECAGG_EXACT_LOG2:
        raise ValueError(f"SecAgg+ cannot return the sum of {n} devices at {bits} bits "
                         f"exactly (n 2^bits must be < 2^{SECAGG_EXACT_LOG2})")
    q = 1 << bits
    return q, q // 2, 1 << (n * (q + 1)).bit_length()


# ----- what a device runs -----

def quantize(x: np.ndarray, scale: float, clip: float, rng: np.random.Generator,
             beta: float = BETA) -> np.ndarray:
    """Scale, clip to L2 ``scale * clip``, and conditionally round ``x`` to int64.

    Unbiased per coordinate up to the (rare) redraws; the result's L2 norm is always
    <= :func:`rounded_l2_norm_bound` (redrawn until it is).
    """
    y = np.asarray(x, np.float64).ravel() * scale
    norm, limit = float(np.linalg.norm(y)), scale * clip
    if norm > limit:
        y = y * (limit / norm)
    bound = rounded_l2_norm_bound(limit, beta, max(1, y.size))
    floor = np.floor(y)
    frac = y - floor
    for _ in range(_MAX_REDRAWS):
        out = (floor + (rng.random(y.size) < frac)).astype(np.int64)
        if float(np.linalg.norm(out)) <= bound:
            return out
    raise RuntimeError("conditional rounding: no draw within the norm bound")


def noise_share(size: int, mu: float, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws of ``Sk(mu)`` (int64): a device's share when ``mu = mu_total / n``."""
    if mu <= 0:
        raise ValueError(f"Skellam variance must be > 0, got {mu}")
    return rng.poisson(mu / 2.0, size) - rng.poisson(mu / 2.0, size)


# ----- SecAgg+ as DP-FedAvg's transport (dp = distributed; ranges: secagg_ranges) -----

def to_secagg(x: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    """A device's noisy integer vector as the floats SecAgg+ quantizes exactly at
    :func:`secagg_ranges` ``(bits, .)``, and the number of coordinates clamped to
    [-c, c] (what Flower's own clip would do; 0 except with probability
    2^RANGE_LOG2 when ``bits`` is :func:`device_bits`)."""
    c = 1 << (bits - 1)
    x = np.asarray(x, np.int64)
    return np.clip(x, -c, c).astype(np.float64), int(np.count_nonzero(np.abs(x) > c))


def share_exceed_probability(c: int, rounded_l2: float, mu_share: float, dim: int) -> float:
    """Upper bound on P(some coordinate of one device's share, its rounded vector (each
    coordinate ``|x| <= floor(rounded_l2)``) plus ``Sk(mu_share)``, is beyond ``c`` in
    absolute value): the noise must exceed ``x = c - floor(rounded_l2)``; Bernstein's
    tail ``2 exp(-x^2 / (2 (mu_share + x/3)))``, union over the ``dim`` coordinates,
    capped at 1 (1 when x <= 0). Below ~1e-308 it is 0.0 in float64."""
    x = c - math.floor(rounded_l2)
    if x <= 0:
        return 1.0
    log_p = math.log(2.0 * dim) - x * x / (2.0 * (mu_share + x / 3.0))
    return math.exp(min(0.0, log_p))


def device_bits(rounded_l2: float, mu_share: float, dim: int,
                log2_failure: float = RANGE_LOG2) -> int:
    """Bits b such that one device's rounded vector (L2 <= ``rounded_l2``) plus its
    share ``Sk(mu_share)`` lies in [-2^(b-1), 2^(b-1)] except with probability
    ``2^log2_failure`` (:func:`bits_needed` for one device)."""
    return bits_needed(1, rounded_l2, mu_share, dim, log2_failure)
