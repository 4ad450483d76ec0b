"""Adapters for foreign dataset folders: the GroupLens ML-100k folder and RecBole atomic files.

Each reads its folder's files (:mod:`fedrec.shared.io_tables`) and builds the schema's
tables with the same validation as the public readers (:mod:`fedrec.shared.io_readers`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fedrec.shared.errors import DataError
from fedrec.shared.io_cells import _Check, _is_missing, _show
from fedrec.shared.io_readers import _items_frame, _users_frame, _validate_events
from fedrec.shared.io_tables import _check_file, _read_text, _Table
from fedrec.shared.schema import CATEGORY_SEPARATOR, Dataset

#: Genre flag columns of GroupLens ``u.item``, in file order.
GROUPLENS_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
_GROUPLENS_ITEM_FIELDS: tuple[str, ...] = (
    "item_id", "title", "release_date", "video_release_date", "imdb_url",
) + GROUPLENS_GENRES
_GROUPLENS_USER_FIELDS: tuple[str, ...] = ("user_id", "age", "gender", "occupation", "zip_code")

_RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
_RECBOLE_TITLE_FIELDS = ("movie_title", "title", "item_title", "name")
_RECBOLE_CATEGORY_FIELDS = ("class", "genre", "genres", "categories", "category")
_RECBOLE_YEAR_FIELDS = ("release_year", "year")


# ---------------------------------------------------------------------- GroupLens 100k


def load_grouplens_dir(path: str | Path) -> Dataset:
    """Load the original GroupLens ML-100k folder (``u.data``, ``u.item``, ``u.user``).

    ``u.data`` (tab-separated ``user item rating timestamp``) becomes ``rating`` events
    with ``value`` = the rating; ``u.item`` (``|``-separated, latin-1) becomes the items
    table with the 19 genre flags joined into ``categories``; ``u.user`` (optional)
    becomes the users table.
    """
    d = Path(path)
    if not d.is_dir():
        raise DataError(d, "not a directory (expected a GroupLens folder with u.data)")
    data = _check_file(d / "u.data")
    table = _read_text(data, sep="\t", has_header=False,
                       names=("user_id", "item_id", "value", "timestamp"),
                       encoding="latin-1", quoting=csv.QUOTE_NONE)
    table.frame["event"] = "rating"
    events = _validate_events(data, table, labels={"value": "rating"})

    items = None
    item_path = d / "u.item"
    if item_path.exists():
        item_path = _check_file(item_path)
        itable = _read_text(item_path, sep="|", has_header=False, names=_GROUPLENS_ITEM_FIELDS,
                            encoding="latin-1", quoting=csv.QUOTE_NONE)
        frame = itable.frame
        flags = np.zeros((len(frame), len(GROUPLENS_GENRES)), dtype=bool)
        flag_checks = []
        for j, genre in enumerate(GROUPLENS_GENRES):
            cells = frame[genre].str.strip()
            flags[:, j] = cells.eq("1").to_numpy()
            bad = ~cells.isin(["0", "1"]).to_numpy()
            flag_checks.append(_Check(genre, bad, lambda i, c=cells: (
                f"genre flag {_show(c.iloc[i])} is not 0 or 1")))
        names = np.array(GROUPLENS_GENRES, dtype=object)
        frame["categories"] = [CATEGORY_SEPARATOR.join(names[row]) for row in flags]
        items = _items_frame(item_path, itable, price_col=None, year_col="release_date",
                             extra_checks=flag_checks)

    users = None
    user_path = d / "u.user"
    if user_path.exists():
        user_path = _check_file(user_path)
        utable = _read_text(user_path, sep="|", has_header=False, names=_GROUPLENS_USER_FIELDS,
                            encoding="latin-1", quoting=csv.QUOTE_NONE)
        users = _users_frame(user_path, utable, numeric=("age",))
    return Dataset(name=d.name, events=events, items=items, users=users)


# ------------------------------------------------------------------- RecBole atomic


def _recbole_header(path: Path) -> tuple[Callable[[list[str]], list[str]], dict[str, str]]:
    types: dict[str, str] = {}

    def parse(cells: list[str]) -> list[str]:
        names = []
        for cell in cells:
            name, sep, typ = cell.rpartition(":")
            if not sep or not name or typ not in _RECBOLE_TYPES:
                raise DataError(path, f"header field {_show(cell)} is not 'name:type' with type "
                                      f"one of {', '.join(_RECBOLE_TYPES)}", column=cell)
            names.append(name)
            types.setdefault(name, typ)
        return names

    return parse, types


def _read_atomic(path: Path, required: Sequence[str]) -> tuple[_Table, dict[str, str]]:
    parse, types = _recbole_header(path)
    table = _read_text(path, sep="\t", encoding="utf-8-sig", quoting=csv.QUOTE_NONE,
                       required=required, header_names=parse)
    return table, types


def _split_token_seq(v: object) -> tuple[str, str | None]:
    if _is_missing(v):
        return "", None
    if not isinstance(v, str):
        return "", f"{_show(v)} is not text"
    return CATEGORY_SEPARATOR.join(v.split()), None


def load_recbole_dir(path: str | Path) -> Dataset:
    """Load a RecBole atomic-file folder (``<name>.inter``, optional ``.item``/``.user``).

    Headers are typed (``user_id:token``, ``rating:float``...). ``.inter`` needs
    ``user_id``, ``item_id`` and ``timestamp``; with a ``rating`` field events are
    ``rating`` events with that value, otherwise ``click``. In ``.item`` the title
    (``movie_title``/``title``) becomes ``title`` and the genre field
    (``class``/``genre``) becomes ``categories`` (space-separated tokens -> ``|``).
    """
    d = Path(path)
    if not d.is_dir():
        raise DataError(d, "not a directory (expected a RecBole folder with a *.inter file)")
    inters = sorted(d.glob("*.inter"))
    if not inters:
        raise DataError(d, "no *.inter file (RecBole atomic files)")
    preferred = d / f"{d.name}.inter"
    if len(inters) > 1 and preferred not in inters:
        raise DataError(d, "several *.inter files ("
                           + ", ".join(p.name for p in inters) + "); keep one")
    inter = preferred if preferred in inters else inters[0]
    stem = inter.stem

    inter = _check_file(inter)
    table, _ = _read_atomic(inter, required=("user_id", "item_id", "timestamp"))
    if "rating" in table.frame:
        table.frame["value"] = table.frame["rating"]
        table.frame["event"] = "rating"
        labels = {"value": "rating"}
    else:
        table.frame["event"] = "click"
        labels = {}
    events = _validate_events(inter, table, labels=labels)

    items = None
    item_path = d / f"{stem}.item"
    if item_path.exists():
        item_path = _check_file(item_path)
        itable, _ = _read_atomic(item_path, required=("item_id",))
        cols = itable.frame.columns
        title_col = next((c for c in _RECBOLE_TITLE_FIELDS if c in cols), None)
        cat_col = next((c for c in _RECBOLE_CATEGORY_FIELDS if c in cols), None)
        year_col = next((c for c in _RECBOLE_YEAR_FIELDS if c in cols), None)
        items = _items_frame(item_path, itable, category_col=cat_col,
                             price_col="price" if "price" in cols else None,
                             title_col=title_col, year_col=year_col,
                             split_categories=_split_token_seq)

    users = None
    user_path = d / f"{stem}.user"
    if user_path.exists():
        user_path = _check_file(user_path)
        utable, types = _read_atomic(user_path, required=("user_id",))
        numeric = [c for c in utable.frame.columns if types.get(c) == "float"]
        users = _users_frame(user_path, utable, numeric=numeric)
    return Dataset(name=d.name, events=events, items=items, users=users)
