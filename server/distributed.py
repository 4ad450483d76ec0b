"""Statistics releases with distributed Skellam noise (issue #22, in-process slice).

Each device scales its (L2 <= 1) contribution by ``scale``, rounds it to integers with
conditional randomized rounding, adds its share ``Sk(mu / n)`` of integer noise and
uploads the result modulo ``2^bits`` (``fedrec.client.releases.noisy_share``). The server adds
the uploads modulo ``2^bits``, takes the centered representative (the noisy integer sum,
which holds ``Sk(mu)`` noise in total), divides by ``scale`` and post-processes exactly as
the central pipeline does. The release's ``SkellamEvent`` (``fedrec.shared.skellam``) is
written to the ledger before any device is asked for its share (write-ahead).

Calibration: release k gets ``mu_k = (Delta2_k z / sqrt(f_k))^2`` with ``Delta2_k`` its
integer L2 sensitivity under REPLACE_ONE (rounding included) and ``f_k`` its share of
the budget (as the central split), with the smallest z whose composed Skellam RDP ε
meets the target (``fedrec.shared.skellam.calibrate``).

Not done here: SecAgg+ transport (in this engine the server's loop receives each
device's noisy share, so the ε against the server only holds once SecAgg+ carries the
shares), dropouts (``n`` is the roster: every device answers in-process), DP-FedAvg.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from dp_accounting import dp_event as dpe

from fedrec.shared import knn, privacy, skellam, stats
from fedrec.shared.errors import ConfigError
from fedrec.shared.ledger import Ledger
from fedrec.shared.protocol_releases import (ITEM_WEIGHT, NOISE_BITS, NOISE_MU_SHARE, NOISE_SCALE,
                                      cooccurrence_request, popularity_request)

log = logging.getLogger("fedrec.releases")

#: Contributions have L2 norm <= 1 (``fedrec.shared.stats``).
CLIP = 1.0


@dataclass(frozen=True)
class SkellamRelease:
    """One release's distributed mechanism (integer units: real value times ``scale``).

    Attributes:
        dim: coordinates of the summed vector.
        scale: integer units per unit of contribution.
        mu: variance of the summed noise ``Sk(mu)`` per coordinate.
        devices: n, devices that add a share ``Sk(mu / n)`` each.
        bits: bits per coordinate of an upload (the sum cannot wrap but with 2^-40).
    """

    dim: int
    scale: float
    mu: float
    devices: int
    bits: int
    beta: float = skellam.BETA

    def event(self) -> skellam.SkellamEvent:
        return skellam.release_event(self.mu, self.scale, CLIP, self.dim, self.beta)

    def noise_std(self) -> float:
        """Std of the noise on the released (unscaled) sum, per coordinate."""
        return math.sqrt(self.mu) / self.scale

    def declared(self) -> dict:
        event = self.event()
        return {"mechanism": "skellam", "dim": self.dim, "scale": self.scale, "mu": self.mu,
                "devices": self.devices, "mu_per_device": self.mu / self.devices,
                "beta": self.beta, "clip": CLIP, "bits": self.bits,
                "l1_sensitivity": event.l1_sensitivity, "l2_sensitivity": event.l2_sensitivity,
                "noise_std": self.noise_std()}


def dims(releases: tuple[str, ...], n_items: int, head: int) -> dict[str, int]:
    """Coordinates of every release's sum (the co-occurrence head is known in advance:
    ``head`` items, or the catalogue when 0)."""
    out = {stats.POPULARITY: n_items}
    if stats.COOCCURRENCE in releases:
        h = n_items if head <= 0 else min(head, n_items)
        out[stats.COOCCURRENCE] = h * (h - 1) // 2
    return out


def plan(target_epsilon: float, delta: float, shares: dict[str, float], dim: dict[str, int],
         scale: float, devices: int, max_bits: int) -> dict[str, SkellamRelease]:
    """Calibrated releases, refusing (one line) when a sum could wrap in ``max_bits``."""
    names = list(shares)
    sens = [skellam.replace_one_sensitivities(scale, CLIP, dim[k])[1] for k in names]

    def events(mus):
        return [skellam.release_event(m, scale, CLIP, dim[k]) for m, k in zip(mus, names)]

    z = skellam.calibrate(target_epsilon, delta, sens, [shares[k] for k in names], events)
    for _ in range(200):    # the claim is the ledger's accountant (its orders): meet it
        mus = [(d2 * z) ** 2 / shares[k] for k, d2 in zip(names, sens)]
        event = dpe.ComposedDpEvent(events(mus))
        if privacy.epsilon(event, delta, "rdp", stats.RELATION) <= target_epsilon:
            break
        z *= 1.002
    else:
        raise RuntimeError(f"could not calibrate Skellam noise for ε = {target_epsilon}")
    out = {}
    for k, d2 in zip(names, sens):
        mu = (d2 * z) ** 2 / shares[k]
        bits = skellam.bits_needed(devices, d2 / 2.0, mu, dim[k])
        if bits > max_bits:
            raise ConfigError(f"distributed noise: the {k} sum needs {bits} bits per coordinate "
                              f"not to wrap, more than --skellam-bits {max_bits}; lower "
                              f"--skellam-scale ({scale:g}) or raise --skellam-bits")
        out[k] = SkellamRelease(dim[k], scale, mu, devices, bits)
    return out


def modular_sum(shares: Iterable[np.ndarray], release: SkellamRelease) -> np.ndarray:
    """Sum of the devices' uploads modulo 2^bits, centered, in real units (/ scale).

    One upload at a time (memory does not grow with the roster). An upload of the
    wrong shape or outside ``[0, 2^bits)`` is refused (counted as zero) and logged.
    """
    modulus = np.int64(1) << release.bits
    total, refused = np.zeros(release.dim, np.int64), 0
    for share in shares:
        share = np.asarray(share).ravel()
        if (share.shape != (release.dim,) or share.dtype.kind not in "iu"
                or (share.size and (share.min() < 0 or share.max() >= modulus))):
            refused += 1
            continue
        total = np.mod(total + share.astype(np.int64), modulus)
    if refused:
        log.warning("distributed sum: %d malformed uploads counted as zero", refused)
    return skellam.unwrap(total, release.bits) / release.scale


def run(collect: Callable[[str, dict], Iterable[np.ndarray]], n_items: int, settings,
        releases: dict[str, SkellamRelease], ledger: Ledger,
        save_ledger: Callable[[Ledger], None]
        ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The releases of ``fedrec.server.releases.run_releases`` with distributed noise:
    (noisy popularity, head, noisy (h, h) co-occurrence), the last two None for the
    popularity pipeline. ``settings``: ``fedrec.server.releases.ReleaseSettings``."""
    def request(name: str, base: dict) -> dict:
        r = releases[name]
        return {**base, NOISE_SCALE: r.scale, NOISE_MU_SHARE: r.mu / r.devices,
                NOISE_BITS: r.bits}

    def release(name: str, base: dict) -> np.ndarray:
        ledger.record(len(ledger.history) + 1, releases[name].event())
        save_ledger(ledger)                  # write-ahead: before any share is drawn
        log.info("release %s: Skellam mu %.4g (%d bits per coordinate)", name,
                 releases[name].mu, releases[name].bits)
        return modular_sum(collect(name, request(name, base)), releases[name])

    popularity = release(stats.POPULARITY, popularity_request(
        settings.popularity_decay, settings.popularity_cap, True))
    if stats.COOCCURRENCE not in settings.releases:
        return popularity, None, None
    head = stats.choose_head(popularity, settings.head)
    base = cooccurrence_request(head, settings.cap)
    weight = knn.pair_weights(popularity[head], settings.knn)
    if weight is not None:
        base[ITEM_WEIGHT] = weight
    return popularity, head, stats.unpack_triangle(release(stats.COOCCURRENCE, base), len(head))
