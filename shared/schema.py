"""The one event schema every loader produces and every consumer reads.

An *event* is one row ``(user_id, item_id, timestamp, event, value)``:

- ``user_id``, ``item_id``: the caller's ids, integers or strings (kept as ``str``
  internally so that ``7`` and ``"7"`` are the same id across files);
- ``timestamp``: seconds since the Unix epoch, ``int64``;
- ``event``: one of :data:`EVENT_TYPES`;
- ``value``: optional number (a rating, a price paid); ``NaN`` when absent.

Item attributes (optional) are a table ``item_id, categories, price, title`` where
``categories`` is a ``|``-separated string. User attributes (optional) are a table with
``user_id`` and free columns.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

EVENT_TYPES: tuple[str, ...] = ("view", "click", "cart", "purchase", "rating")

#: Default weight of each event type as an implicit positive (stronger intent, more weight).
EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0, "click": 1.0, "cart": 2.0, "purchase": 3.0, "rating": 1.0,
}

EVENT_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "timestamp", "event", "value")
ITEM_COLUMNS: tuple[str, ...] = ("item_id", "categories", "price", "title", "year")
CATEGORY_SEPARATOR = "|"


@dataclass
class Dataset:
    """Events plus optional side tables, all in the schema above.

    Attributes:
        name: short label used in reports (``movielens-100k``, ``synthetic``, a file stem).
        events: DataFrame with exactly :data:`EVENT_COLUMNS`, dtypes ``str, str, int64,
            str, float64``.
        items: optional DataFrame with :data:`ITEM_COLUMNS` (``categories`` ``|``-joined,
            ``price`` float or NaN, ``title`` str, ``year`` the release year as a float or
            NaN).
        users: optional DataFrame with a ``user_id`` column and free attribute columns.
        affinity: optional ground truth for synthetic data: a callable
            ``affinity(user_ids, item_ids) -> np.ndarray`` of click probabilities in
            [0, 1], used to score lists with a simulated CTR@K.
    """

    name: str
    events: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    affinity: object | None = field(default=None, repr=False)

    @property
    def n_events(self) -> int:
        return len(self.events)


def empty_events() -> pd.DataFrame:
    """An empty events table with the schema's columns and dtypes."""
    return normalize_events(pd.DataFrame({c: [] for c in EVENT_COLUMNS}))


def normalize_events(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with the schema's column order and dtypes (no validation).

    Callers that read untrusted files validate first (``fedrec.shared.io``); generators and
    built-in loaders call this directly.
    """
    out = pd.DataFrame({
        "user_id": df["user_id"].astype(str).to_numpy(),
        "item_id": df["item_id"].astype(str).to_numpy(),
        "timestamp": df["timestamp"].astype(np.int64).to_numpy(),
        "event": df["event"].astype(str).to_numpy(),
        "value": (df["value"].astype(np.float64).to_numpy() if "value" in df
                  else np.full(len(df), np.nan)),
    })
    return out


def fingerprint(dataset: Dataset) -> str:
    """sha256 over the events table's rows (order-sensitive): identifies the exact data."""
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(dataset.events, index=False).to_numpy().tobytes())
    return digest.hexdigest()
