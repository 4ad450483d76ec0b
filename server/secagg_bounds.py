"""What SecAgg+'s integer arithmetic does to the sum and to its sensitivity (pure math).

Flower 1.23's SecAgg+ (``flwr.common.secure_aggregation.quantization`` and
``secaggplus_mod``), as fedrec drives it (``max_weight`` = 1, every device weighs 1):

* a device clips each weight to ±R (``clipping_range``), maps [-R, R] onto [0, Q]
  (``quantization_range`` Q, Flower's default 2^22) with ``a = (x + R) * Q / (2R)`` in
  float64, and rounds stochastically to ``k = ceil(a)`` or ``ceil(a) - 1``; it prepends
  its weight factor ``round(1 * Q) = Q``;
* the server unmasks the sum of the survivors' vectors **modulo M** (``modulus_range``,
  2^32) and dequantizes ``sum * 2R / Q - n R``, then divides by the summed factor / Q.

Wrap: one device contributes at most ``Q + 1`` per coordinate (``ceil`` of a float64
that rounding may push a hair above Q), the factor exactly Q. The sum of n survivors
is therefore at most ``n (Q + 1)``; it is exact iff that is < M. Otherwise a coordinate
(and the factor itself, at n = 1024 it is 2^32 = 0 mod M) can wrap, moving the average
by about ``M * 2R / Q / n`` (16,384 / n with R = 8): thousands of noise stds. R does not
enter the wrap bound (every device value is mapped into [0, Q] whatever R is); it sets
the rounding step ``s = 2R / Q``.

Rounding: a dequantized weight is ``x + e`` with ``|e| < s`` per coordinate (stochastic
rounding moves by less than one level), plus float64 arithmetic error far below
``2^-20 s``. Whatever the rounding's random draws, fixing them (the same draws on both
neighbouring datasets) leaves a deterministic map whose output is within
``rho = sqrt(d) * s * (1 + 2^-20)`` in L2 of its input, d the number of weights. Swapping
one device's clipped update (norm <= C) for another's moves the sum by at most
``2 C + 2 rho``: the accounting uses the clip ``C + rho`` (``privacy.user_level_event``'s
``rounding_l2``). The Gaussian mechanism's RDP bound holds for each fixed draw, and a
mixture over draws with the same distribution on both sides cannot do worse (Rényi
divergence is jointly quasi-convex).
"""

from __future__ import annotations

import math

from fedrec.shared.errors import ConfigError

#: Flower's ``SecAggPlusWorkflow`` defaults (checked against Flower in the tests).
FLOWER_QUANTIZATION_RANGE = 2 ** 22
FLOWER_MODULUS_RANGE = 2 ** 32
#: Relative margin on one rounding level for float64 arithmetic in quantize/dequantize.
FLOAT64_MARGIN = 2.0 ** -20


def device_max(quantization_range: int) -> int:
    """Largest integer one device adds to one coordinate of the sum (``Q + 1``)."""
    return quantization_range + 1


def worst_case_sum(clients: int, quantization_range: int) -> int:
    """Largest value a coordinate of the unmasked sum can take before the modulus, in
    quantized units: ``clients * (Q + 1)`` (the weight factor adds only ``clients * Q``)."""
    if clients < 1 or quantization_range < 1:
        raise ValueError(f"need clients >= 1 and Q >= 1, got {clients}, {quantization_range}")
    return clients * device_max(quantization_range)


def max_clients(quantization_range: int, modulus_range: int = FLOWER_MODULUS_RANGE) -> int:
    """Most survivors whose sum cannot wrap: the largest n with ``n (Q + 1) < M``."""
    return (modulus_range - 1) // device_max(quantization_range)


def max_quantization_range(clients: int, modulus_range: int = FLOWER_MODULUS_RANGE) -> int:
    """Largest Q with which ``clients`` survivors cannot wrap (``clients (Q + 1) < M``)."""
    return (modulus_range - 1) // clients - 1


def check_no_wrap(clients: int, quantization_range: int,
                  modulus_range: int = FLOWER_MODULUS_RANGE) -> None:
    """Refuse (ConfigError, one line) a SecAgg+ round of ``clients`` sampled devices whose
    worst-case sum can reach the modulus; survivors never outnumber the sampled."""
    worst = worst_case_sum(clients, quantization_range)
    if worst >= modulus_range:
        raise ConfigError(
            f"secagg: {clients} clients per round can wrap SecAgg+'s sum modulo "
            f"{modulus_range} (worst case {clients} x {device_max(quantization_range)} = "
            f"{worst} quantized units); use at most "
            f"{max_clients(quantization_range, modulus_range)} clients per round or "
            f"secagg-quantization-range <= {max_quantization_range(clients, modulus_range)}")


def rounding_step(clipping_range: float, quantization_range: int) -> float:
    """s = 2R / Q: one quantization level, in weight units."""
    if not clipping_range > 0 or quantization_range < 1:
        raise ValueError(f"need R > 0 and Q >= 1, got {clipping_range}, {quantization_range}")
    return 2.0 * clipping_range / quantization_range


def rounding_l2(n_weights: int, clipping_range: float, quantization_range: int) -> float:
    """rho: L2 bound on how far one device's dequantized vector lies from its weights,
    ``sqrt(d) * s * (1 + 2^-20)`` (module docstring), in weight units."""
    if n_weights < 0:
        raise ValueError(f"need d >= 0 weights, got {n_weights}")
    return math.sqrt(n_weights) * rounding_step(clipping_range, quantization_range) * (
        1.0 + FLOAT64_MARGIN)
