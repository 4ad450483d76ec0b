"""Reading and validating data files into the event schema (:mod:`fedrec.shared.schema`).

Supported inputs:

- user event files, ``.csv`` or ``.parquet``/``.pq`` (:func:`read_events`), with the
  columns ``user_id, item_id, timestamp, event`` and optionally ``value``;
- user item-attribute files (:func:`read_items`): ``item_id`` plus optional
  ``categories`` (``|``-joined), ``price``, ``title``;
- the original GroupLens ML-100k folder (:func:`load_grouplens_dir`);
- a RecBole atomic-file folder such as the ML-100k copy shipped in the ``recbole``
  wheel (:func:`load_recbole_dir`).

Every problem with a file raises :class:`~fedrec.shared.errors.DataError` with a one-line
message naming the file, the first offending data row (1-based, the header is not
counted) and the column. Nothing here writes files.

The work is split by job; this module is the entry point and re-exports the public names:

- :mod:`fedrec.shared.io_cells`: classifying cells (ids, events, numbers, item attributes)
  and raising for the first bad row;
- :mod:`fedrec.shared.io_timestamps`: timestamps (epoch seconds, ISO-8601, datetimes);
- :mod:`fedrec.shared.io_tables`: raw CSV/Parquet tables, shape checked;
- :mod:`fedrec.shared.io_readers`: :func:`read_events`, :func:`read_items`,
  :func:`validate_file`;
- :mod:`fedrec.shared.io_adapters`: :func:`load_grouplens_dir`, :func:`load_recbole_dir`.
"""

from __future__ import annotations

from fedrec.shared.io_adapters import GROUPLENS_GENRES, load_grouplens_dir, load_recbole_dir
from fedrec.shared.io_cells import YEAR_RANGE
from fedrec.shared.io_readers import (
    OPTIONAL_EVENT_COLUMNS,
    REQUIRED_EVENT_COLUMNS,
    read_events,
    read_items,
    validate_file,
)
from fedrec.shared.io_tables import CSV_SUFFIXES, PARQUET_SUFFIXES
from fedrec.shared.io_timestamps import MAX_TIMESTAMP

__all__ = [
    "CSV_SUFFIXES",
    "PARQUET_SUFFIXES",
    "REQUIRED_EVENT_COLUMNS",
    "OPTIONAL_EVENT_COLUMNS",
    "GROUPLENS_GENRES",
    "MAX_TIMESTAMP",
    "YEAR_RANGE",
    "read_events",
    "read_items",
    "validate_file",
    "load_grouplens_dir",
    "load_recbole_dir",
]
