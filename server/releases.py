"""One-shot statistics releases on the server: sum, bound, account, noise, release.

The server asks every device for its contribution to a statistic (``fedrec.shared.stats``),
re-derives each contribution's norm bound itself (a device cannot inflate its weight),
sums them, writes the release's DpEvent to the ledger *before* drawing the noise
(write-ahead: a crash after the noise never releases an unrecorded aggregate), adds one
Gaussian draw, and releases. How contributions travel (Flower messages, or an in-process
loop in a simulation) is the caller's :data:`Collect`; everything else is here, once.

Noise randomness: a ``numpy`` Generator on PCG64DXSM seeded with 128 bits of OS entropy
(``secrets``); a seed is for tests only and makes the run's ledger mark the release as
not private.
"""

from __future__ import annotations

import functools
import logging
import math
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from fedrec.server import distributed
from fedrec.shared import als, knn, stats
from fedrec.shared.ledger import Ledger
from fedrec.shared.protocol_releases import als_request, cooccurrence_request, popularity_request

log = logging.getLogger("fedrec.releases")

#: ``collect(statistic, request) -> contributions`` asks every device once. A popularity
#: contribution is the device's (n_items,) vector (``stats.popularity_contribution``); a
#: co-occurrence one its head positions (newest first, ``stats.recent_head_items``). The
#: server iterates over them once (a simulation may stream them).
Collect = Callable[[str, dict], Iterable[np.ndarray]]


def noise_generator(seed: int | None) -> np.random.Generator:
    """Secret noise (128 bits of OS entropy) unless a test seed is given."""
    if seed is None:
        return np.random.Generator(np.random.PCG64DXSM(secrets.randbits(128)))
    return np.random.Generator(np.random.PCG64DXSM([seed, 0x5EED]))


def popularity_sum(contributions: Iterable[np.ndarray], n_items: int,
                   bounded: bool = True) -> np.ndarray:
    """Sum of popularity vectors, each clipped here to L2 norm 1 (whatever a device sent,
    its share of the sum is bounded: the sensitivity the accounting assumes). A malformed
    vector counts as zero, which is within the same bound. ``bounded=False`` (no DP):
    the plain sum."""
    return vector_sum(contributions, n_items, "popularity", bounded)


def cooccurrence_total(contributions: Iterable[np.ndarray], h: int, cap: int,
                       bounded: bool = True, item_weight: np.ndarray | None = None
                       ) -> np.ndarray:
    """Sum of co-occurrence contributions, each cut to ``cap`` distinct positions (0: all)
    and weighted by ``stats.pair_weight`` here (so its norm is <= 1 whatever a device
    sent; ``bounded=False``: weight 1, the raw counts). A contribution naming a position
    outside the head counts as zero."""
    kept, refused = [], 0
    for pos in contributions:
        pos = np.asarray(pos, np.int64).ravel()
        if len(pos) and (pos.min() < 0 or pos.max() >= h):
            refused += 1
            continue
        pos = stats.distinct_in_order(pos)
        kept.append(pos if cap <= 0 else pos[:cap])
    _log_refused("co-occurrence", refused)
    return stats.cooccurrence_sum(kept, h, bounded, item_weight)


def vector_sum(contributions: Iterable[np.ndarray], size: int, statistic: str,
               bounded: bool = True) -> np.ndarray:
    """Sum of dense contributions of length ``size``, each clipped here to L2 norm 1 (the
    sensitivity the accounting assumes, whatever a device sent; ``bounded=False``: the
    plain sum); a malformed vector counts as zero. The popularity release and the ALS
    statistics (``fedrec.shared.als``) use it."""
    total, refused = np.zeros(size), 0
    for vector in contributions:
        vector = np.asarray(vector, np.float64).ravel()
        if vector.shape != (size,) or not np.all(np.isfinite(vector)):
            refused += 1
            continue
        total += vector / (max(1.0, float(np.linalg.norm(vector))) if bounded else 1.0)
    _log_refused(statistic, refused)
    return total


def _log_refused(statistic: str, refused: int) -> None:
    if refused:
        log.warning("%s: %d malformed contributions counted as zero", statistic, refused)


@dataclass(frozen=True)
class ReleaseSettings:
    """What a statistics pipeline releases and how (derived from ``ReleaseConfig``).

    Attributes:
        releases: ``("popularity",)`` or ``("popularity", "cooccurrence")``.
        popularity_decay, popularity_cap: recency weighting of a device's popularity
            vector, and how many of its newest items it covers (0: all).
        noise_multiplier: z of the composed releases (0: no noise, not private).
        popularity_share: share of the budget (1/z^2) that popularity gets.
        head: items in the co-occurrence head (chosen from released popularity; 0: all).
        cap: a device's most recent head items that contribute (0: all).
        knn: the post-processing and scoring settings.
        noise_seed: test-only seed for the noise (None: secret).
        bounded: contributions bounded to norm 1 (DP); False: raw counts, no noise
            allowed (the non-private federation equal to centralized statistics).
        skellam_releases: the calibrated Skellam releases when devices add the noise
            (``fedrec.server.distributed``); None: central Gaussian noise.
        als_rank, als_item_lambda, als_min_support: the ALS pipeline's rank, the item
            solve's ridge penalty and support cut (``fedrec.shared.als``; its passes are
            the ``als-p`` entries of ``releases``).
    """

    releases: tuple[str, ...]
    popularity_decay: float
    popularity_cap: int
    noise_multiplier: float
    popularity_share: float
    head: int
    cap: int
    knn: knn.KnnSettings
    noise_seed: int | None = None
    bounded: bool = True
    skellam_releases: dict[str, distributed.SkellamRelease] | None = None
    als_rank: int = 8
    als_item_lambda: float = 10.0
    als_min_support: float = 2.0

    def __post_init__(self) -> None:
        if not self.bounded and self.noise_multiplier:
            raise ValueError("raw (unbounded) contributions have no sensitivity bound: "
                             "they cannot be released with DP noise")

    def budget(self) -> stats.BudgetSplit:
        return stats.split_budget(self.noise_multiplier, self.popularity_share, self.releases)


def run_releases(collect: Collect, n_items: int, settings: ReleaseSettings,
                 ledger: Ledger, save_ledger: Callable[[Ledger], None],
                 on_summed: Callable[[str, dict], None] | None = None) -> knn.Released:
    """Run every release once and return what devices receive.

    ``save_ledger`` persists the ledger durably; it is called after each release's event
    is recorded and before that release's noise is drawn or anything leaves.
    ``on_summed``: distributed noise only, each release's survivors record
    (``fedrec.server.distributed.run``).
    """
    if settings.skellam_releases is not None:
        popularity, head, noisy = distributed.run(collect, n_items, settings,
                                                  settings.skellam_releases, ledger, save_ledger,
                                                  on_summed)
        if head is None:
            return knn.Released(popularity, np.zeros(0, np.int64), None)
        return post_process(popularity, head, noisy, settings.knn)
    budget, rng = settings.budget(), noise_generator(settings.noise_seed)
    events = budget.events()
    total = popularity_sum(collect(stats.POPULARITY, popularity_request(
        settings.popularity_decay, settings.popularity_cap, settings.bounded)),
                           n_items, settings.bounded)
    popularity = _release(total, stats.POPULARITY, budget, events, ledger, save_ledger, rng)
    if als.release_name(1) in settings.releases:
        return _run_als(collect, popularity, settings, budget, events, ledger, save_ledger, rng)
    if stats.COOCCURRENCE not in settings.releases:
        return knn.Released(popularity, np.zeros(0, np.int64), None)
    head = stats.choose_head(popularity, settings.head)
    contributions = collect(stats.COOCCURRENCE, cooccurrence_request(head, settings.cap))
    total = cooccurrence_total(contributions, len(head), settings.cap, settings.bounded,
                               knn.pair_weights(popularity[head], settings.knn))
    noisy = _release(total, stats.COOCCURRENCE, budget, events, ledger, save_ledger, rng,
                     symmetric=True)
    return post_process(popularity, head, noisy, settings.knn)


def _run_als(collect: Collect, popularity: np.ndarray, settings: ReleaseSettings,
             budget: stats.BudgetSplit, events: dict, ledger: Ledger,
             save_ledger: Callable[[Ledger], None], rng: np.random.Generator) -> knn.Released:
    """The ALS passes on the head the popularity release picks: each pass asks every
    device for its contribution on the current factors, sums (each clipped to norm 1),
    records the pass's event, adds one Gaussian draw and solves the item factors."""
    head = stats.choose_head(popularity, settings.head)
    h, rank = len(head), settings.als_rank
    factors = als.initial_factors(h, rank)
    passes = [name for name in settings.releases if name.startswith(als.ALS)]
    for name in passes:
        request = als_request(head, factors, settings.cap, settings.knn.als_negative,
                              settings.knn.als_lambda)
        total = vector_sum(collect(als.ALS, request), als.contribution_size(h, rank), name)
        noisy = _release(total, name, budget, events, ledger, save_ledger, rng)
        cut = als.support_threshold(settings.als_min_support,
                                    stats.SENSITIVITY * budget.multiplier(name), rank)
        factors = als.item_factors(noisy, h, rank, settings.knn.als_negative,
                                   settings.als_item_lambda, cut)
    return knn.Released(popularity, head, None, factors=factors)


def post_process(popularity: np.ndarray, head: np.ndarray, noisy: np.ndarray,
                 settings: knn.KnnSettings) -> knn.Released:
    """What devices receive, computed from the releases alone (so it costs nothing):
    the kNN similarity and, when asked, the EASE weights on the head."""
    pair = knn.pair_weights(popularity[head], settings)
    counts = noisy if pair is None else noisy / np.outer(pair, pair)   # undo --pair-beta
    weights = (knn.ease(counts, np.maximum(popularity[head], 0.0), settings.ease_lambda)
               if settings.ease_lambda else None)
    return knn.Released(popularity, head, knn.similarity(noisy, popularity[head], settings),
                        weights)


def _release(total: np.ndarray, name: str, budget: stats.BudgetSplit, events: dict,
             ledger: Ledger, save_ledger: Callable[[Ledger], None], rng: np.random.Generator,
             symmetric: bool = False) -> np.ndarray:
    ledger.record(len(ledger.history) + 1, events[name])
    save_ledger(ledger)          # write-ahead: recorded before the noise is drawn
    z = budget.multiplier(name)
    log.info("release %s: noise multiplier %.4g (std %.4g per coordinate)", name, z,
             stats.SENSITIVITY * z)
    return stats.add_noise(total, z, rng, symmetric=symmetric) if z else total


@functools.lru_cache(maxsize=64)
def calibrate_total(target_epsilon: float, delta: float, shares: tuple[tuple[str, float], ...]
                    ) -> float:
    """Noise multiplier z of releases sharing ``target_epsilon`` at ``delta``.

    ``shares`` are ``(release, share)`` pairs (``stats.BudgetSplit``). The exact Gaussian
    curve gives the starting z; it is then raised in 0.2 % steps until dp-accounting's
    PLD ε of the composed split releases under REPLACE_ONE is within the target (the
    PLD's discretisation is pessimistic, so the claim is what dp-accounting says).
    """
    from dp_accounting import dp_event as dpe

    from fedrec.shared import privacy

    if math.isinf(target_epsilon):
        return 0.0
    lo, hi = 1e-3, 1e3            # z with gaussian_epsilon(z) = target, by bisection
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if stats.gaussian_epsilon(mid, delta) > target_epsilon else (lo, mid)
    z = hi
    for _ in range(200):
        split = stats.BudgetSplit(z, dict(shares))
        event = dpe.ComposedDpEvent(list(split.events().values()))
        if privacy.epsilon(event, delta, "pld", stats.RELATION) <= target_epsilon:
            return z
        z *= 1.002
    raise RuntimeError(f"could not calibrate noise for ε = {target_epsilon}")
