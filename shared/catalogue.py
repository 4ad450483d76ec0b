"""Deployment data: the item catalogue (server and devices) and one device's own events.

In a real federation nobody holds everyone's events. The server knows only the item
catalogue (ids and attributes: what the model's item tables and content tower need); each
device knows the catalogue and its own user's events (``events-path`` in its node config).
Both index items in catalogue order, so the arrays they exchange line up.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fedrec.shared.content import ItemContent
from fedrec.shared.errors import DataError
from fedrec.shared.federated_data import Federation
from fedrec.shared.interactions import build_interactions, leave_last_out
from fedrec.shared.schema import Dataset, empty_events, fingerprint


@dataclass(frozen=True)
class Catalogue:
    """Items in model order, with their content features.

    Attributes:
        name: the file's stem.
        items: the items table (schema ``ITEM_COLUMNS``).
        item_ids: (N,) item ids, the order of the model's item rows.
        item_features: (N, F) content features (``build_interactions``' encoding).
        fingerprint: sha256 of the items table as read (the manifest's data fingerprint).
        content: the public metadata on-device scoring uses (categories, release years).
    """

    name: str
    items: pd.DataFrame
    item_ids: np.ndarray
    item_features: np.ndarray
    fingerprint: str
    content: ItemContent

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


@functools.lru_cache(maxsize=2)
def load_catalogue(path: str) -> Catalogue:
    """Read a catalogue (CSV or Parquet items file: ``item_id`` plus optional attributes)."""
    from fedrec.shared.io import read_items

    items = read_items(path)
    if len(items) == 0:
        raise DataError(path, "the catalogue has no items")
    return catalogue_from_items(Path(path).stem, items)


def catalogue_from_items(name: str, items: pd.DataFrame) -> Catalogue:
    """A catalogue from an items table (schema ``ITEM_COLUMNS``), items in table order."""
    inter = build_interactions(Dataset(name=name, events=empty_events(), items=items))
    digest = hashlib.sha256(pd.util.hash_pandas_object(items.astype(str), index=False)
                            .to_numpy().tobytes()).hexdigest()
    return Catalogue(name, items, inter.item_ids, inter.item_features, digest,
                     ItemContent.of(inter))


def load_device(events_path: str, catalogue_path: str, seed: int) -> Federation:
    """One device's events as a one-user federation indexed like the catalogue.

    Raises:
        DataError: the file holds several users, or an item missing from the catalogue.
    """
    path = Path(events_path)
    return _load_device(str(path), path.stat().st_mtime_ns if path.exists() else 0,
                        catalogue_path, seed)


@functools.lru_cache(maxsize=4)
def _load_device(events_path: str, _mtime: int, catalogue_path: str, seed: int) -> Federation:
    from fedrec.shared.io import read_events

    catalogue = load_catalogue(catalogue_path)
    events = read_events(events_path)
    users = events["user_id"].unique()
    if len(users) != 1:
        raise DataError(events_path, f"a device's events must hold exactly one user, found "
                                     f"{len(users)}")
    unknown = ~events["item_id"].astype(str).isin(pd.Index(catalogue.item_ids.astype(str)))
    if unknown.any():
        row = int(np.argmax(unknown.to_numpy()))
        raise DataError(events_path, f"item {events['item_id'].iloc[row]!r} is not in the "
                                     f"catalogue {catalogue_path}", row=row + 1, column="item_id")
    return device_federation(events, catalogue, seed, Path(events_path).stem)


def device_federation(events: pd.DataFrame, catalogue: Catalogue, seed: int,
                      name: str = "device") -> Federation:
    """One user's events (schema table, items all in the catalogue) as a federation."""
    dataset = Dataset(name=name, events=events, items=catalogue.items)
    inter = build_interactions(dataset, item_order=catalogue.item_ids)
    return Federation(dataset.name, inter, leave_last_out(inter), fingerprint(dataset), seed=seed)
