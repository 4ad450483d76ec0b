"""Tests of the synthetic e-commerce generator (small configs, fast)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from fedrec.shared.schema import EVENT_COLUMNS, EVENT_TYPES, ITEM_COLUMNS, Dataset
from fedrec.shared.synthetic import SYNTHETIC_EVENT_TYPES, SyntheticConfig, SyntheticWorld, generate

SMALL = SyntheticConfig(n_users=300, n_items=200, n_categories=8, n_clusters=4, seed=7)


@pytest.fixture(scope="module")
def small() -> Dataset:
    return generate(SMALL)


def _user_rows(events: pd.DataFrame, u: int) -> pd.DataFrame:
    return events[events["user_id"] == f"u{u}"].reset_index(drop=True)


def _category_entropy(ds: Dataset) -> float:
    primary = ds.items.set_index("item_id")["categories"].str.split("|").str[0]
    ev = ds.events.assign(cat=ds.events["item_id"].map(primary))
    counts = ev.groupby(["user_id", "cat"]).size().unstack(fill_value=0).to_numpy(float)
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return float(h.mean())


def _events_cv(ds: Dataset) -> float:
    n = ds.events.groupby("user_id").size()
    return float(n.std() / n.mean())


def _top_decile_share(ds: Dataset) -> float:
    vc = ds.events["item_id"].value_counts()
    vc = vc.reindex(ds.items["item_id"], fill_value=0).sort_values(ascending=False)
    top = max(1, len(vc) // 10)
    return float(vc.iloc[:top].sum() / vc.sum())


# ------------------------------------------------------------------ determinism

def test_same_seed_same_frame(small):
    again = generate(SMALL)
    pd.testing.assert_frame_equal(small.events, again.events)
    pd.testing.assert_frame_equal(small.items, again.items)
    pd.testing.assert_frame_equal(small.users, again.users)


def test_different_seed_different_frame(small):
    other = generate(SMALL.replace(seed=8))
    assert not small.events.equals(other.events)
    assert not small.items.equals(other.items)


def test_lazy_user_equals_full(small):
    world = SyntheticWorld(SMALL)
    for u in (0, 1, 137, SMALL.n_users - 1):
        pd.testing.assert_frame_equal(world.user_events(u), _user_rows(small.events, u))
    # the full frame is exactly the users' lazy frames, in user order
    assert small.events["user_id"].iloc[0] == "u0"
    assert small.events["user_id"].iloc[-1] == f"u{SMALL.n_users - 1}"


def test_lazy_independent_of_order_and_of_other_users():
    cfg = SMALL.replace(n_users=50)
    a = SyntheticWorld(cfg)
    b = SyntheticWorld(cfg)
    later = a.user_events(42)
    a.user_events(3)
    pd.testing.assert_frame_equal(later, b.user_events(42))
    pd.testing.assert_frame_equal(a.user_events(42), later)


def test_lazy_equals_full_when_sampling_falls_back_to_gumbel():
    # a tiny, very peaked catalogue forces sessions with fewer distinct candidates
    cfg = SyntheticConfig(n_users=40, n_items=6, n_categories=2, n_clusters=2,
                          views_per_session=6, affinity_strength=30, seed=3)
    ds = generate(cfg)
    world = SyntheticWorld(cfg)
    for u in range(cfg.n_users):
        pd.testing.assert_frame_equal(world.user_events(u), _user_rows(ds.events, u))
    views = ds.events[ds.events["event"] == "view"]
    assert len(views) > 0


def test_user_taste_and_cluster_match_generate(small):
    world = SyntheticWorld(SMALL)
    for u in (0, 5, 299):
        assert world.user_cluster(u) == small.users["cluster"].iloc[u]
        assert world.user_taste(u).shape == (SMALL.latent_dim,)
    np.testing.assert_array_equal(world.user_taste(5), SyntheticWorld(SMALL).user_taste(5))


# ------------------------------------------------------------------ schema

def test_schema_dtypes_and_event_types(small):
    ev = small.events
    assert small.name == "synthetic"
    assert tuple(ev.columns) == EVENT_COLUMNS
    assert ev["timestamp"].dtype == np.int64
    assert ev["value"].dtype == np.float64
    assert all(isinstance(x, str) for x in ev["user_id"].iloc[:50])
    assert all(isinstance(x, str) for x in ev["item_id"].iloc[:50])
    kinds = set(ev["event"].unique())
    assert kinds <= set(SYNTHETIC_EVENT_TYPES) <= set(EVENT_TYPES)
    assert kinds == {"view", "cart", "purchase"}
    assert ev["user_id"].str.fullmatch(r"u\d+").all()
    assert ev["item_id"].str.fullmatch(r"i\d+").all()
    assert (ev["timestamp"] >= SMALL.start_timestamp).all()
    # value: price on cart/purchase, NaN on views
    views = ev["event"] == "view"
    assert ev.loc[views, "value"].isna().all()
    prices = small.items.set_index("item_id")["price"]
    np.testing.assert_allclose(ev.loc[~views, "value"],
                               ev.loc[~views, "item_id"].map(prices).to_numpy())
    # every user has at least one event
    assert ev["user_id"].nunique() == SMALL.n_users


def test_items_and_users_tables(small):
    items, users = small.items, small.users
    assert tuple(items.columns) == ITEM_COLUMNS
    assert len(items) == SMALL.n_items
    assert list(items["item_id"]) == [f"i{j}" for j in range(SMALL.n_items)]
    assert items["categories"].str.fullmatch(r"cat\d+(\|cat\d+)?").all()
    multi = items["categories"].str.contains("|", regex=False)
    assert 0 < multi.sum() < len(items)
    two = items.loc[multi, "categories"].str.split("|")
    assert (two.str[0] != two.str[1]).all()
    for title, cats in zip(items["title"], items["categories"]):
        m = re.fullmatch(r"Item (\d+) \((cat\d+)\)", title)
        assert m and m.group(2) == cats.split("|")[0]
    assert (items["price"] > 0).all() and items["price"].dtype == np.float64
    world = SyntheticWorld(SMALL)
    with_bucket = world.items_table(include_price_bucket=True)
    assert set(with_bucket["price_bucket"]) == set(range(SMALL.price_buckets))
    order = np.argsort(with_bucket["price"].to_numpy(), kind="stable")
    assert (np.diff(with_bucket["price_bucket"].to_numpy()[order]) >= 0).all()
    assert list(users.columns) == ["user_id", "cluster"]
    assert list(users["user_id"]) == [f"u{u}" for u in range(SMALL.n_users)]
    assert users["cluster"].between(0, SMALL.n_clusters - 1).all()
    assert users["cluster"].nunique() == SMALL.n_clusters


def test_timestamps_and_funnel_order(small):
    ev = small.events
    ts = ev["timestamp"].to_numpy()
    same_user = ev["user_id"].to_numpy()[1:] == ev["user_id"].to_numpy()[:-1]
    assert (np.diff(ts)[same_user] >= 0).all()
    # each cart follows an earlier view of the same item, each purchase an earlier cart
    for uid, rows in ev.groupby("user_id", sort=False):
        views: dict[str, list[int]] = {}
        carts: dict[str, list[int]] = {}
        n_carts: dict[str, int] = {}
        n_buys: dict[str, int] = {}
        for item, t, kind in zip(rows["item_id"], rows["timestamp"], rows["event"]):
            if kind == "view":
                views.setdefault(item, []).append(t)
            elif kind == "cart":
                n_carts[item] = n_carts.get(item, 0) + 1
                assert len(views.get(item, [])) >= n_carts[item], (uid, item)
                assert min(views[item]) < t
                carts.setdefault(item, []).append(t)
            else:
                n_buys[item] = n_buys.get(item, 0) + 1
                assert len(carts.get(item, [])) >= n_buys[item], (uid, item)
                assert min(carts[item]) < t


def test_funnel_rates_are_plausible(small):
    counts = small.events["event"].value_counts()
    assert counts["view"] > counts["cart"] > counts["purchase"] > 0


# ------------------------------------------------------------------ knobs

def test_heterogeneity_concentrates_categories():
    base = SyntheticConfig(n_users=250, n_items=200, n_categories=10, n_clusters=4, seed=1)
    iid = _category_entropy(generate(base.replace(heterogeneity=0.0)))
    non_iid = _category_entropy(generate(base.replace(heterogeneity=1.0)))
    assert non_iid < iid - 0.2


def test_heterogeneity_zero_gives_identical_tastes():
    world = SyntheticWorld(SMALL.replace(heterogeneity=0.0))
    np.testing.assert_allclose(world.user_taste(0), world.user_taste(1))
    np.testing.assert_allclose(world.user_taste(0), world.population_taste)


def test_activity_skew_spreads_events_per_user():
    base = SyntheticConfig(n_users=300, n_items=150, seed=2)
    flat = _events_cv(generate(base.replace(activity_skew=0.0)))
    skewed = _events_cv(generate(base.replace(activity_skew=1.2)))
    assert skewed > flat + 0.3


def test_activity_skew_zero_equal_sessions():
    cfg = SyntheticConfig(n_users=20, n_items=100, activity_skew=0.0, mean_sessions=5,
                          views_per_session=1, seed=4)
    ds = generate(cfg)
    n_views = ds.events[ds.events["event"] == "view"].groupby("user_id").size()
    assert (n_views == 5).all()


def test_popularity_exponent_concentrates_events():
    base = SyntheticConfig(n_users=250, n_items=300, seed=3)
    flat = _top_decile_share(generate(base.replace(popularity_exponent=0.0)))
    steep = _top_decile_share(generate(base.replace(popularity_exponent=1.5)))
    assert steep > flat + 0.15


# ------------------------------------------------------------------ affinity

def test_affinity_range_shape_and_cluster_preference(small):
    world = SyntheticWorld(SMALL)
    users = np.array([f"u{u}" for u in range(SMALL.n_users)])[:, None]
    items = np.array([f"i{j}" for j in range(SMALL.n_items)])[None, :]
    a = small.affinity(users, items)
    assert a.shape == (SMALL.n_users, SMALL.n_items)
    assert a.dtype == np.float64 and (a >= 0).all() and (a <= 1).all()
    assert 0.01 < a.mean() < 0.15
    # same values from a fresh world (lazy tastes) and from integer indices
    np.testing.assert_allclose(world.affinity(users[:7], items), a[:7])
    np.testing.assert_allclose(
        world.affinity(np.arange(7)[:, None], np.arange(SMALL.n_items)[None]), a[:7])
    # elementwise pairs
    pair = small.affinity(["u3", "u4"], ["i10", "i11"])
    np.testing.assert_allclose(pair, [a[3, 10], a[4, 11]])
    # own-cluster items (primary category favoured by the cluster) score higher
    primary = world.item_primary_category
    own, other = [], []
    for u in range(SMALL.n_users):
        mine = np.isin(primary, world.cluster_categories[small.users["cluster"].iloc[u]])
        own.append(a[u, mine].mean())
        other.append(a[u, ~mine].mean())
    assert np.mean(own) > 1.5 * np.mean(other)


def test_affinity_rejects_unknown_ids(small):
    with pytest.raises(ValueError, match="u300"):
        small.affinity(["u300"], ["i0"])
    with pytest.raises(ValueError, match="x1"):
        small.affinity(["u0"], ["x1"])


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize("field, value", [
    ("n_users", 0), ("n_users", 2.5), ("n_users", True), ("n_items", 1),
    ("n_categories", 0), ("n_clusters", 0), ("latent_dim", 0), ("price_buckets", 0),
    ("start_timestamp", -1), ("seed", -1), ("seed", "0"),
    ("heterogeneity", -0.1), ("heterogeneity", 1.5), ("heterogeneity", float("nan")),
    ("activity_skew", -1.0), ("mean_sessions", 0.0), ("views_per_session", 0.5),
    ("popularity_exponent", -0.1), ("affinity_strength", -1.0), ("target_ctr", 0.0),
    ("target_ctr", 0.9),
])
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        SyntheticConfig(**{field: value})


def test_world_rejects_bad_user_index():
    world = SyntheticWorld(SMALL)
    with pytest.raises(ValueError, match="user_index"):
        world.user_events(SMALL.n_users)
    with pytest.raises(ValueError, match="user_index"):
        world.user_events(-1)
