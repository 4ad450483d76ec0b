"""A synthetic federation too large to hold: each client is generated when it is called.

The eager path (``fedrec.shared.federated_data.load_federation``) generates every user, indexes
and splits them, in every simulation worker: fine for thousands of users, not for
100,000. Here a worker holds only the :class:`fedrec.shared.synthetic.SyntheticWorld` (the
catalogue and taste clusters, O(items)); a client's events come from its own generator
stream when Flower calls it, and are indexed in catalogue order, exactly as a deployed
device indexes its own events (``fedrec.shared.catalogue.device_federation``). Memory is then
bounded by the clients of the current round, whatever the number of users.

User ``u`` here has the same events as user ``u`` of the eager federation of the same
config (the generator guarantees it); only the item *indices* differ (catalogue order
here, first appearance there), so the two are different runs of the same data.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict

import numpy as np

from fedrec.shared.catalogue import Catalogue, catalogue_from_items, device_federation
from fedrec.shared.federated_data import ClientData
from fedrec.shared.interactions import MIN_INTERACTIONS
from fedrec.shared.synthetic import SyntheticConfig, SyntheticWorld

#: Bumped when the generator's output for a config changes (part of the fingerprint).
GENERATOR_VERSION = 1


class LazySyntheticFederation:
    """One client per synthetic user, built on demand; the server side needs only the
    catalogue (item count and content features).

    Attributes:
        name: ``"synthetic"``.
        config: the generator config (the data is a deterministic function of it).
        seed: seeds the evaluation negatives (as in :class:`Federation`).
        catalogue: items in model order (the world's item index order).
        fingerprint: sha256 of the generator config and version: what identifies data
            that is never materialised.
    """

    training_interactions = None   # not counted: counting would generate every user

    def __init__(self, config: SyntheticConfig, seed: int, eval_negatives: int = 99) -> None:
        self.name = "synthetic"
        self.config = config
        self.seed = seed
        self.eval_negatives = eval_negatives
        self.world = SyntheticWorld(config)
        self.catalogue: Catalogue = catalogue_from_items("synthetic", self.world.items_table())
        spec = json.dumps({"generator": GENERATOR_VERSION, **asdict(config)}, sort_keys=True)
        self.fingerprint = hashlib.sha256(spec.encode()).hexdigest()

    @property
    def n_clients(self) -> int:
        return self.config.n_users

    @property
    def n_items(self) -> int:
        return self.catalogue.n_items

    @property
    def item_features(self) -> np.ndarray:
        return self.catalogue.item_features

    @property
    def popularity(self) -> np.ndarray:
        """(N,) the popular-items fallback shipped with the catalogue: the world's base
        item popularity (no user's events are counted to make it)."""
        return self.world.item_popularity.astype(np.float32)

    def client(self, user: int, stream_user: int | None = None) -> ClientData:
        """User ``user``'s device, generated now (nothing is kept)."""
        if not 0 <= user < self.n_clients:
            raise ValueError(f"no client {user}: the federation has {self.n_clients} users")
        events = self.world.user_events(user, remember_taste=False)
        device = device_federation(events, self.catalogue, self.seed, f"u{user}")
        device.eval_negatives = self.eval_negatives
        return device.client(0, stream_user=user if stream_user is None else stream_user)

    @functools.cached_property
    def _sizes(self) -> np.ndarray:
        counts = np.empty(self.n_clients, np.int64)
        for u in range(self.n_clients):
            distinct = self.world.user_events(u, remember_taste=False)["item_id"].nunique()
            counts[u] = distinct - 1 if distinct >= MIN_INTERACTIONS else distinct  # test item out
        return counts

    def train_sizes(self) -> np.ndarray:
        """(U,) training examples per client, as :meth:`client` hands them out. Generates
        every user once (streamed, minutes at 100,000 users); needed only where
        example-level settings depend on client data sizes."""
        return self._sizes


@functools.lru_cache(maxsize=2)
def load_lazy_federation(seed: int, users: int, items: int, heterogeneity: float,
                         activity_skew: float) -> LazySyntheticFederation:
    """One per process: every simulated client of a worker shares the world."""
    config = SyntheticConfig(n_users=users, n_items=items, heterogeneity=heterogeneity,
                             activity_skew=activity_skew, seed=seed)
    return LazySyntheticFederation(config, seed)
