"""The SDK serving a statistics release: on-device kNN + popularity, no model."""

from __future__ import annotations

import numpy as np
import pytest

from fedrec.client.recommender import Recommender
from fedrec.client.store import EventStore, SdkInputError
from fedrec.shared import knn
from fedrec.shared.catalogue import load_catalogue
from fedrec.shared.synthetic import SyntheticConfig, generate


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    path = tmp_path_factory.mktemp("cat") / "catalogue.csv"
    generate(SyntheticConfig(n_users=5, n_items=6, seed=2)).items.to_csv(path, index=False)
    return load_catalogue(str(path))


def _release(tmp_path, n_items):
    sim = np.zeros((3, 3))
    sim[0, 2] = sim[2, 0] = 5.0          # head items 0 and 2 go together
    sim[0, 1] = sim[1, 0] = 1.0
    released = knn.Released(np.arange(n_items, dtype=float), np.array([0, 1, 2]), sim)
    path = tmp_path / "release.npz"
    knn.save_released(path, released, knn.KnnSettings(decay=0.9, knn_weight=100.0))
    return path


def test_release_round_trips(tmp_path):
    path = _release(tmp_path, 6)
    released, settings = knn.load_released(path)
    assert settings == knn.KnnSettings(decay=0.9, knn_weight=100.0)
    assert released.head.tolist() == [0, 1, 2] and released.similarity[0, 2] == 5.0


def test_recommender_serves_knn_on_the_devices_own_events(tmp_path, catalogue):
    path = _release(tmp_path, catalogue.n_items)
    ids = [str(i) for i in catalogue.item_ids]
    with EventStore(tmp_path / "d.db") as store:
        rec = Recommender(store, catalogue, release=path)
        # no events: popularity alone (the largest index is the most popular)
        assert rec.recommend(k=1) == [ids[5]]
        store.record(ids[0], "view", timestamp=1)
        # item 0 seen: its strongest neighbour (item 2) now comes first
        assert rec.recommend(k=1) == [ids[2]]


def test_a_release_for_another_catalogue_is_refused(tmp_path, catalogue):
    path = _release(tmp_path, catalogue.n_items + 1)
    with EventStore(tmp_path / "d.db") as store, pytest.raises(SdkInputError, match="catalogue"):
        Recommender(store, catalogue, release=path)


def test_recommender_serves_an_als_release(tmp_path, catalogue):
    """An ALS release (item factors, no similarity) survives save/load and the device
    ranks with its own factor: after item 0, the item sharing its factor direction leads."""
    factors = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])      # head 0, 1, 2
    released = knn.Released(np.zeros(catalogue.n_items), np.array([0, 1, 2]), None,
                            factors=factors)
    settings = knn.KnnSettings(als_weight=100.0, genre_weight=0.0, year_weight=0.0)
    path = tmp_path / "als.npz"
    knn.save_released(path, released, settings)
    loaded, loaded_settings = knn.load_released(path)
    np.testing.assert_array_equal(loaded.factors, factors)
    assert loaded_settings == settings
    ids = [str(i) for i in catalogue.item_ids]
    with EventStore(tmp_path / "d.db") as store:
        rec = Recommender(store, catalogue, release=path)
        store.record(ids[0], "view", timestamp=1)
        assert rec.recommend(k=1) == [ids[2]]     # flat popularity: the factors decide
