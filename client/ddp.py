"""DP-FedAvg with distributed noise (``dp = distributed``): what a sampled device uploads.

Inside Flower's ``secaggplus_mod`` (``fedrec.client.secagg``), after local training, the
device turns its update (new minus received global weights, all of them as one vector)
into integers and adds its share of the noise (``fedrec.shared.skellam``):

1. multiply by ``scale`` and clip to L2 ``scale * clip`` (the user-level clip, as
   Flower's client-side fixed clipping would, in integer units);
2. conditional randomized rounding (unbiased; the L2 bound of
   ``skellam.rounded_l2_norm_bound`` then holds with certainty);
3. add ``Sk(mu / t)`` per coordinate;
4. hand the integers to ``secaggplus_mod`` as floats that its quantizer maps exactly
   (``skellam.secagg_ranges``: Q = 2^bits, c = Q / 2; clamped to [-c, c], which
   happens with probability <= 2^-64 per round, ``skellam.RANGE_LOG2``).

Randomness: rounding and noise come from two generators, each PCG64DXSM keyed with 128
bits of OS entropy, fresh every round. With ``noise-seed`` >= 0 (tests, reproducible
experiments; the run is marked not private) they are derived from (seed, noise-seed,
user, round) on two streams, so that a test can redraw a device's noise share exactly;
a device accepts a seeded round only if its node config allows it
(``fedrec.client.seeding.allows_seeded_noise``).
"""

from __future__ import annotations

import logging
import secrets

import numpy as np

from fedrec.shared import skellam
from fedrec.shared.protocol import (
    SKELLAM_BITS,
    SKELLAM_CLIP,
    SKELLAM_MU_SHARE,
    SKELLAM_SCALE,
    STREAM_SKELLAM_NOISE,
    STREAM_SKELLAM_ROUNDING,
)

log = logging.getLogger("fedrec.client")


def is_distributed(config) -> bool:
    """Whether a SecAgg+ fit config asks for distributed noise."""
    return SKELLAM_MU_SHARE in config


def generators(noise_seed: int, seed: int, user: int, rnd: int
               ) -> tuple[np.random.Generator, np.random.Generator]:
    """(rounding, noise) generators of one device's round (module docstring)."""
    if noise_seed < 0:
        return (np.random.Generator(np.random.PCG64DXSM(secrets.randbits(128))),
                np.random.Generator(np.random.PCG64DXSM(secrets.randbits(128))))
    return tuple(np.random.Generator(np.random.PCG64DXSM([seed, noise_seed, user, rnd, tag]))
                 for tag in (STREAM_SKELLAM_ROUNDING, STREAM_SKELLAM_NOISE))


def noise_share(config, dim: int, rng: np.random.Generator) -> np.ndarray:
    """The device's noise share ``Sk(mu / t)`` over ``dim`` coordinates (int64)."""
    return skellam.noise_share(dim, float(config[SKELLAM_MU_SHARE]), rng)


def encode_update(sent: list[np.ndarray], new: list[np.ndarray], config,
                  rounding: np.random.Generator, noise: np.random.Generator
                  ) -> list[np.ndarray]:
    """The arrays a device hands to ``secaggplus_mod``: its clipped, scaled, rounded
    update plus its noise share, in the shapes of ``sent`` (float64 holding integers)."""
    update = np.concatenate([(np.asarray(b, np.float64) - np.asarray(a, np.float64)).ravel()
                             for a, b in zip(sent, new, strict=True)])
    x = skellam.quantize(update, float(config[SKELLAM_SCALE]), float(config[SKELLAM_CLIP]),
                         rounding)
    x += noise_share(config, x.size, noise)
    flat, clamped = skellam.to_secagg(x, int(config[SKELLAM_BITS]))
    if clamped:
        log.warning("distributed noise: %d coordinates clamped to SecAgg+'s range", clamped)
    out, start = [], 0
    for a in sent:
        out.append(flat[start:start + a.size].reshape(a.shape))
        start += a.size
    return out
