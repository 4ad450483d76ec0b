"""Synthetic e-commerce events: the embedded default dataset (no download needed).

The generator is built in two layers so that one user can be produced alone, lazily,
exactly as they appear in the full dataset (a federated client per user, up to
100,000+ users, without holding every user in memory):

- :class:`SyntheticWorld` holds everything that depends only on the config's ``seed``:
  the item catalogue (categories, latent vectors, prices, popularity), the category and
  cluster taste vectors, and the calibrated affinity constants.
- Each user is drawn from its own generator ``np.random.default_rng([seed, USER_STREAM,
  user_index])``: first the profile (cluster, taste noise, activity), then the sessions
  and events. :meth:`SyntheticWorld.user_events` and :func:`generate` run the very same
  per-user code, so user 73,512 generated alone equals its rows in the full frame.

Ground truth. The click probability of user ``u`` on item ``i`` is::

    p(u, i) = sigmoid(a * <taste_u, latent_i> + b * log popularity_i + c)

with ``a = config.affinity_strength``, ``b = 1`` (so that item exposure follows
roughly the configured Zipf exponent) and ``c`` calibrated per world so that the mean
of ``p`` over random user/item pairs is ``config.target_ctr``.

Events. A user has a number of sessions (log-normal activity). In each session the user
views a few distinct items sampled without replacement with probability proportional to
``p(u, i)`` (successive sampling, the same law as Gumbel-top-k). A view becomes a
``cart`` with probability increasing in ``p(u, i)`` and a cart becomes a ``purchase``
likewise; each is its own row, later than the row it came from. Rows of a user are in
non-decreasing timestamp order; the full frame is the users' rows in user order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from fedrec.shared.schema import CATEGORY_SEPARATOR, ITEM_COLUMNS, Dataset, normalize_events

__all__ = ["SyntheticConfig", "SyntheticWorld", "generate", "SYNTHETIC_EVENT_TYPES"]

#: Event types the generator emits (a subset of :data:`fedrec.shared.schema.EVENT_TYPES`).
SYNTHETIC_EVENT_TYPES: tuple[str, ...] = ("view", "cart", "purchase")

# Domain tags mixed into the seed so that the catalogue stream and the per-user streams
# can never coincide (``[seed, tag, ...]`` entropy for ``np.random.default_rng``).
_WORLD_STREAM = 0x57C1D
_USER_STREAM = 0x05E25

# Fixed shape constants of the world (not worth a knob each).
_CONTENT_WEIGHT = 0.8        # item latent = 0.8 * category signal + 0.6 * own noise
_ITEM_NOISE_WEIGHT = 0.6
_CLUSTER_CATEGORIES = 3      # a cluster's centre is built from this many categories
_CLUSTER_CONTENT_WEIGHT = 0.9
_CLUSTER_NOISE_WEIGHT = 0.45
_WITHIN_CLUSTER_SPREAD = 0.5  # personal deviation around the cluster centre
_SECOND_CATEGORY_PROB = 0.35
_POPULARITY_WEIGHT = 1.0      # b in the affinity formula
_CART_FACTOR = 0.3            # P(cart | view) = min(0.9, 0.3 * p)
_PURCHASE_BASE = 0.1          # P(purchase | cart) = min(0.9, 0.1 + 0.4 * p)
_PURCHASE_FACTOR = 0.4
_DAY = 86_400


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic world. Defaults give ~2,000 users, ~1,000 items and ~80k
    events that a collaborative model can learn well beyond popularity.

    Attributes:
        n_users: number of users (federated clients), >= 1.
        n_items: catalogue size, >= 2.
        n_categories: number of item categories, >= 1. Each item has 1 or 2.
        n_clusters: number of latent taste clusters users belong to, >= 1.
        latent_dim: dimension of the taste / item latent space, >= 1.
        heterogeneity: in [0, 1], the non-IID knob. 0: every user has the population
            average taste (all clients draw from one distribution); 1: users sit close to
            their own cluster's taste (strongly non-IID clients).
        activity_skew: >= 0 (at most 3), sigma of the log-normal multiplier on a user's
            expected number of sessions; 0 makes every user equally active.
        mean_sessions: > 0 (at most 1000), mean number of sessions per user.
        views_per_session: >= 1 (at most 100), mean number of distinct items viewed in a
            session (1 + Poisson).
        popularity_exponent: >= 0 (at most 5), Zipf exponent of item base popularity
            (``popularity ∝ rank ** -exponent``); 0 makes all items equally popular.
        affinity_strength: >= 0 (at most 50), weight ``a`` of the taste/item inner
            product in the click-probability logit; 0 leaves only popularity.
        target_ctr: in (0, 0.5], mean ground-truth click probability over random
            user/item pairs (the logit intercept is calibrated to it).
        price_buckets: number of price quantile buckets, >= 1.
        start_timestamp: epoch seconds of the earliest possible session, >= 0.
        seed: non-negative integer; everything is a deterministic function of it.
    """

    n_users: int = 2_000
    n_items: int = 1_000
    n_categories: int = 20
    n_clusters: int = 8
    latent_dim: int = 16
    heterogeneity: float = 0.8
    activity_skew: float = 0.6
    mean_sessions: float = 8.0
    views_per_session: float = 4.0
    popularity_exponent: float = 0.8
    affinity_strength: float = 12.0
    target_ctr: float = 0.05
    price_buckets: int = 5
    start_timestamp: int = 1_700_000_000
    seed: int = 0

    def __post_init__(self) -> None:
        ints = {
            "n_users": (1, None), "n_items": (2, None), "n_categories": (1, None),
            "n_clusters": (1, None), "latent_dim": (1, 1024), "price_buckets": (1, 1000),
            "start_timestamp": (0, 2**40), "seed": (0, None),
        }
        for name, (lo, hi) in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"SyntheticConfig.{name} must be an integer, got {v!r}")
            if v < lo or (hi is not None and v > hi):
                rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
                raise ValueError(f"SyntheticConfig.{name} must be {rng}, got {v}")
        # name: (low, high, low_inclusive)
        floats = {
            "heterogeneity": (0.0, 1.0, True), "activity_skew": (0.0, 3.0, True),
            "mean_sessions": (0.0, 1000.0, False), "views_per_session": (1.0, 100.0, True),
            "popularity_exponent": (0.0, 5.0, True), "affinity_strength": (0.0, 50.0, True),
            "target_ctr": (0.0, 0.5, False),
        }
        for name, (lo, hi, lo_incl) in floats.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"SyntheticConfig.{name} must be a number, got {v!r}")
            v = float(v)
            ok = math.isfinite(v) and (v >= lo if lo_incl else v > lo) and v <= hi
            if not ok:
                rng = f"{'[' if lo_incl else '('}{lo:g}, {hi:g}]"
                raise ValueError(f"SyntheticConfig.{name} must be in {rng}, got {v!r}")

    def replace(self, **changes: object) -> "SyntheticConfig":
        """A copy with some fields changed (validated again)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return SyntheticConfig(**values)  # type: ignore[arg-type]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _parse_ids(ids: object, prefix: str, n: int, what: str) -> np.ndarray:
    """``"u12"``-style ids (or non-negative integer indices) -> int64 index array."""
    arr = np.asarray(ids)
    if arr.dtype.kind in "iu":
        out = arr.astype(np.int64)
        if out.size and (out.min() < 0 or out.max() >= n):
            raise ValueError(f"{what} index out of range [0, {n})")
        return out
    uniq, inv = np.unique(arr.astype(str), return_inverse=True)
    idx = np.empty(len(uniq), dtype=np.int64)
    for k, s in enumerate(uniq):
        body = s[len(prefix):] if s.startswith(prefix) else ""
        if not body.isdigit() or int(body) >= n:
            raise ValueError(f"unknown {what} id {s!r} (expected '{prefix}0'..'{prefix}{n - 1}')")
        idx[k] = int(body)
    return idx[inv].reshape(arr.shape)


class SyntheticWorld:
    """Catalogue, taste clusters and the per-user generator of one config.

    Building it costs O(n_items * latent_dim) plus a small calibration; users are
    produced on demand. All arrays below are read-only.

    Attributes:
        config: the :class:`SyntheticConfig`.
        item_categories: ``list[tuple[int, ...]]``, 1-2 category indices per item
            (primary first).
        item_primary_category: ``(n_items,)`` int.
        item_latent: ``(n_items, latent_dim)`` float.
        item_popularity: ``(n_items,)`` base popularity, max 1 (``rank ** -exponent``).
        item_price: ``(n_items,)`` float, log-normal around a per-category level.
        item_price_bucket: ``(n_items,)`` int in ``[0, price_buckets)`` (catalogue
            price quantiles).
        category_latent: ``(n_categories, latent_dim)``.
        cluster_centres: ``(n_clusters, latent_dim)``, centred when ``n_clusters > 1``;
            ``population_taste`` is their mean (zero then).
        cluster_categories: ``(n_clusters, k)`` the categories each cluster favours.
        intercept: the calibrated logit intercept ``c``.
    """

    def __init__(self, config: SyntheticConfig | None = None) -> None:
        cfg = config if config is not None else SyntheticConfig()
        self.config = cfg
        rng = np.random.default_rng([cfg.seed, _WORLD_STREAM])
        n, d, nc, k = cfg.n_items, cfg.latent_dim, cfg.n_categories, cfg.n_clusters

        # Categories: a latent vector each (norm ~1) and uneven sizes.
        self.category_latent = rng.standard_normal((nc, d)) / math.sqrt(d)
        cat_weights = rng.dirichlet(np.full(nc, 2.0))
        primary = rng.choice(nc, size=n, p=cat_weights)
        has_second = (rng.random(n) < _SECOND_CATEGORY_PROB) & (nc > 1)
        offset = rng.integers(1, max(nc, 2), size=n)  # second != primary
        second = (primary + offset) % nc
        self.item_primary_category = primary
        self.item_categories = [
            (int(p), int(s)) if h else (int(p),)
            for p, s, h in zip(primary, second, has_second)
        ]
        content = self.category_latent[primary].copy()
        content[has_second] += self.category_latent[second[has_second]]
        content /= np.sqrt(1.0 + has_second)[:, None]
        self.item_latent = (_CONTENT_WEIGHT * content + _ITEM_NOISE_WEIGHT
                            * rng.standard_normal((n, d)) / math.sqrt(d))

        # Popularity: Zipf over a random ranking of the catalogue.
        ranks = rng.permutation(n) + 1.0
        self.item_popularity = ranks ** (-cfg.popularity_exponent)
        log_pop = np.log(self.item_popularity)

        # Prices: log-normal around a per-category level, then quantile buckets.
        cat_log_price = rng.normal(math.log(40.0), 0.7, size=nc)
        price = np.exp(cat_log_price[primary] + 0.35 * rng.standard_normal(n))
        self.item_price = np.maximum(np.round(price, 2), 0.5)
        edges = np.quantile(self.item_price, np.linspace(0, 1, cfg.price_buckets + 1)[1:-1])
        self.item_price_bucket = np.searchsorted(edges, self.item_price, side="right")

        # Clusters: each favours a few categories.
        kc = min(_CLUSTER_CATEGORIES, nc)
        self.cluster_categories = np.stack(
            [rng.choice(nc, size=kc, replace=False) for _ in range(k)])
        centres = self.category_latent[self.cluster_categories].sum(axis=1) / math.sqrt(kc)
        self.cluster_centres = (_CLUSTER_CONTENT_WEIGHT * centres + _CLUSTER_NOISE_WEIGHT
                                * rng.standard_normal((k, d)) / math.sqrt(d))
        if k > 1:
            # Centre the clusters: the population-average taste is then neutral, so at
            # heterogeneity 0 every user shares one (popularity-driven) distribution.
            self.cluster_centres -= self.cluster_centres.mean(axis=0)
        self.population_taste = self.cluster_centres.mean(axis=0)

        # Calibrate the intercept c on pseudo-users drawn from the world stream.
        m = 256
        pc = rng.integers(k, size=m)
        peps = rng.standard_normal((m, d)) / math.sqrt(d)
        ptaste = self._taste_from(pc, peps)
        a = cfg.affinity_strength
        base = a * (ptaste @ self.item_latent.T) + _POPULARITY_WEIGHT * log_pop
        lo, hi = -40.0, 40.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if _sigmoid(base + mid).mean() > cfg.target_ctr:
                hi = mid
            else:
                lo = mid
        self.intercept = 0.5 * (lo + hi)
        self._item_bias = _POPULARITY_WEIGHT * log_pop + self.intercept
        self._scaled_latent = a * self.item_latent

        self._item_labels = np.array([f"i{j}" for j in range(n)], dtype=object)
        self._taste_cache: np.ndarray | None = None
        self._taste_known: np.ndarray | None = None
        for arr in (self.category_latent, self.item_latent, self.item_popularity,
                    self.item_price, self.item_price_bucket, self.cluster_centres,
                    self.population_taste, self.cluster_categories,
                    self.item_primary_category, self._item_bias, self._scaled_latent):
            arr.setflags(write=False)

    # ----------------------------------------------------------------- users
    def _taste_from(self, cluster: np.ndarray | int, eps: np.ndarray) -> np.ndarray:
        h = self.config.heterogeneity
        mu = self.population_taste
        return mu + h * ((self.cluster_centres[cluster] - mu) + _WITHIN_CLUSTER_SPREAD * eps)

    def _check_user(self, user_index: int) -> int:
        if isinstance(user_index, bool) or not isinstance(user_index, (int, np.integer)):
            raise ValueError(f"user_index must be an integer, got {user_index!r}")
        if not 0 <= user_index < self.config.n_users:
            raise ValueError(f"user_index must be in [0, {self.config.n_users}), "
                             f"got {user_index}")
        return int(user_index)

    def _user_profile(self, user_index: int):
        """(rng positioned after the profile, cluster, taste, activity multiplier)."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, _USER_STREAM, user_index])
        cluster = int(rng.integers(cfg.n_clusters))
        eps = rng.standard_normal(cfg.latent_dim) / math.sqrt(cfg.latent_dim)
        z = float(rng.standard_normal())
        s = cfg.activity_skew
        activity = math.exp(s * z - 0.5 * s * s)
        return rng, cluster, self._taste_from(cluster, eps), activity

    def user_id(self, user_index: int) -> str:
        return f"u{self._check_user(user_index)}"

    def user_cluster(self, user_index: int) -> int:
        """The taste cluster of one user."""
        return self._user_profile(self._check_user(user_index))[1]

    def user_taste(self, user_index: int) -> np.ndarray:
        """The latent taste vector ``(latent_dim,)`` of one user."""
        return self._user_profile(self._check_user(user_index))[2]

    def _remember_taste(self, user_index: int, taste: np.ndarray) -> None:
        if self._taste_cache is None:
            self._taste_cache = np.zeros((self.config.n_users, self.config.latent_dim))
            self._taste_known = np.zeros(self.config.n_users, dtype=bool)
        self._taste_cache[user_index] = taste
        self._taste_known[user_index] = True

    def _tastes(self, idx: np.ndarray) -> np.ndarray:
        if self._taste_cache is None:
            self._taste_cache = np.zeros((self.config.n_users, self.config.latent_dim))
            self._taste_known = np.zeros(self.config.n_users, dtype=bool)
        for u in np.unique(idx[~self._taste_known[idx]]):
            self._remember_taste(int(u), self._user_profile(int(u))[2])
        return self._taste_cache[idx]

    def _user_arrays(self, user_index: int):
        """One user's events as arrays (item index, timestamp, event code, value),
        sorted by timestamp, plus the user's cluster and taste."""
        cfg = self.config
        rng, cluster, taste, activity = self._user_profile(user_index)
        n = cfg.n_items

        # Sessions: stochastic rounding of the expected count, at least one.
        lam = cfg.mean_sessions * activity
        n_sess = max(1, int(lam) + int(rng.random() < lam - int(lam)))
        k = 1 + rng.poisson(cfg.views_per_session - 1.0, size=n_sess)
        np.minimum(k, n, out=k)
        n_views = int(k.sum())

        # Click probabilities over the catalogue and successive sampling per session.
        # einsum, not BLAS: single-threaded (no thread start-up per user) and the same
        # arithmetic whatever the BLAS thread settings of the calling process.
        logit = np.einsum("nd,d->n", self._scaled_latent, taste) + self._item_bias
        p = _sigmoid(logit)
        cdf = np.cumsum(p)
        m = 2 * k + 4                                   # candidates per session
        sess_of_cand = np.repeat(np.arange(n_sess), m)
        cand = np.searchsorted(cdf, rng.random(int(m.sum())) * cdf[-1], side="right")
        np.minimum(cand, n - 1, out=cand)
        key = sess_of_cand * n + cand
        _, first = np.unique(key, return_index=True)
        first.sort()                                    # first occurrences, draw order
        fs = sess_of_cand[first]
        starts = np.searchsorted(fs, np.arange(n_sess))
        rank = np.arange(len(first)) - starts[fs]
        keep = rank < k[fs]
        items = cand[first[keep]]
        got = np.bincount(fs[keep], minlength=n_sess)
        if (got < k).any():                             # rare: exact Gumbel-top-k
            parts = []
            logp = np.log(p)
            bounds = np.concatenate(([0], np.cumsum(got)))
            for s in range(n_sess):
                if got[s] == k[s]:
                    parts.append(items[bounds[s]:bounds[s + 1]])
                else:
                    g = logp + rng.gumbel(size=n)
                    parts.append(np.argsort(-g, kind="stable")[:k[s]])
            items = np.concatenate(parts)
        sess = np.repeat(np.arange(n_sess), k)
        first_view = np.concatenate(([0], np.cumsum(k)[:-1]))

        # Timestamps: first session within 2 weeks of the start, log-normal gaps
        # between sessions (median ~1.5 days), ~1 minute between views.
        gaps = rng.lognormal(math.log(1.5 * _DAY), 1.0, size=n_sess)
        gaps[0] = rng.uniform(0, 14 * _DAY)
        sess_start = cfg.start_timestamp + np.cumsum(gaps)
        g = 10.0 + rng.exponential(50.0, size=n_views)
        g[first_view] = 0.0
        c = np.cumsum(g)
        view_ts = np.floor(sess_start[sess] + c - c[first_view][sess]).astype(np.int64)

        # Funnel: cart and purchase more likely for higher affinity.
        pv = p[items]
        is_cart = rng.random(n_views) < np.minimum(0.9, _CART_FACTOR * pv)
        cart_items = items[is_cart]
        cart_ts = view_ts[is_cart] + 1 + np.floor(rng.exponential(90.0, cart_items.size)
                                                  ).astype(np.int64)
        pc = pv[is_cart]
        is_buy = rng.random(cart_items.size) < np.minimum(
            0.9, _PURCHASE_BASE + _PURCHASE_FACTOR * pc)
        buy_items = cart_items[is_buy]
        buy_ts = cart_ts[is_buy] + 1 + np.floor(rng.exponential(600.0, buy_items.size)
                                                ).astype(np.int64)

        all_items = np.concatenate((items, cart_items, buy_items))
        all_ts = np.concatenate((view_ts, cart_ts, buy_ts))
        code = np.concatenate((np.zeros(n_views, np.int8), np.ones(cart_items.size, np.int8),
                               np.full(buy_items.size, 2, np.int8)))
        order = np.argsort(all_ts, kind="stable")
        all_items, all_ts, code = all_items[order], all_ts[order], code[order]
        value = np.where(code > 0, self.item_price[all_items], np.nan)
        return all_items, all_ts, code, value, cluster, taste

    def _frame(self, user_labels: np.ndarray, items: np.ndarray, ts: np.ndarray,
               code: np.ndarray, value: np.ndarray) -> pd.DataFrame:
        events = np.array(SYNTHETIC_EVENT_TYPES, dtype=object)
        return normalize_events(pd.DataFrame({
            "user_id": user_labels, "item_id": self._item_labels[items],
            "timestamp": ts, "event": events[code], "value": value,
        }))

    def user_events(self, user_index: int, remember_taste: bool = True) -> pd.DataFrame:
        """One user's events (schema columns), identical to that user's rows in
        :func:`generate` for the same config.

        ``remember_taste`` caches the user's taste for :meth:`affinity`; the cache is an
        (n_users, latent_dim) array, so a caller that only streams users turns it off.
        """
        u = self._check_user(user_index)
        items, ts, code, value, _, taste = self._user_arrays(u)
        if remember_taste:
            self._remember_taste(u, taste)
        labels = np.full(len(items), f"u{u}", dtype=object)
        return self._frame(labels, items, ts, code, value)

    # ----------------------------------------------------------------- items
    def items_table(self, include_price_bucket: bool = False) -> pd.DataFrame:
        """Item attributes with :data:`fedrec.shared.schema.ITEM_COLUMNS`
        (``categories`` like ``"cat3|cat7"``, title like ``"Item 42 (cat3)"``);
        ``include_price_bucket`` adds an int ``price_bucket`` column."""
        n = self.config.n_items
        cats = [CATEGORY_SEPARATOR.join(f"cat{c}" for c in cs) for cs in self.item_categories]
        titles = [f"Item {j} (cat{int(self.item_primary_category[j])})" for j in range(n)]
        df = pd.DataFrame({
            "item_id": self._item_labels.copy(), "categories": cats,
            "price": self.item_price.astype(np.float64), "title": titles,
            "year": np.full(n, np.nan),       # the generator has no release dates
        }, columns=list(ITEM_COLUMNS))
        if include_price_bucket:
            df["price_bucket"] = self.item_price_bucket.astype(np.int64)
        return df

    # -------------------------------------------------------------- affinity
    def affinity(self, user_ids: object, item_ids: object) -> np.ndarray:
        """Ground-truth click probabilities for elementwise (broadcast) user/item pairs.

        ``user_ids`` / ``item_ids``: array-likes of ``"u{index}"`` / ``"i{index}"``
        strings (or integer indices), broadcastable against each other, e.g. shapes
        ``(U, 1)`` and ``(U, K)``. Returns float64 in [0, 1] of the broadcast shape.
        Raises ``ValueError`` for unknown ids.
        """
        cfg = self.config
        uidx = _parse_ids(user_ids, "u", cfg.n_users, "user")
        iidx = _parse_ids(item_ids, "i", cfg.n_items, "item")
        uidx, iidx = np.broadcast_arrays(uidx, iidx)
        tastes = self._tastes(uidx.ravel())
        lat = self._scaled_latent[iidx.ravel()]
        p = _sigmoid(np.einsum("nd,nd->n", tastes, lat) + self._item_bias[iidx.ravel()])
        return p.reshape(uidx.shape)


def generate(config: SyntheticConfig | None = None) -> Dataset:
    """The full synthetic dataset for ``config`` (default :class:`SyntheticConfig`).

    Returns a :class:`fedrec.shared.schema.Dataset` named ``"synthetic"`` with ``events``
    (users ``"u{index}"`` in index order, each user's rows by timestamp), ``items``
    (:meth:`SyntheticWorld.items_table`), ``users`` (``user_id``, ``cluster``) and
    ``affinity`` (:meth:`SyntheticWorld.affinity`).
    """
    cfg = config if config is not None else SyntheticConfig()
    world = SyntheticWorld(cfg)
    n_users = cfg.n_users
    items_l, ts_l, code_l, value_l = [], [], [], []
    counts = np.empty(n_users, dtype=np.int64)
    clusters = np.empty(n_users, dtype=np.int64)
    for u in range(n_users):
        items, ts, code, value, cluster, taste = world._user_arrays(u)
        world._remember_taste(u, taste)
        items_l.append(items)
        ts_l.append(ts)
        code_l.append(code)
        value_l.append(value)
        counts[u] = len(items)
        clusters[u] = cluster
    user_labels = np.array([f"u{u}" for u in range(n_users)], dtype=object)
    events = world._frame(np.repeat(user_labels, counts), np.concatenate(items_l),
                          np.concatenate(ts_l), np.concatenate(code_l),
                          np.concatenate(value_l))
    users = pd.DataFrame({"user_id": user_labels, "cluster": clusters})
    return Dataset(name="synthetic", events=events, items=world.items_table(),
                   users=users, affinity=world.affinity)
