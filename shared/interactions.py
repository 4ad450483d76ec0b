"""From schema events to an indexed implicit-feedback table and per-user splits.

Every user is later one federated client, so everything here is *per user*: the split
(leave-last-out by time) and the sampled negatives of a user depend only on that user's
own events and the seed, never on other users. A client can therefore rebuild exactly the
evaluation set that a centralized evaluation uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fedrec.shared.schema import CATEGORY_SEPARATOR, EVENT_WEIGHTS, Dataset

#: Stream tags mixed into per-user seeds so that validation and test negatives and
#: training negatives never share random numbers.
STREAM_TEST_NEGATIVES = 1
STREAM_VAL_NEGATIVES = 2
STREAM_TRAIN_NEGATIVES = 3


@dataclass
class Interactions:
    """Unique (user, item) positives with contiguous indices.

    Attributes:
        user_ids: (U,) original user id of each user index.
        item_ids: (N,) original item id of each item index.
        users, items: (E,) int64 indices of each positive pair (one row per pair).
        timestamps: (E,) int64 seconds of the *first* event on the pair (when the user
            discovered the item: the order that "predict the next item" follows).
        weights: (E,) float32 strongest event weight seen on the pair
            (:data:`fedrec.shared.schema.EVENT_WEIGHTS`). Known simplification: the strongest
            event may come later than the user's held-out items (a view before the test
            item, a purchase after it weighs 3); only the weight, never an item, leaks.
        item_features: (N, F) float32 content features (multi-hot categories, one-hot
            price bucket); F may be 0.
        feature_names: names of the F feature columns.
        item_categories: (N, C) float32 multi-hot categories (diversity metrics).
        item_years: (N,) float64 release year of each item, NaN where unknown (public
            catalogue metadata a device may score with: ``fedrec.shared.content``).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    weights: np.ndarray
    item_features: np.ndarray
    feature_names: list[str]
    item_categories: np.ndarray
    item_years: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def item_popularity(self, mask: np.ndarray | None = None) -> np.ndarray:
        """(N,) number of users with a positive on each item (optionally on a row mask)."""
        items = self.items if mask is None else self.items[mask]
        return np.bincount(items, minlength=self.n_items).astype(np.int64)


def build_interactions(dataset: Dataset, price_buckets: int = 5,
                       item_order: np.ndarray | None = None) -> Interactions:
    """Collapse events to unique (user, item) positives and index them.

    Users and items are indexed in order of first appearance in the events table, so the
    indexing is deterministic for a given file. Items that appear only in the item table
    (never interacted with) are appended after them: they can still be recommended
    through the content tower. ``item_order`` fixes the item index instead (a deployed
    device indexes items as the shared catalogue does); every event's item must be in it.
    """
    ev = dataset.events
    weight = ev["event"].map(EVENT_WEIGHTS).astype(np.float32).to_numpy()
    user_codes, user_ids = pd.factorize(ev["user_id"], sort=False)
    if item_order is not None:
        item_ids = np.asarray(item_order, dtype=object)
        item_codes = pd.Index(item_ids.astype(str)).get_indexer(ev["item_id"].astype(str))
        if (item_codes < 0).any():
            raise ValueError(f"item {ev['item_id'].iloc[int(np.argmin(item_codes))]!r} is not "
                             "in the item order")
    else:
        item_codes, item_ids = pd.factorize(ev["item_id"], sort=False)
        item_ids = np.asarray(item_ids, dtype=object)
    if dataset.items is not None and item_order is None:
        extra = dataset.items.loc[~dataset.items["item_id"].isin(item_ids), "item_id"]
        item_ids = np.concatenate([item_ids, extra.astype(str).to_numpy(dtype=object)])
    frame = pd.DataFrame({
        "u": user_codes.astype(np.int64), "i": item_codes.astype(np.int64),
        "t": ev["timestamp"].to_numpy(np.int64), "w": weight,
        "order": np.arange(len(ev), dtype=np.int64),
    })
    pairs = frame.groupby(["u", "i"], sort=False).agg(
        t=("t", "min"), w=("w", "max"), order=("order", "min")).reset_index()
    pairs = pairs.sort_values(["u", "t", "order"], kind="stable")
    categories, cat_names = _category_matrix(dataset.items, item_ids)
    price = _price_bucket_matrix(dataset.items, item_ids, price_buckets)
    features = np.concatenate([categories, price], axis=1).astype(np.float32)
    names = [f"cat:{c}" for c in cat_names] + [f"price_bucket:{b}" for b in range(price.shape[1])]
    return Interactions(
        user_ids=np.asarray(user_ids, dtype=object), item_ids=item_ids,
        users=pairs["u"].to_numpy(np.int64), items=pairs["i"].to_numpy(np.int64),
        timestamps=pairs["t"].to_numpy(np.int64), weights=pairs["w"].to_numpy(np.float32),
        item_features=features, feature_names=names, item_categories=categories,
        item_years=_year_vector(dataset.items, item_ids),
    )


def _aligned_items(items: pd.DataFrame | None, item_ids: np.ndarray) -> pd.DataFrame | None:
    if items is None or len(items) == 0:
        return None
    table = items.drop_duplicates("item_id").set_index(items["item_id"].drop_duplicates().astype(str))
    return table.reindex(item_ids.astype(str))


def _year_vector(items: pd.DataFrame | None, item_ids: np.ndarray) -> np.ndarray:
    """(N,) release years aligned to ``item_ids`` (NaN: unknown)."""
    table = _aligned_items(items, item_ids)
    if table is None or "year" not in table:
        return np.full(len(item_ids), np.nan)
    return pd.to_numeric(table["year"], errors="coerce").to_numpy(np.float64)


def _category_matrix(items: pd.DataFrame | None, item_ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    table = _aligned_items(items, item_ids)
    if table is None or "categories" not in table:
        return np.zeros((len(item_ids), 0), np.float32), []
    lists = [str(c).split(CATEGORY_SEPARATOR) if isinstance(c, str) and c else []
             for c in table["categories"].to_numpy()]
    names = sorted({c for cats in lists for c in cats})
    col = {c: j for j, c in enumerate(names)}
    mat = np.zeros((len(item_ids), len(names)), np.float32)
    for row, cats in enumerate(lists):
        mat[row, [col[c] for c in cats]] = 1.0
    return mat, names


def _price_bucket_matrix(items: pd.DataFrame | None, item_ids: np.ndarray, buckets: int) -> np.ndarray:
    """One-hot price quantile bucket; all-zero rows for items without a price."""
    table = _aligned_items(items, item_ids)
    if table is None or "price" not in table or buckets < 1:
        return np.zeros((len(item_ids), 0), np.float32)
    price = pd.to_numeric(table["price"], errors="coerce").to_numpy(np.float64)
    known = np.isfinite(price)
    if not known.any():
        return np.zeros((len(item_ids), 0), np.float32)
    edges = np.quantile(price[known], np.linspace(0, 1, buckets + 1)[1:-1])
    out = np.zeros((len(item_ids), buckets), np.float32)
    out[np.flatnonzero(known), np.searchsorted(edges, price[known], side="right")] = 1.0
    return out


@dataclass
class Split:
    """Leave-last-out split of one :class:`Interactions` table.

    ``train_*`` are row arrays of the training positives; ``val`` and ``test`` hold one
    held-out item per evaluated user (the second-last and last item by time).
    """

    n_users: int
    n_items: int
    train_users: np.ndarray
    train_items: np.ndarray
    train_weights: np.ndarray
    val_users: np.ndarray
    val_items: np.ndarray
    val_weights: np.ndarray
    test_users: np.ndarray
    test_items: np.ndarray

    def train_matrix(self) -> sp.csr_matrix:
        """(U, N) binary CSR matrix of training positives."""
        data = np.ones(len(self.train_users), np.float32)
        return sp.csr_matrix((data, (self.train_users, self.train_items)),
                             shape=(self.n_users, self.n_items))

    def seen_matrix(self, include_val: bool) -> sp.csr_matrix:
        """Items to exclude from full ranking: train (and val, when ranking the test item)."""
        users, items = [self.train_users], [self.train_items]
        if include_val:
            users.append(self.val_users)
            items.append(self.val_items)
        u, i = np.concatenate(users), np.concatenate(items)
        return sp.csr_matrix((np.ones(len(u), np.float32), (u, i)),
                             shape=(self.n_users, self.n_items))

    def with_validation_in_train(self) -> "Split":
        """The split used for the final test: validation items join the training data.

        Validation exists to choose hyper-parameters (such as the number of epochs); once
        chosen, a model is trained on everything but the test item, as in the NCF
        protocol. The validation arrays are kept, but they now overlap training.
        """
        return Split(
            n_users=self.n_users, n_items=self.n_items,
            train_users=np.concatenate([self.train_users, self.val_users]),
            train_items=np.concatenate([self.train_items, self.val_items]),
            train_weights=np.concatenate([self.train_weights, self.val_weights]),
            val_users=self.val_users, val_items=self.val_items, val_weights=self.val_weights,
            test_users=self.test_users, test_items=self.test_items,
        )

    def positives_of(self, user: int) -> np.ndarray:
        """Sorted items the user has any positive on (train, val and test)."""
        parts = [self.train_items[self.train_users == user],
                 self.val_items[self.val_users == user],
                 self.test_items[self.test_users == user]]
        return np.unique(np.concatenate(parts))


#: Fewest positives a user needs to be evaluated: one to train on, a validation and a
#: test item. Users with fewer keep everything in train.
MIN_INTERACTIONS = 3


def rows_from_end(users: np.ndarray, n_users: int) -> np.ndarray:
    """Each row's position among its user's rows, counted from the user's last row.

    Rows keep array order within a user (time order in :class:`Interactions` and in a
    :class:`Split`, whose validation rows come after the training rows), so 0 marks a
    user's most recent row, 1 the one before, and so on.
    """
    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    order = np.argsort(users, kind="stable")
    pos = np.empty(len(users), np.int64)
    pos[order] = np.arange(len(users)) - np.repeat(starts, counts)
    return counts[users] - 1 - pos


def leave_last_out(inter: Interactions, min_interactions: int = MIN_INTERACTIONS) -> Split:
    """Per-user split by time: last item -> test, second-last -> validation, rest -> train.

    Rows are already ordered by (user, first timestamp, file order), so ties in the
    timestamp keep the order of the input file. Users with fewer than
    ``min_interactions`` positives keep everything in train and are not evaluated.
    """
    if min_interactions < 3:
        raise ValueError("min_interactions must be at least 3 (train, validation, test)")
    users = inter.users
    counts = np.bincount(users, minlength=inter.n_users)
    from_end = rows_from_end(users, inter.n_users)
    evaluated = counts[users] >= min_interactions
    test = evaluated & (from_end == 0)
    val = evaluated & (from_end == 1)
    train = ~(test | val)
    return Split(
        n_users=inter.n_users, n_items=inter.n_items,
        train_users=users[train], train_items=inter.items[train],
        train_weights=inter.weights[train],
        val_users=users[val], val_items=inter.items[val], val_weights=inter.weights[val],
        test_users=users[test], test_items=inter.items[test],
    )


def user_negatives(positives: np.ndarray, n_items: int, n: int, seed: int,
                   user: int, stream: int) -> np.ndarray:
    """``n`` distinct items the user never interacted with, deterministic per user.

    The generator is seeded by ``(seed, stream, user)`` only, so a federated client that
    knows its own positives draws exactly the negatives a centralized evaluation draws.
    If the user has touched so many items that fewer than ``n`` remain, all remaining
    items are returned.
    """
    available = n_items - len(positives)
    if available <= n:
        return np.setdiff1d(np.arange(n_items), positives)
    rng = np.random.default_rng([seed, stream, user])
    chosen = np.empty(0, np.int64)
    while len(chosen) < n:
        draw = rng.integers(0, n_items, size=2 * n)
        draw = draw[~np.isin(draw, positives)]
        _, first = np.unique(draw, return_index=True)
        draw = draw[np.sort(first)]
        draw = draw[~np.isin(draw, chosen)]
        chosen = np.concatenate([chosen, draw])
    return chosen[:n]


def evaluation_negatives(split: Split, n: int = 99, seed: int = 0,
                         which: str = "test") -> np.ndarray:
    """(U_eval, n) sampled negatives for each user in ``split.test_users`` (or val).

    The NCF protocol: 99 items the user never interacted with (in any split). A user who
    has touched nearly the whole catalogue gets fewer; the row is padded with ``-1``,
    which evaluation scores as ``-inf`` (a padded slot never outranks anything).
    """
    users = split.test_users if which == "test" else split.val_users
    stream = STREAM_TEST_NEGATIVES if which == "test" else STREAM_VAL_NEGATIVES
    positives = _positives_by_user(split)
    out = np.full((len(users), n), -1, np.int64)
    for row, u in enumerate(users):
        neg = user_negatives(positives[u], split.n_items, n, seed, int(u), stream)
        out[row, :len(neg)] = neg
    return out


def _positives_by_user(split: Split) -> list[np.ndarray]:
    users = np.concatenate([split.train_users, split.val_users, split.test_users])
    items = np.concatenate([split.train_items, split.val_items, split.test_items])
    order = np.lexsort((items, users))
    users, items = users[order], items[order]
    bounds = np.searchsorted(users, np.arange(split.n_users + 1))
    return [np.unique(items[bounds[u]:bounds[u + 1]]) for u in range(split.n_users)]


def sample_training_negatives(train: sp.csr_matrix, users: np.ndarray, k: int,
                              rng: np.random.Generator, max_tries: int = 20) -> np.ndarray:
    """(len(users), k) uniform negatives for training rows, never a training positive.

    Vectorized rejection sampling: draw uniformly, redraw only the collisions. After
    ``max_tries`` rounds the few rows left (users who touched almost the whole catalogue)
    keep a positive rather than loop forever; with realistic data none remain.
    """
    n_items = train.shape[1]
    out = rng.integers(0, n_items, size=(len(users), k))
    rows = np.repeat(users, k)
    bad = np.flatnonzero(_is_positive(train, rows, out.ravel()))
    for _ in range(max_tries):
        if len(bad) == 0:
            break
        flat = out.reshape(-1)
        flat[bad] = rng.integers(0, n_items, size=len(bad))
        bad = bad[_is_positive(train, rows[bad], flat[bad])]
    return out


def _is_positive(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Vectorized membership test ``matrix[rows, cols] != 0`` for a binary CSR matrix.

    Uses sorted ``row * n_cols + col`` keys and a binary search: far faster than sparse
    fancy indexing for millions of lookups.
    """
    matrix = matrix.tocsr()
    matrix.sort_indices()
    n_cols = matrix.shape[1]
    row_of = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    keys = row_of * n_cols + matrix.indices.astype(np.int64)
    query = rows.astype(np.int64) * n_cols + cols.astype(np.int64)
    pos = np.searchsorted(keys, query)
    pos[pos == len(keys)] = 0
    return (len(keys) > 0) & (keys[pos] == query) if len(keys) else np.zeros(len(query), bool)
