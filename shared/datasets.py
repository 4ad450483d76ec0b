"""One entry point from a dataset spec (a name, a folder or a file) to a :class:`Dataset`."""

from __future__ import annotations

from pathlib import Path

from fedrec.shared.errors import DataError
from fedrec.shared.io import (
    CSV_SUFFIXES,
    PARQUET_SUFFIXES,
    load_grouplens_dir,
    load_recbole_dir,
    read_events,
    read_items,
)
from fedrec.shared.schema import Dataset

__all__ = ["ACCEPTED_SPECS", "ITEM_FILE_NAMES", "load_dataset"]

ACCEPTED_SPECS = ("'movielens-100k', 'synthetic', a GroupLens folder (u.data), "
                  "a RecBole folder (*.inter), or a .csv/.parquet/.pq events file")
#: Sibling files loaded as the items table next to an events file.
ITEM_FILE_NAMES: tuple[str, ...] = ("items.csv", "items.parquet", "items.pq")


def load_dataset(spec: str, *, seed: int = 0) -> Dataset:
    """Load a dataset by name, folder or file.

    - ``"movielens-100k"``: fetched once from the ``recbole`` wheel
      (:func:`fedrec.shared.fetch.fetch_movielens_100k`), then :func:`load_recbole_dir`;
    - ``"synthetic"``: :func:`fedrec.shared.synthetic.generate` with ``SyntheticConfig(seed=seed)``;
    - a folder: GroupLens (``u.data``) or RecBole (``*.inter``) layout;
    - a ``.csv``/``.parquet``/``.pq`` events file, with ``items.csv``/``items.parquet``
      beside it loaded as the items table.

    Raises:
        DataError: unknown spec (the message lists the accepted ones) or a bad file.
    """
    text = str(spec).strip()
    if text == "movielens-100k":
        from fedrec.shared.fetch import fetch_movielens_100k

        ds = load_recbole_dir(fetch_movielens_100k())
        ds.name = "movielens-100k"
        return ds
    if text == "synthetic":
        from fedrec.shared import synthetic

        return synthetic.generate(synthetic.SyntheticConfig(seed=seed))

    path = Path(text).expanduser()
    if text and path.is_dir():
        if (path / "u.data").is_file():
            return load_grouplens_dir(path)
        if any(path.glob("*.inter")):
            return load_recbole_dir(path)
        raise DataError(path, "folder has neither u.data (GroupLens) nor a *.inter file "
                              f"(RecBole); accepted: {ACCEPTED_SPECS}")
    if text and path.is_file():
        suffix = path.suffix.lower()
        if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
            raise DataError(path, f"unsupported file type {suffix or '(no extension)'!r}; "
                                  f"accepted: {ACCEPTED_SPECS}")
        events = read_events(path)
        siblings = [path.parent / n for n in ITEM_FILE_NAMES
                    if (path.parent / n).is_file() and (path.parent / n).resolve() != path.resolve()]
        if len(siblings) > 1:
            raise DataError(path.parent, "several item files ("
                            + ", ".join(p.name for p in siblings) + "); keep one")
        items = read_items(siblings[0]) if siblings else None
        return Dataset(name=path.stem, events=events, items=items)
    raise DataError(text or "''", f"not a known dataset, folder or file; accepted: {ACCEPTED_SPECS}")
