"""What a device does in a statistics-release run: contribute once, then recommend locally.

The device computes its own contribution to each statistic from its history
(``shared.stats``: bounded by construction, and bounded again by the server), and after
the release ranks items with ``shared.knn.device_scores`` on its own history, which never
leaves it. Its own evaluation (the held-out item) is computed here too, so a simulation
reports exactly what devices would.
"""

from __future__ import annotations

import numpy as np

from shared import knn, metrics, stats
from shared.federated_data import ClientData
from shared.protocol_releases import BOUNDED, CAP, DECAY, HEAD


def contribution(statistic: str, request: dict, data: ClientData) -> np.ndarray:
    """This device's contribution to ``statistic`` (see ``server.releases.Collect``)."""
    if statistic == stats.POPULARITY:
        return stats.popularity_contribution(data.train_items, data.n_items,
                                             float(request[DECAY]), int(request[CAP]),
                                             bool(int(request.get(BOUNDED, 1))))
    if statistic == stats.COOCCURRENCE:
        positions = stats.head_positions(np.asarray(request[HEAD], np.int64), data.n_items)
        return stats.recent_head_items(data.train_items, positions, int(request[CAP]))
    raise ValueError(f"unknown statistic {statistic!r}; use one of {stats.STATISTICS}")


def evaluate(data: ClientData, released: knn.Released, settings: knn.KnnSettings,
             k: int = 10) -> dict[str, float]:
    """HR@k, NDCG@k and MRR of the device's held-out item against its sampled negatives,
    ranked by the on-device scores (ties count against the model)."""
    scores = knn.device_scores(data.train_items, released, settings)
    rank = metrics.rank_of_positive(scores[[data.test_item]], scores[data.test_negatives][None])
    return {f"hr@{k}": metrics.hit_rate(rank, k), f"ndcg@{k}": metrics.ndcg(rank, k),
            "mrr": metrics.mrr(rank)}
