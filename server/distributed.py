"""Statistics releases with distributed Skellam noise (issue #22).

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

Dropouts: shares are sized for ``t`` devices (``t <= n``, the fewest survivors a release
accepts): each adds ``Sk(mu / t)``, so ``s >= t`` well-formed uploads carry
``Sk(mu s / t)``, at least the ``mu`` the ledger's event accounts. The server counts the
uploads it summed and refuses to release when ``s < t`` (:class:`TooFewSurvivors`); the
write-ahead event stays in the ledger. The bit width is sized for all n devices and the
largest noise ``mu n / t`` (the worst case).

Transport: the in-process engine's ``collect`` yields every device's upload (the server
sees each noisy share); the Flower engine's (``fedrec.server.release_secagg``) returns an
:class:`UnmaskedSum`, the sum SecAgg+ unmasked and its survivor count, which
:func:`modular_total` reduces and centers the same way. DP-FedAvg is not here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from dp_accounting import dp_event as dpe

from fedrec.shared import knn, privacy, skellam, stats
from fedrec.shared.errors import ConfigError, FedrecError
from fedrec.shared.ledger import Ledger
from fedrec.shared.protocol_releases import (
    ITEM_WEIGHT,
    NOISE_BITS,
    NOISE_MU_SHARE,
    NOISE_SCALE,
    cooccurrence_request,
    popularity_request,
)

log = logging.getLogger("fedrec.releases")

#: Contributions have L2 norm <= 1 (``fedrec.shared.stats``).
CLIP = 1.0


class TooFewSurvivors(FedrecError):
    """Fewer well-formed uploads than the noise shares are sized for: not released."""


@dataclass(frozen=True)
class SkellamRelease:
    """One release's distributed mechanism (integer units: real value times ``scale``).

    Attributes:
        dim: coordinates of the summed vector.
        scale: integer units per unit of contribution.
        mu: variance of the summed noise per coordinate that the ledger accounts: the
            least any accepted round carries (``t`` survivors).
        devices: n, the roster asked for a share.
        bits: bits per coordinate of an upload (the sum of all n cannot wrap but with
            2^-40).
        threshold: t, the fewest survivors a release accepts; each device adds
            ``Sk(mu / t)`` (0: t = n, every device must answer).
    """

    dim: int
    scale: float
    mu: float
    devices: int
    bits: int
    beta: float = skellam.BETA
    threshold: int = 0

    def __post_init__(self) -> None:
        if self.threshold == 0:
            object.__setattr__(self, "threshold", self.devices)
        if not 1 <= self.threshold <= self.devices:
            raise ValueError(f"survivor threshold must be in [1, {self.devices}], "
                             f"got {self.threshold}")

    @property
    def mu_per_device(self) -> float:
        """Each device's share ``Sk(mu / t)``."""
        return self.mu / self.threshold

    def mu_summed(self, survivors: int) -> float:
        """Noise variance a sum of ``survivors`` shares carries: ``mu s / t``."""
        return self.mu_per_device * survivors

    def event(self, mu: float | None = None) -> skellam.SkellamEvent:
        """The release's event (``mu``: another noise variance, e.g. the summed one)."""
        return skellam.release_event(self.mu if mu is None else mu, self.scale, CLIP,
                                     self.dim, self.beta)

    def noise_std(self) -> float:
        """Std of the accounted noise on the released (unscaled) sum, per coordinate."""
        return math.sqrt(self.mu) / self.scale

    def declared(self) -> dict:
        event = self.event()
        return {"mechanism": "skellam", "dim": self.dim, "scale": self.scale, "mu": self.mu,
                "devices": self.devices, "threshold": self.threshold,
                "mu_per_device": self.mu_per_device,
                "beta": self.beta, "clip": CLIP, "bits": self.bits,
                "l1_sensitivity": event.l1_sensitivity, "l2_sensitivity": event.l2_sensitivity,
                "noise_std": self.noise_std()}

    def range_failure(self) -> float:
        """p: probability that some device's SecAgg+ share has a coordinate beyond
        ``c = 2^(bits-1)`` (the device then refuses and drops out, a data-dependent
        event): the roster n times one device's Bernstein bound
        (``fedrec.shared.skellam.share_exceed_probability``, noise share mu / t)."""
        rounded = self.event().l2_sensitivity / 2.0
        return self.devices * skellam.share_exceed_probability(
            1 << (self.bits - 1), rounded, self.mu_per_device, self.dim)

    def survivors_record(self, survivors: int) -> dict:
        """What the run records after the sum: s, t, n and the noise actually summed."""
        return {"devices": self.devices, "threshold": self.threshold, "survivors": survivors,
                "mu": self.mu, "mu_actual": self.mu_summed(survivors)}


def dims(releases: tuple[str, ...], n_items: int, head: int) -> dict[str, int]:
    """Coordinates of every release's sum (the co-occurrence head is known in advance:
    ``head`` items, or the catalogue when 0)."""
    out = {stats.POPULARITY: n_items}
    if stats.COOCCURRENCE in releases:
        h = n_items if head <= 0 else min(head, n_items)
        out[stats.COOCCURRENCE] = h * (h - 1) // 2
    return out


def plan(target_epsilon: float, delta: float, shares: dict[str, float], dim: dict[str, int],
         scale: float, devices: int, max_bits: int, threshold: int = 0
         ) -> dict[str, SkellamRelease]:
    """Calibrated releases, refusing (one line) when a sum could wrap in ``max_bits``.

    ``threshold`` t (0: ``devices``): shares are sized for t survivors; the width covers
    all ``devices`` uploading, with the largest noise ``mu devices / t``."""
    threshold = threshold or devices
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
        bits = skellam.bits_needed(devices, d2 / 2.0, mu * devices / threshold, dim[k])
        if bits > max_bits:
            raise ConfigError(f"distributed noise: the {k} sum needs {bits} bits per coordinate "
                              f"not to wrap, more than --skellam-bits {max_bits}; lower "
                              f"--skellam-scale ({scale:g}) or raise --skellam-bits")
        out[k] = SkellamRelease(dim[k], scale, mu, devices, bits, threshold=threshold)
    return out


@dataclass(frozen=True)
class UnmaskedSum:
    """What a secure aggregation hands the server: the integer sum of the survivors'
    centered shares (int64; None when the protocol halted and unmasked nothing) and
    how many shares it holds (s)."""

    total: np.ndarray | None
    survivors: int


def modular_total(shares: Iterable[np.ndarray] | UnmaskedSum, release: SkellamRelease
                  ) -> tuple[np.ndarray | None, int]:
    """Sum of the devices' uploads modulo 2^bits, centered, in real units (/ scale), and
    the number of uploads summed (the survivors s).

    One upload at a time (memory does not grow with the roster). An upload of the
    wrong shape or outside ``[0, 2^bits)`` is refused (not summed, not counted) and
    logged: its noise share is not in the sum. An :class:`UnmaskedSum` (SecAgg+) is
    already summed: it is reduced modulo 2^bits and centered the same way (None when
    nothing was unmasked).
    """
    if isinstance(shares, UnmaskedSum):
        if shares.total is None:
            return None, shares.survivors
        total = np.asarray(shares.total).ravel()
        if total.shape != (release.dim,) or total.dtype.kind not in "iu":
            raise ValueError(f"unmasked sum of shape {total.shape} ({total.dtype}), "
                             f"expected ({release.dim},) integers")
        return skellam.unwrap(total, release.bits) / release.scale, shares.survivors
    modulus = np.int64(1) << release.bits
    total, refused, summed = np.zeros(release.dim, np.int64), 0, 0
    for share in shares:
        share = np.asarray(share).ravel()
        if (share.shape != (release.dim,) or share.dtype.kind not in "iu"
                or (share.size and (share.min() < 0 or share.max() >= modulus))):
            refused += 1
            continue
        total = np.mod(total + share.astype(np.int64), modulus)
        summed += 1
    if refused:
        log.warning("distributed sum: %d malformed uploads refused", refused)
    return skellam.unwrap(total, release.bits) / release.scale, summed


def secagg_record(release: SkellamRelease) -> dict:
    """How SecAgg+ carries ``release`` (``fedrec.server.release_secagg``): Flower's
    reconstruction threshold (= t, the survivor threshold), shares per key (n) and the
    quantization ``Q``, clipping ``c`` and mask modulus ``M`` of
    ``fedrec.shared.skellam.secagg_ranges`` (the manifest records it; the audit recomputes it)."""
    q, c, m = skellam.secagg_ranges(release.bits, release.devices)
    return {"threshold": release.threshold, "num_shares": release.devices,
            "quantization_range": q, "clipping_range": c, "modulus_range": m,
            "max_weight": 1}


def check_secagg(releases: dict[str, SkellamRelease]) -> None:
    """Refuse (one line, ``ConfigError``) a plan SecAgg+ cannot carry exactly: more than
    30 bits, ``n 2^bits >= 2^50``, or a threshold t < 2 (Flower reads an integer
    threshold of 1 as the fraction 1.0, i.e. every share; and t = 1 protects nothing)."""
    for name, r in releases.items():
        if r.threshold < 2:
            raise ConfigError(f"SecAgg+ needs a survivor threshold t >= 2, got t = "
                              f"{r.threshold} of {r.devices} devices: raise --min-survivors "
                              f"(or use more devices)")
        try:
            skellam.secagg_ranges(r.bits, r.devices)
        except ValueError as err:
            raise ConfigError(f"{name} release: {err}; lower --skellam-scale") from None


def decode_average(average: np.ndarray, survivors: int) -> np.ndarray:
    """The integer sum of ``survivors`` centered shares from the weighted average Flower's
    SecAgg+ returns (``secagg_ranges``: weight 1 each, quantizer exactly 1): ``round(average
    s)``, exact while ``n 2^bits < 2^50`` (``check_secagg``)."""
    return np.rint(np.asarray(average, np.float64).ravel() * survivors).astype(np.int64)


def modular_sum(shares: Iterable[np.ndarray], release: SkellamRelease) -> np.ndarray:
    """:func:`modular_total` without the count."""
    return modular_total(shares, release)[0]


def run(collect: Callable[[str, dict], Iterable[np.ndarray] | UnmaskedSum], n_items: int, settings,
        releases: dict[str, SkellamRelease], ledger: Ledger,
        save_ledger: Callable[[Ledger], None],
        on_summed: Callable[[str, dict], None] | None = None
        ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The releases of ``fedrec.server.releases.run_releases`` with distributed noise:
    (noisy popularity, head, noisy (h, h) co-occurrence), the last two None for the
    popularity pipeline. ``settings``: ``fedrec.server.releases.ReleaseSettings``.

    ``on_summed(name, record)`` gets each release's :meth:`SkellamRelease.survivors_record`
    after its sum and before anything is released; a sum of fewer than t uploads raises
    :class:`TooFewSurvivors` (its ledger event stays)."""
    def request(name: str, base: dict) -> dict:
        r = releases[name]
        return {**base, NOISE_SCALE: r.scale, NOISE_MU_SHARE: r.mu_per_device,
                NOISE_BITS: r.bits}

    def release(name: str, base: dict) -> np.ndarray:
        ledger.record(len(ledger.history) + 1, releases[name].event())
        save_ledger(ledger)                  # write-ahead: before any share is drawn
        log.info("release %s: Skellam mu %.4g (%d bits per coordinate)", name,
                 releases[name].mu, releases[name].bits)
        r = releases[name]
        total, survivors = modular_total(collect(name, request(name, base)), r)
        if on_summed is not None:
            on_summed(name, r.survivors_record(survivors))
        check_survivors(name, survivors, r, total is not None)
        return total

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


def check_survivors(name: str, survivors: int, release: SkellamRelease,
                    unmasked: bool = True) -> None:
    """Refuse (one line) a sum of fewer than t shares: it carries less than the
    accounted noise, so it must not be released; also when SecAgg+ halted
    (``unmasked`` False: fewer than t devices held on to the end of the protocol)."""
    if not unmasked:
        raise TooFewSurvivors(
            f"{name} release not made: SecAgg+ halted ({survivors} of {release.devices} "
            f"masked shares collected; fewer than its reconstruction threshold t = "
            f"{release.threshold} devices completed the protocol); its ledger event stays")
    if survivors < release.threshold:
        raise TooFewSurvivors(
            f"{name} release not made: {survivors} of {release.devices} devices uploaded a "
            f"well-formed share, fewer than the {release.threshold} the noise is sized for "
            f"(--min-survivors); its ledger event stays")
