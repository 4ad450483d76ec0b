"""One user = one client: the data a client holds, and how a simulation finds it.

In a simulation every worker process loads the dataset once (cached) and hands each
client only its own user's slice, built on demand (lazily) when that client is called.
A client's evaluation candidates are drawn from its own positives and the seed alone
(``fedrec.shared.interactions.user_negatives``), so federated evaluation ranks exactly the
candidates a centralized evaluation of the same model ranks.

An audit run (``example-canaries`` = m) adds one canary interaction to m users' data
(``fedrec.shared.canary.interaction_canary``); every view of the data (clients, train sizes)
includes it, so the server, the devices and the audit see the same federation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import numpy as np

from fedrec.shared import canary
from fedrec.shared.interactions import (
    STREAM_TEST_NEGATIVES,
    STREAM_VAL_NEGATIVES,
    Interactions,
    Split,
    build_interactions,
    leave_last_out,
    user_negatives,
)
from fedrec.shared.schema import Dataset, fingerprint


@dataclass
class ClientData:
    """What one device holds: its own interactions (item indices into the catalogue).

    Attributes:
        user: the user's global index (used only to seed its random streams).
        train_items, train_weights: training positives and their event weights: every
            interaction but the test item (the validation item included: federated
            training selects no model, so it trains on what the centralized NeuMF
            reference is refitted on).
        val_item, test_item: held-out items (-1 when the user has too few interactions).
        test_negatives, val_negatives: the NCF protocol's sampled negatives.
        n_items: catalogue size.
        unavailable: items not in the catalogue yet (scenario ``new-items``): never
            drawn as training negatives, so their rows are not trained before release.
    """

    user: int
    train_items: np.ndarray
    train_weights: np.ndarray
    val_item: int
    test_item: int
    test_negatives: np.ndarray
    val_negatives: np.ndarray
    n_items: int
    unavailable: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def evaluable(self) -> bool:
        return self.test_item >= 0

    def for_validation(self) -> "ClientData":
        """The validation view: train on everything before the validation item and rank
        the validation item against its own sampled negatives (the test item stays
        unseen), so settings can be chosen without looking at the test item. A user
        without a validation item trains on its items and is not evaluated."""
        if self.val_item < 0:
            return replace(self, test_item=-1)
        if self.train_items[-1] != self.val_item:
            raise ValueError(f"user {self.user}: the validation item is not the newest "
                             "training item")
        return replace(self, train_items=self.train_items[:-1],
                       train_weights=self.train_weights[:-1], val_item=-1,
                       test_item=self.val_item, test_negatives=self.val_negatives)

    def seen_for_test(self) -> np.ndarray:
        """Items excluded from full ranking of the test item: train and validation."""
        seen = self.train_items if self.val_item < 0 else np.append(self.train_items, self.val_item)
        return np.unique(seen)


@dataclass
class Federation:
    """A prepared dataset viewed as a federation of one client per user."""

    name: str
    inter: Interactions
    split: Split
    fingerprint: str
    eval_negatives: int = 99
    seed: int = 0
    example_canaries: int = 0

    @property
    def n_clients(self) -> int:
        return self.inter.n_users

    @property
    def n_items(self) -> int:
        return self.inter.n_items

    @property
    def item_features(self) -> np.ndarray:
        """(N, F) item content features, in model order."""
        return self.inter.item_features

    @property
    def training_interactions(self) -> int:
        """Training positives of all clients (validation items excluded)."""
        return int(len(self.split.train_users))

    @functools.cached_property
    def popularity(self) -> np.ndarray:
        """(N,) training positives per item: the popular-items fallback shipped with the
        catalogue (held-out items are not counted)."""
        return np.bincount(self.split.train_items, minlength=self.split.n_items).astype(np.float32)

    def _data_sizes(self) -> np.ndarray:
        s = self.split
        return (np.bincount(s.train_users, minlength=self.n_clients)
                + np.bincount(s.val_users, minlength=self.n_clients))

    def train_sizes(self) -> np.ndarray:
        """(U,) training examples of every client: its train items plus its validation
        item (plus its canary interaction, if any), as :meth:`client` hands them out
        (counted without building the slices)."""
        sizes = self._data_sizes()
        sizes[self.canary_users] += 1
        return sizes

    @functools.cached_property
    def canary_users(self) -> np.ndarray:
        """Sorted users holding an example-level canary interaction (none: empty)."""
        return canary.interaction_users(self.seed, self._data_sizes(), self.example_canaries)

    def interaction_canary(self, user: int) -> canary.InteractionCanary | None:
        """User ``user``'s canary interaction (None: the user has none)."""
        pos = int(np.searchsorted(self.canary_users, user))
        if pos == len(self.canary_users) or self.canary_users[pos] != user:
            return None
        data = self._client(user, None)
        return canary.interaction_canary(
            self.seed, user, np.append(data.train_items, data.test_item), self.n_items,
            avoid=np.concatenate([data.test_negatives, data.val_negatives]))

    def client(self, user: int, stream_user: int | None = None) -> ClientData:
        """The slice of user ``user`` (built now, not stored).

        ``stream_user`` replaces the user index where it seeds random streams and names
        the device (a deployed device holds user 0 of its own one-user federation).
        """
        if not 0 <= user < self.n_clients:
            raise ValueError(f"no client {user}: the federation has {self.n_clients} users")
        data = self._client(user, stream_user)
        slot = self.interaction_canary(user)
        return data if slot is None else with_interaction(data, slot.inserted)

    def _client(self, user: int, stream_user: int | None) -> ClientData:
        """The user's own slice (no canary interaction)."""
        s = self.split
        seed_user = user if stream_user is None else stream_user
        train = s.train_users == user
        val = np.flatnonzero(s.val_users == user)
        test = np.flatnonzero(s.test_users == user)
        val_item = int(s.val_items[val[0]]) if len(val) else -1
        test_item = int(s.test_items[test[0]]) if len(test) else -1
        positives = np.unique(np.concatenate(
            [s.train_items[train], [i for i in (val_item, test_item) if i >= 0]]).astype(np.int64))

        def negs(stream: int) -> np.ndarray:
            if test_item < 0:
                return np.zeros(0, np.int64)
            return user_negatives(positives, s.n_items, self.eval_negatives, self.seed, seed_user,
                                  stream)

        items, weights = s.train_items[train], s.train_weights[train]
        if len(val):
            items = np.append(items, val_item)
            weights = np.append(weights, s.val_weights[val[0]])
        return ClientData(seed_user, items, weights, val_item, test_item,
                          negs(STREAM_TEST_NEGATIVES), negs(STREAM_VAL_NEGATIVES), s.n_items)


def with_interaction(data: ClientData, item: int) -> ClientData:
    """``data`` with one more training positive ``item`` (weight 1), placed second newest
    when the newest is the validation item (which must stay last), else newest."""
    at = len(data.train_items) - (1 if data.val_item >= 0 else 0)
    return replace(data, train_items=np.insert(data.train_items, at, item),
                   train_weights=np.insert(data.train_weights, at, np.float32(1.0)))


def federation_from_dataset(dataset: Dataset, seed: int, example_canaries: int = 0) -> Federation:
    inter = build_interactions(dataset)
    return Federation(dataset.name, inter, leave_last_out(inter), fingerprint(dataset), seed=seed,
                      example_canaries=example_canaries)


@functools.lru_cache(maxsize=2)
def load_federation(dataset: str, seed: int, synthetic_users: int, synthetic_items: int,
                    heterogeneity: float = 0.8, activity_skew: float = 0.6,
                    example_canaries: int = 0) -> Federation:
    """Load and prepare once per process (every simulated client of a worker shares it).

    ``heterogeneity`` and ``activity_skew`` are the synthetic generator's non-IID and
    activity-skew knobs (``fedrec.shared.synthetic.SyntheticConfig``); real data ignores them.
    ``example_canaries``: users that get a canary interaction (audit runs).
    """
    if dataset == "synthetic":
        from fedrec.shared.synthetic import SyntheticConfig, generate

        data = generate(SyntheticConfig(n_users=synthetic_users, n_items=synthetic_items,
                                        heterogeneity=heterogeneity,
                                        activity_skew=activity_skew, seed=seed))
    else:
        from fedrec.shared.datasets import load_dataset

        data = load_dataset(dataset, seed=seed)
    return federation_from_dataset(data, seed, example_canaries)


def federation_of(cfg) -> Federation:
    """The federation a run config (``fedrec.shared.config.RunConfig``) names: with
    ``lazy-clients``, a :class:`fedrec.shared.lazy_synthetic.LazySyntheticFederation` (same
    interface for the server and the clients; no ``inter``/``split``)."""
    if cfg.lazy_clients:
        from fedrec.shared.lazy_synthetic import load_lazy_federation

        return load_lazy_federation(cfg.seed, cfg.synthetic_users, cfg.synthetic_items,
                                    cfg.synthetic_heterogeneity, cfg.synthetic_activity_skew)
    return load_federation(cfg.dataset, cfg.seed, cfg.synthetic_users, cfg.synthetic_items,
                           cfg.synthetic_heterogeneity, cfg.synthetic_activity_skew,
                           cfg.example_canaries)
