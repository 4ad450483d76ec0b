"""On-device content scores (fedrec.shared.content) and their fusion (fedrec.shared.knn.device_scores)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fedrec.shared import content, knn
from fedrec.shared.content import ItemContent
from fedrec.shared.interactions import build_interactions
from fedrec.shared.schema import Dataset, empty_events


def test_genre_scores_hand_computed():
    cats = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], np.float64)
    # history oldest first: item 0 then item 2; decay 0.5 -> profile 0.5 * (1, 0) + (0, 1)
    got = content.genre_scores(np.array([0, 2]), cats, decay=0.5)
    profile = np.array([0.5, 1.0]) / math.sqrt(1.25)
    expect = [profile[0], (profile[0] + profile[1]) / math.sqrt(2), profile[1], 0.0]
    np.testing.assert_allclose(got, expect)


def test_genre_scores_without_categories_are_zero():
    assert not content.genre_scores(np.array([0]), np.zeros((3, 0)), 0.9).any()
    assert not content.genre_scores(np.array([], np.int64), np.eye(3), 0.9).any()


def test_year_scores_hand_computed():
    years = np.array([1990.0, 1995.0, 1997.0, np.nan, 2000.0])
    # window 2 over the history's known years (1990, then 1997; the NaN item is skipped):
    # the newest two known are 1990 and 1997 -> median 1993.5
    got = content.year_scores(np.array([1, 0, 3, 2]), years, window=2, bandwidth=5.0)
    expect = np.exp(-(((years - 1993.5) / 5.0) ** 2))
    expect[3] = 0.0
    np.testing.assert_allclose(got, expect)
    assert not content.year_scores(np.array([3]), years, 2, 5.0).any()    # no known year
    with pytest.raises(ValueError):
        content.year_scores(np.array([0]), years, 0, 5.0)


def test_content_scores_weights_and_standardisation():
    cats = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.float64)
    years = np.array([1980.0, 1981.0, 2000.0, 2001.0])
    c = ItemContent(cats, years)
    hist = np.array([0])
    genre = content.standardise(content.genre_scores(hist, cats, 0.9))
    year = content.standardise(content.year_scores(hist, years, 5, 3.0))
    got = content.content_scores(hist, c, 0.9, 0.5, 2.0, 5, 3.0)
    np.testing.assert_allclose(got, 0.5 * genre + 2.0 * year)
    assert not content.content_scores(hist, c, 0.9, 0.0, 0.0, 5, 3.0).any()
    # the item sharing the history's genre and decade ranks first, the opposite one last
    assert np.argmax(got) in (0, 1) and np.argmin(got) == 3


def test_item_content_shape_checked():
    with pytest.raises(ValueError):
        ItemContent(np.zeros((3, 2)), np.zeros(4))


def test_years_reach_interactions_from_the_items_table():
    items = pd.DataFrame({"item_id": ["a", "b"], "categories": ["x", "y"],
                          "price": [np.nan, np.nan], "title": ["", ""],
                          "year": [1995.0, np.nan]})
    inter = build_interactions(Dataset("d", empty_events(), items))
    np.testing.assert_array_equal(inter.item_years, [1995.0, np.nan])
    assert ItemContent.of(inter).categories.shape == (2, 2)


def _released(n: int = 4) -> knn.Released:
    return knn.Released(np.array([4.0, 3.0, 2.0, 1.0])[:n], np.arange(n), None)


def test_device_scores_add_content_relative_to_the_largest_weight():
    released = _released()
    c = ItemContent(np.array([[1, 0], [0, 1], [0, 1], [1, 0]], np.float64),
                    np.array([1990.0, 1990.0, 2000.0, 2000.0]))
    hist = np.array([3])
    plain = knn.device_scores(hist, released, knn.KnnSettings())
    settings = knn.KnnSettings(genre_weight=0.5, year_weight=1.0, decay=0.9)
    fused = knn.device_scores(hist, released, settings, c)
    extra = content.content_scores(hist, c, 0.9, 0.5, 1.0, settings.year_window,
                                   settings.year_bandwidth)
    np.testing.assert_allclose(fused, plain + extra)
    # item 0 (more popular) shares the history's genre, item 2 its release year: the year
    # weighs twice the genre, so content narrows item 0's lead from 1.79 to 0.79
    assert (plain[0] - plain[2]) - (fused[0] - fused[2]) == pytest.approx(1.0)
    # without content (or with zero weights) the scores are the release's alone
    np.testing.assert_allclose(knn.device_scores(hist, released, settings), plain)
    # with kNN released at weight 10, the content counts 10 times as much
    sim = np.ones((4, 4)) - np.eye(4)
    with_knn = knn.Released(released.popularity, released.head, sim)
    s10 = knn.KnnSettings(genre_weight=0.5, year_weight=1.0, decay=0.9, knn_weight=10.0)
    base = knn.device_scores(hist, with_knn, knn.KnnSettings(decay=0.9, knn_weight=10.0))
    np.testing.assert_allclose(knn.device_scores(hist, with_knn, s10, c), base + 10 * extra)


def test_device_scores_refuse_content_of_another_catalogue():
    c = ItemContent(np.zeros((3, 1)), np.zeros(3))
    with pytest.raises(ValueError, match="covers 3 items"):
        knn.device_scores(np.array([0]), _released(), knn.KnnSettings(genre_weight=1.0), c)
