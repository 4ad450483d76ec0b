"""On-device content scores from public catalogue metadata: genres and release years.

A device knows the catalogue (every item's categories and release year: public) and its
own history (private, and never sent). Scoring items by how well they match that history
costs no privacy, so it can be fused with the scores the noisy releases give
(``fedrec.shared.knn.device_scores``). Two signals, each standardised over the catalogue:

* **genre profile**: cosine between an item's (L2-normalised) multi-hot categories and the
  device's profile, the recency-weighted sum of its items' normalised categories (the
  r-th newest weighs ``decay ** r``).
* **release year**: ``exp(-((year - m) / bandwidth)^2)`` with m the median release year of
  the device's ``window`` newest items: people who just watched recent releases watch
  recent releases next, and people on an old-films streak stay on it.

Items without a known year, and catalogues without categories, score 0 on that signal
after standardisation (a constant). The weights live in ``KnnSettings``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ItemContent:
    """Public metadata of the catalogue in model order.

    Attributes:
        categories: (N, C) multi-hot categories (C may be 0).
        years: (N,) release years, NaN where unknown.
    """

    categories: np.ndarray
    years: np.ndarray

    def __post_init__(self) -> None:
        if self.categories.ndim != 2 or self.years.shape != (self.categories.shape[0],):
            raise ValueError(f"categories must be (N, C) and years (N,), got "
                             f"{self.categories.shape} and {self.years.shape}")

    @property
    def n_items(self) -> int:
        return len(self.years)

    @classmethod
    def of(cls, inter) -> "ItemContent":
        """From ``fedrec.shared.interactions.Interactions`` (or anything with ``item_categories``
        and ``item_years``)."""
        return cls(np.asarray(inter.item_categories, np.float64),
                   np.asarray(inter.item_years, np.float64))


def standardise(x: np.ndarray) -> np.ndarray:
    """Zero mean and unit standard deviation (all zeros for a constant vector)."""
    std = x.std()
    return (x - x.mean()) / std if std > 0 else np.zeros_like(x)


def genre_scores(items: np.ndarray, categories: np.ndarray, decay: float) -> np.ndarray:
    """(N,) cosine between each item's categories and the history's genre profile.

    ``items`` is the history, oldest first; items without categories contribute nothing.
    All zeros when the catalogue has no categories or the history has none.
    """
    norms = np.linalg.norm(categories, axis=1, keepdims=True)
    unit = np.divide(categories, norms, out=np.zeros_like(categories), where=norms > 0)
    items = np.asarray(items, np.int64)
    if not len(items) or not unit.shape[1]:
        return np.zeros(len(categories))
    profile = (decay ** np.arange(len(items))[::-1]) @ unit[items]
    length = np.linalg.norm(profile)
    return unit @ (profile / length) if length > 0 else np.zeros(len(categories))


def year_scores(items: np.ndarray, years: np.ndarray, window: int,
                bandwidth: float) -> np.ndarray:
    """(N,) closeness of each item's release year to the median year of the history's
    ``window`` newest items with a known year: ``exp(-((year - m) / bandwidth)^2)``.

    Items of unknown year, and every item when no history year is known, score 0.
    """
    if window < 1 or bandwidth <= 0:
        raise ValueError(f"window must be >= 1 and bandwidth > 0, got {window}, {bandwidth}")
    known = years[np.asarray(items, np.int64)]
    known = known[np.isfinite(known)][-window:]
    if not len(known):
        return np.zeros(len(years))
    closeness = np.exp(-(((years - np.median(known)) / bandwidth) ** 2))
    return np.where(np.isfinite(years), closeness, 0.0)


def content_scores(items: np.ndarray, content: ItemContent, decay: float,
                   genre_weight: float, year_weight: float, year_window: int,
                   year_bandwidth: float) -> np.ndarray:
    """(N,) ``genre_weight`` x standardised genre scores + ``year_weight`` x
    standardised year scores (a weight of 0 skips its signal)."""
    out = np.zeros(content.n_items)
    if genre_weight:
        out += genre_weight * standardise(genre_scores(items, content.categories, decay))
    if year_weight:
        out += year_weight * standardise(year_scores(items, content.years, year_window,
                                                     year_bandwidth))
    return out
