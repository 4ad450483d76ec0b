"""Public readers: an event or item-attribute file into the schema's tables.

Raw tables (:mod:`fedrec.shared.io_tables`) are validated column by column
(:mod:`fedrec.shared.io_cells`, :mod:`fedrec.shared.io_timestamps`) and normalised into
:mod:`fedrec.shared.schema`'s events and items tables. The frame builders here are also
used by the GroupLens and RecBole adapters (:mod:`fedrec.shared.io_adapters`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fedrec.shared.io_cells import (
    _by_unique,
    _Check,
    _classify_categories,
    _classify_event,
    _classify_id,
    _classify_title,
    _classify_year,
    _duplicate_check,
    _numbers,
    _raise_first,
)
from fedrec.shared.io_tables import (
    _read_table,
    _repeated_header_check,
    _repeated_header_row,
    _Table,
)
from fedrec.shared.io_timestamps import _timestamps
from fedrec.shared.schema import EVENT_TYPES, ITEM_COLUMNS, normalize_events

REQUIRED_EVENT_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "timestamp", "event")
OPTIONAL_EVENT_COLUMNS: tuple[str, ...] = ("value",)


def _validate_events(path: Path, table: _Table, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Validate raw event cells (schema column names in ``table.frame``) and normalise."""
    labels = labels or {}
    frame = table.frame
    # A repeated header always fails the timestamp check, so it is looked for lazily.
    explain = _repeated_header_row(table, REQUIRED_EVENT_COLUMNS)
    user, user_check = _by_unique(frame["user_id"], _classify_id, labels.get("user_id", "user_id"))
    item, item_check = _by_unique(frame["item_id"], _classify_id, labels.get("item_id", "item_id"))
    ts, ts_check = _timestamps(frame["timestamp"], labels.get("timestamp", "timestamp"))
    event, event_check = _by_unique(frame["event"], _classify_event, labels.get("event", "event"))
    checks = [user_check, item_check, ts_check, event_check]
    if "value" in frame:
        value, value_check = _numbers(frame["value"], labels.get("value", "value"))
        checks.append(value_check)
    else:
        value = np.full(len(frame), np.nan)
    _raise_first(path, table.rows, checks, explain)
    return normalize_events(pd.DataFrame({
        "user_id": user, "item_id": item, "timestamp": ts.astype(np.int64),
        "event": event, "value": value.astype(np.float64),
    }))


def read_events(path: str | Path) -> pd.DataFrame:
    """Read a ``.csv``/``.parquet``/``.pq`` event file into the schema's events table.

    Required columns ``user_id, item_id, timestamp, event``; optional ``value``; other
    columns are ignored. ``timestamp`` is integer epoch seconds or ISO-8601 text (naive
    times are taken as UTC); ``event`` is one of :data:`fedrec.shared.schema.EVENT_TYPES`
    (case-insensitive); ids are integers or strings.

    Raises:
        DataError: naming the file, the first bad row and its column.
    """
    p, table = _read_table(path, required=REQUIRED_EVENT_COLUMNS,
                           wanted=REQUIRED_EVENT_COLUMNS + OPTIONAL_EVENT_COLUMNS)
    return _validate_events(p, table)


def validate_file(path: str | Path) -> dict:
    """Validate an event file and summarise it (for ``fedrec data validate FILE``).

    Returns ``{"path", "rows", "users", "items", "events": {type: count},
    "time_range": [min, max]}`` with plain Python values (JSON-serialisable).
    """
    events = read_events(path)
    counts = events["event"].value_counts()
    return {
        "path": str(path),
        "rows": len(events),
        "users": int(events["user_id"].nunique()),
        "items": int(events["item_id"].nunique()),
        "events": {t: int(counts[t]) for t in EVENT_TYPES if t in counts},
        "time_range": [int(events["timestamp"].min()), int(events["timestamp"].max())],
    }


def _items_frame(path: Path, table: _Table, *, id_col: str = "item_id",
                 category_col: str | None = "categories", price_col: str | None = "price",
                 title_col: str | None = "title", year_col: str | None = "year",
                 split_categories: Callable[[object], tuple[str, str | None]] = _classify_categories,
                 extra_checks: Sequence[_Check] = ()) -> pd.DataFrame:
    frame = table.frame
    n = len(frame)
    checks = _repeated_header_check(table, [id_col] if table.header_cells else [])
    ids, id_check = _by_unique(frame[id_col], _classify_id, id_col)
    checks.append(id_check)
    if category_col and category_col in frame:
        cats, cat_check = _by_unique(frame[category_col], split_categories, category_col)
        checks.append(cat_check)
    else:
        cats = np.full(n, "", dtype=object)
    if price_col and price_col in frame:
        price, price_check = _numbers(frame[price_col], price_col, what="price",
                                      allow_negative=False)
        checks.append(price_check)
    else:
        price = np.full(n, np.nan)
    if title_col and title_col in frame:
        title, title_check = _by_unique(frame[title_col], _classify_title, title_col)
        checks.append(title_check)
    else:
        title = np.full(n, "", dtype=object)
    if year_col and year_col in frame:
        year, year_check = _by_unique(frame[year_col], _classify_year, year_col)
        checks.append(year_check)
    else:
        year = np.full(n, np.nan)
    checks.extend(extra_checks)
    checks.append(_duplicate_check(ids, table.rows, id_col))
    _raise_first(path, table.rows, checks)
    return pd.DataFrame({
        "item_id": ids.astype(object),
        "categories": cats.astype(object),
        "price": price.astype(np.float64),
        "title": title.astype(object),
        "year": year.astype(np.float64),
    }, columns=list(ITEM_COLUMNS))


def read_items(path: str | Path) -> pd.DataFrame:
    """Read an item-attribute file (``.csv``/``.parquet``/``.pq``).

    ``item_id`` is required (unique); ``categories`` (``|``-joined names, or a Parquet
    list of strings), ``price`` (number >= 0), ``title`` and ``year`` (release year: a
    number, or a date ending in the year) are optional. Returns a
    DataFrame with :data:`fedrec.shared.schema.ITEM_COLUMNS`.
    """
    p, table = _read_table(path, required=("item_id",), wanted=ITEM_COLUMNS)
    return _items_frame(p, table)


def _users_frame(path: Path, table: _Table, numeric: Sequence[str]) -> pd.DataFrame:
    frame = table.frame
    ids, id_check = _by_unique(frame["user_id"], _classify_id, "user_id")
    checks = [id_check]
    out: dict[str, object] = {"user_id": ids}
    for col in frame.columns:
        if col == "user_id":
            continue
        if col in numeric:
            vals, check = _numbers(frame[col], col, what=col)
            checks.append(check)
            out[col] = vals.astype(np.float64)
        else:
            out[col] = frame[col].astype(str).str.strip().to_numpy(dtype=object)
    checks.append(_duplicate_check(ids, table.rows, "user_id"))
    _raise_first(path, table.rows, checks)
    return pd.DataFrame(out)
