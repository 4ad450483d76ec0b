"""What a device does in a statistics-release run: contribute once, then recommend locally.

The device computes its own contribution to each statistic from its history
(``fedrec.shared.stats``: bounded by construction, and bounded again by the server), and after
the release ranks items with ``fedrec.shared.knn.device_scores`` on its own history, which never
leaves it. Its own evaluation (the held-out item) is computed here too, so a simulation
reports exactly what devices would.
"""

from __future__ import annotations

import math
import secrets

import numpy as np

from fedrec.shared import als, knn, metrics, skellam, stats
from fedrec.shared.content import ItemContent
from fedrec.shared.federated_data import ClientData
from fedrec.shared.protocol_releases import (
    BOUNDED,
    CAP,
    DECAY,
    FACTORS,
    HEAD,
    ITEM_WEIGHT,
    NEGATIVE,
    NOISE_BITS,
    NOISE_MU_SHARE,
    NOISE_SCALE,
    RIDGE,
)


def contribution(statistic: str, request: dict, data: ClientData) -> np.ndarray:
    """This device's contribution to ``statistic`` (see ``fedrec.server.releases.Collect``)."""
    if statistic == stats.POPULARITY:
        return stats.popularity_contribution(data.train_items, data.n_items,
                                             float(request[DECAY]), int(request[CAP]),
                                             bool(int(request.get(BOUNDED, 1))))
    if statistic == stats.COOCCURRENCE:
        positions = stats.head_positions(np.asarray(request[HEAD], np.int64), data.n_items)
        return stats.recent_head_items(data.train_items, positions, int(request[CAP]))
    if statistic == als.ALS:
        return als_contribution(request, data)
    raise ValueError(f"unknown statistic {statistic!r}; use one of {stats.STATISTICS}")


def als_contribution(request: dict, data: ClientData) -> np.ndarray:
    """The device's dense ALS contribution (norm <= 1, ``fedrec.shared.als``): its factor
    u solved on all its head items against the current factors, then the blocks of its
    ``cap`` most recent head items."""
    head = np.asarray(request[HEAD], np.int64)
    factors = np.asarray(request[FACTORS], np.float64)
    positions = stats.recent_head_items(data.train_items,
                                        stats.head_positions(head, data.n_items), 0)
    u = als.user_factor(positions, factors, float(request[NEGATIVE]), float(request[RIDGE]))
    cap = int(request[CAP])
    return als.contribution(positions if cap <= 0 else positions[:cap], u, len(head))


def noise_generator(seed: int | None, device: int) -> np.random.Generator:
    """The device's own noise and rounding randomness: 128 bits of OS entropy, or (tests
    only, not private) a stream derived from ``seed`` and the device's index."""
    if seed is None:
        return np.random.Generator(np.random.PCG64DXSM(secrets.randbits(128)))
    return np.random.Generator(np.random.PCG64DXSM([seed, 0x5EED, device]))


def dense_contribution(statistic: str, request: dict, data: ClientData) -> np.ndarray:
    """The device's contribution as the dense vector whose sum is released: popularity
    (n_items,) or the packed co-occurrence triangle h (h - 1) / 2 (norm <= 1 both)."""
    vector = contribution(statistic, request, data)
    if statistic == stats.POPULARITY:
        return vector
    weight = request.get(ITEM_WEIGHT)
    return stats.cooccurrence_contribution(
        vector, len(request[HEAD]), True,
        None if weight is None else np.asarray(weight, np.float64))


def centered_share(statistic: str, request: dict, data: ClientData,
                   rng: np.random.Generator) -> np.ndarray:
    """Distributed noise (``fedrec.server.distributed``): the device's dense contribution,
    scaled, conditionally rounded (L2 bound kept), plus ``Sk(mu share)`` per coordinate
    (int64, not reduced: what SecAgg+ carries). Never the plain contribution."""
    x = skellam.quantize(dense_contribution(statistic, request, data),
                         float(request[NOISE_SCALE]), 1.0, rng)
    x += skellam.noise_share(x.size, float(request[NOISE_MU_SHARE]), rng)
    return x


def noisy_share(statistic: str, request: dict, data: ClientData,
                rng: np.random.Generator) -> np.ndarray:
    """:func:`centered_share` modulo ``2^bits`` (int64 in ``[0, 2^bits)``): the upload of
    the in-process engine."""
    return skellam.wrap(centered_share(statistic, request, data, rng),
                        int(request[NOISE_BITS]))


def share_stream(release: int, devices: int, device: int) -> int:
    """Index of the test noise stream (:func:`noise_generator`) of ``device`` (0-based)
    in the ``release``-th release (1-based) of ``devices``: distinct per release and
    device, and the same in every engine."""
    return release * devices + device


def simulated_dropouts(fraction: float, n: int, seed: int, release: int) -> frozenset[int]:
    """Simulated failures: ``floor(fraction * n)`` devices, drawn without replacement by a
    generator seeded from the run's ``seed`` and the release's index, never upload in
    that release. Not secret and not privacy randomness: which devices fail is no input
    to any DP claim (the server only counts the uploads it sums)."""
    k = math.floor(round(fraction * n, 9))
    if k <= 0:
        return frozenset()
    rng = np.random.default_rng([seed, 0xD80F, release])
    return frozenset(int(u) for u in rng.choice(n, size=k, replace=False))


def evaluate(data: ClientData, released: knn.Released, settings: knn.KnnSettings,
             content: ItemContent | None = None, k: int = 10) -> dict[str, float]:
    """HR@k, NDCG@k and MRR of the device's held-out item against its sampled negatives,
    ranked by the on-device scores (ties count against the model); ``content`` is the
    public catalogue metadata the device also scores with (``fedrec.shared.content``)."""
    scores = knn.device_scores(data.train_items, released, settings, content)
    rank = metrics.rank_of_positive(scores[[data.test_item]], scores[data.test_negatives][None])
    return {f"hr@{k}": metrics.hit_rate(rank, k), f"ndcg@{k}": metrics.ndcg(rank, k),
            "mrr": metrics.mrr(rank)}
