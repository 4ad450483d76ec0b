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
"""

from __future__ import annotations

import csv
import decimal
import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from fedrec.shared.errors import DataError
from fedrec.shared.schema import (
    CATEGORY_SEPARATOR,
    EVENT_TYPES,
    ITEM_COLUMNS,
    Dataset,
    normalize_events,
)

__all__ = [
    "CSV_SUFFIXES",
    "PARQUET_SUFFIXES",
    "REQUIRED_EVENT_COLUMNS",
    "GROUPLENS_GENRES",
    "read_events",
    "read_items",
    "validate_file",
    "load_grouplens_dir",
    "load_recbole_dir",
]

REQUIRED_EVENT_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "timestamp", "event")
OPTIONAL_EVENT_COLUMNS: tuple[str, ...] = ("value",)
CSV_SUFFIXES: tuple[str, ...] = (".csv",)
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")

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

#: Latest accepted epoch second (3000-01-01T00:00:00Z); larger values are almost
#: certainly milliseconds or microseconds.
MAX_TIMESTAMP = 32_503_680_000

_NA_TOKENS = frozenset({"nan", "na", "n/a", "#n/a", "null", "none", "<na>", "nat"})
_BOOL_TOKENS = frozenset({"true", "false"})
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INT_RE = re.compile(r"[+-]?\d+")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_TZ_SUFFIX_RE = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
_ALLOWED_EVENTS = ", ".join(EVENT_TYPES)
_EPOCH = pd.Timestamp(0, tz="UTC")
_ONE_SECOND = pd.Timedelta(1, "s")


# --------------------------------------------------------------------------- helpers


def _show(value: object, limit: int = 40) -> str:
    """A short one-line ``repr`` of a cell value for error messages."""
    text = repr(value)
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def _is_missing(v: object) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, (float, np.floating)):
        return math.isnan(v)
    return False


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(p, "file not found")
    if p.is_dir():
        raise DataError(p, "is a directory, not a file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise DataError(p, f"cannot read the file ({exc.strerror or _one_line(exc)})") from None
    if size == 0:
        raise DataError(p, "file is empty (0 bytes)")
    return p


@dataclass
class _Table:
    """Raw cells of a file before validation.

    ``frame`` has one column per name in ``names`` (CSV cells are ``str``; Parquet
    cells keep their Arrow-derived dtypes); ``rows`` holds each frame row's 1-based
    data-row number in the file; ``header_cells`` maps a column name to its header
    text for text files (to spot a header line repeated inside the data).
    """

    names: list[str]
    frame: pd.DataFrame
    rows: np.ndarray
    header_cells: dict[str, str] | None = None


@dataclass
class _Check:
    """Per-row outcome of validating one column."""

    column: str
    bad: np.ndarray
    reason: Callable[[int], str]


def _raise_first(path: Path, rows: np.ndarray, checks: Sequence[_Check],
                 explain: Callable[[int], str | None] | None = None) -> None:
    """Raise for the first row that fails any check (checks ordered by priority).

    ``explain(i)`` may give a better, row-level reason for a failing row (for example
    a repeated header line); the message then names the row only.
    """
    if not checks:
        return
    any_bad = np.zeros(len(rows), dtype=bool)
    for check in checks:
        any_bad |= check.bad
    if not any_bad.any():
        return
    i = int(np.argmax(any_bad))
    if explain is not None:
        problem = explain(i)
        if problem:
            raise DataError(path, problem, row=int(rows[i]))
    for check in checks:
        if check.bad[i]:
            column = check.column or None
            raise DataError(path, check.reason(i), row=int(rows[i]), column=column)


def _check_duplicate_names(path: Path, names: Sequence[str], where: str) -> None:
    seen: dict[str, int] = {}
    for pos, name in enumerate(names, start=1):
        if not name:
            continue
        if name in seen:
            raise DataError(
                path,
                f"duplicate column name in the {where} (columns {seen[name]} and {pos})",
                column=name,
            )
        seen[name] = pos


def _check_required(path: Path, names: Sequence[str], required: Sequence[str],
                    sep: str = ",") -> None:
    for col in required:
        if col not in names:
            found = ", ".join(repr(n) for n in names[:12]) or "none"
            if len(names) > 12:
                found += ", ..."
            hint = ""
            if len(names) == 1 and sep == ",":
                for other, label in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
                    if other in names[0]:
                        hint = f"; the file seems to use {label} as separator, expected ','"
                        break
            raise DataError(path, f"missing required column (found: {found}){hint}", column=col)


def _factorize(series: pd.Series) -> tuple[np.ndarray, list]:
    """Codes and distinct cells (NaN/None kept as cells)."""
    try:
        codes, uniques = pd.factorize(series, use_na_sentinel=False)
        return codes, list(uniques)
    except TypeError:  # unhashable cells (Parquet lists): one "distinct" cell per row
        return np.arange(len(series)), list(series)


def _numbers(series: pd.Series, column: str, *, what: str = "value",
             allow_negative: bool = True) -> tuple[np.ndarray, _Check]:
    fast = _fast_numbers(series, allow_negative)
    if fast is not None:
        return fast, _Check(column, np.zeros(len(fast), dtype=bool), lambda i: "")
    return _by_unique(series, lambda v: _classify_number(v, what=what,
                                                         allow_negative=allow_negative), column)


def _by_unique(series: pd.Series, classify: Callable[[object], tuple[object, str | None]],
               column: str) -> tuple[np.ndarray, _Check]:
    """Classify each distinct cell once; return per-row values and a check."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    codes, uniq = _factorize(series)
    values_u = np.empty(len(uniq), dtype=object)
    reasons_u = np.empty(len(uniq), dtype=object)
    for k, v in enumerate(uniq):
        values_u[k], reasons_u[k] = classify(v)
    return _finish(codes, values_u, reasons_u, column)


def _finish(codes: np.ndarray, values_u: np.ndarray, reasons_u: np.ndarray,
            column: str) -> tuple[np.ndarray, _Check]:
    bad_u = np.array([r is not None for r in reasons_u], dtype=bool)
    bad = bad_u[codes] if len(codes) else np.zeros(0, dtype=bool)
    values = values_u[codes] if len(codes) else np.empty(0, dtype=object)
    return values, _Check(column, bad, lambda i: str(reasons_u[codes[i]]))


# ------------------------------------------------------------------- cell classifiers


def _classify_id(v: object) -> tuple[str | None, str | None]:
    if _is_missing(v):
        return None, "id is missing (NaN/null)"
    if isinstance(v, (bool, np.bool_)):
        return None, f"{_show(v)} is a boolean; ids must be integers or strings"
    if isinstance(v, (int, np.integer)):
        return str(int(v)), None
    if isinstance(v, (float, np.floating)):
        return None, f"{_show(float(v))} is a float; ids must be integers or strings"
    if isinstance(v, str):
        t = v.strip()
        low = t.lower()
        if not t:
            return None, "id is empty"
        if low in _NA_TOKENS:
            return None, f"id is missing ({_show(t)})"
        if low in _BOOL_TOKENS:
            return None, f"{_show(t)} is a boolean; ids must be integers or strings"
        if _DECIMAL_RE.fullmatch(t):
            return None, f"{_show(t)} is a decimal number; ids must be integers or strings"
        return t, None
    return None, f"{_show(v)} has type {type(v).__name__}; ids must be integers or strings"


def _classify_event(v: object) -> tuple[str | None, str | None]:
    if _is_missing(v):
        return None, f"event is missing; allowed: {_ALLOWED_EVENTS}"
    if isinstance(v, str):
        t = v.strip().lower()
        if t in EVENT_TYPES:
            return t, None
        if not t:
            return None, f"event is empty; allowed: {_ALLOWED_EVENTS}"
        return None, f"unknown event {_show(v.strip())}; allowed: {_ALLOWED_EVENTS}"
    return None, f"unknown event {_show(v)}; allowed: {_ALLOWED_EVENTS}"


def _classify_number(v: object, *, what: str = "value",
                     allow_negative: bool = True) -> tuple[float, str | None]:
    """Optional number: missing/empty -> NaN; anything else must be a finite number."""
    if _is_missing(v):
        return math.nan, None
    if isinstance(v, (bool, np.bool_)):
        return math.nan, f"{_show(v)} is a boolean, not a number"
    if isinstance(v, (int, float, np.integer, np.floating, decimal.Decimal)):
        x = float(v)
    elif isinstance(v, str):
        t = v.strip()
        if not t or t.lower() in _NA_TOKENS:
            return math.nan, None
        try:
            x = float(t)
        except ValueError:
            return math.nan, f"{_show(t)} is not a number"
    else:
        return math.nan, f"{_show(v)} has type {type(v).__name__}, not a number"
    if not math.isfinite(x):
        return math.nan, f"{what} {_show(v)} is not a finite number"
    if not allow_negative and x < 0:
        return math.nan, f"{what} {_show(v)} is negative"
    return x, None


def _seconds_check(sec: int, shown: str) -> tuple[int | None, str | None]:
    if sec > MAX_TIMESTAMP or sec < -MAX_TIMESTAMP:
        return None, (f"timestamp {shown} is out of range (after year 3000 or before year 940); "
                      "timestamps must be epoch seconds, not milliseconds")
    return sec, None


def _fast_timestamps(series: pd.Series) -> np.ndarray | None:
    """int64 seconds when every cell is a clean, in-range number or datetime; else None.

    Only an optimisation for valid data: whenever it returns None the exact per-cell
    path (:func:`_timestamps`) runs and finds the first bad row.
    """
    dt = series.dtype
    try:
        if isinstance(dt, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dt):
            return None
        if isinstance(dt, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dt):
            if series.isna().any():
                return None
            aware = series if isinstance(dt, pd.DatetimeTZDtype) else series.dt.tz_localize("UTC")
            secs = ((aware - _EPOCH) // _ONE_SECOND).to_numpy(dtype=np.int64)
        elif pd.api.types.is_integer_dtype(dt):
            if series.isna().any():
                return None
            secs = series.to_numpy(dtype=np.int64)
        elif pd.api.types.is_float_dtype(dt):
            x = series.to_numpy(dtype=np.float64, na_value=np.nan)
            if not np.isfinite(x).all() or (len(x) and np.abs(x).max() > MAX_TIMESTAMP):
                return None
            secs = np.floor(x).astype(np.int64)
        elif dt == object:
            arr = series.to_numpy(dtype=object)
            if pd.api.types.infer_dtype(arr, skipna=False) != "string":
                return None
            try:
                secs = arr.astype(np.int64)  # ValueError unless every cell is an integer
            except ValueError:
                text = pd.Series(arr).str.strip()
                numeric = text.str.fullmatch(_NUMBER_RE.pattern).to_numpy(dtype=bool)
                if numeric.all():  # decimal epoch seconds such as "881250949.0"
                    x = text.astype(np.float64).to_numpy()
                    if not np.isfinite(x).all() or np.abs(x).max() > MAX_TIMESTAMP:
                        return None
                    secs = np.floor(x).astype(np.int64)
                elif numeric.any():  # a mix of numbers and dates: exact path
                    return None
                else:
                    secs = _fast_iso(text)
                    if secs is None:
                        return None
        else:
            return None
    except (ValueError, TypeError, OverflowError):
        return None
    if len(secs) and (secs.max() > MAX_TIMESTAMP or secs.min() < -MAX_TIMESTAMP):
        return None
    return secs


_AWARE_RE = r"(?i)^.{8}.*?[T ].*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


def _fast_iso(text: pd.Series) -> np.ndarray | None:
    """Seconds for ISO-8601 strings, or None if any fails (see :func:`_timestamps`)."""
    aware = text.str.contains(_AWARE_RE, regex=True).to_numpy(dtype=bool)
    secs = np.zeros(len(text), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mask in (aware, ~aware):  # parsed apart: pandas mixes offsets up otherwise
            if not mask.any():
                continue
            parsed = pd.to_datetime(text[mask], format="ISO8601", utc=True, errors="coerce")
            if parsed.isna().any():
                return None
            secs[mask] = ((parsed - _EPOCH) // _ONE_SECOND).to_numpy(dtype=np.int64)
    return secs


def _fast_numbers(series: pd.Series, allow_negative: bool = True) -> np.ndarray | None:
    """float64 when every cell is a finite number or blank/missing; else None."""
    dt = series.dtype
    if isinstance(dt, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dt):
        return None
    try:
        if pd.api.types.is_numeric_dtype(dt):
            x = series.to_numpy(dtype=np.float64, na_value=np.nan)
        elif dt == object:
            arr = series.to_numpy(dtype=object)
            if pd.api.types.infer_dtype(arr, skipna=False) != "string":
                return None
            x = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
            nan = np.isnan(x)
            if nan.any():  # allowed only for blank cells and missing-value markers
                blanks = pd.unique(arr[nan])
                if any(v.strip() and v.strip().lower() not in _NA_TOKENS for v in blanks):
                    return None
        else:
            return None
    except (ValueError, TypeError, OverflowError):
        return None
    if np.isinf(x).any() or (not allow_negative and (x < 0).any()):
        return None
    return x


def _timestamps(series: pd.Series, column: str) -> tuple[np.ndarray, _Check]:
    """Integer epoch seconds / ISO-8601 text / datetimes -> int64 seconds (UTC)."""
    fast = _fast_timestamps(series)
    if fast is not None:
        return fast, _Check(column, np.zeros(len(fast), dtype=bool), lambda i: "")
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series.dtype):
        series = series.astype(object)  # Timestamps (or NaT), handled below
    codes, uniq = _factorize(series)
    values_u = np.zeros(len(uniq), dtype=object)
    reasons_u = np.empty(len(uniq), dtype=object)
    iso_naive: list[tuple[int, str]] = []
    iso_aware: list[tuple[int, str]] = []
    for k, v in enumerate(uniq):
        values_u[k], reasons_u[k] = 0, None
        if _is_missing(v):
            reasons_u[k] = "timestamp is missing (NaN/null)"
        elif isinstance(v, (bool, np.bool_)):
            reasons_u[k] = f"{_show(v)} is a boolean; expected epoch seconds or ISO-8601"
        elif isinstance(v, (int, np.integer)):
            values_u[k], reasons_u[k] = _seconds_check(int(v), _show(int(v)))
        elif isinstance(v, (float, np.floating, decimal.Decimal)):
            x = float(v)
            if not math.isfinite(x):
                reasons_u[k] = f"timestamp {_show(v)} is not a finite number"
            else:
                values_u[k], reasons_u[k] = _seconds_check(math.floor(x), _show(v))
        elif isinstance(v, (pd.Timestamp, datetime, date)):
            try:
                ts = pd.Timestamp(v)
                ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
                values_u[k], reasons_u[k] = _seconds_check(int((ts - _EPOCH) // _ONE_SECOND),
                                                           _show(str(v)))
            except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
                reasons_u[k] = f"timestamp {_show(str(v))} is out of range"
        elif isinstance(v, str):
            t = v.strip()
            if not t:
                reasons_u[k] = "timestamp is empty"
            elif t.lower() in _NA_TOKENS:
                reasons_u[k] = f"timestamp is missing ({_show(t)})"
            elif _INT_RE.fullmatch(t):
                values_u[k], reasons_u[k] = _seconds_check(int(t), _show(t))
            elif _NUMBER_RE.fullmatch(t):
                x = float(t)
                if not math.isfinite(x):
                    reasons_u[k] = f"timestamp {_show(t)} is not a finite number"
                else:
                    values_u[k], reasons_u[k] = _seconds_check(math.floor(x), _show(t))
            else:
                # Naive and offset-carrying strings are parsed apart: pandas mis-applies a
                # previous offset to naive strings when the two kinds are mixed.
                split = re.search(r"[Tt ]", t[8:]) if len(t) > 8 else None
                time_part = t[8 + split.start():] if split else ""
                target = iso_aware if time_part and _TZ_SUFFIX_RE.search(time_part) else iso_naive
                target.append((k, t))
        else:
            reasons_u[k] = (f"{_show(v)} has type {type(v).__name__}; "
                            "expected epoch seconds or ISO-8601")
    for group in (iso_naive, iso_aware):
        if not group:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(pd.Index([t for _, t in group], dtype=object),
                                    format="ISO8601", utc=True, errors="coerce")
        nat = np.asarray(parsed.isna())
        secs = np.asarray((parsed - _EPOCH) // _ONE_SECOND, dtype=np.float64)
        for (k, t), missing, sec in zip(group, nat, secs):
            if missing:
                reasons_u[k] = (f"{_show(t)} is neither epoch seconds (integer) "
                                "nor an ISO-8601 date/time")
            else:
                values_u[k], reasons_u[k] = _seconds_check(int(sec), _show(t))
    return _finish(codes, values_u, reasons_u, column)


# -------------------------------------------------------------------- file readers


def _first_record(path: Path, sep: str, encoding: str, quoting: int) -> list[str] | None:
    try:
        with open(path, newline="", encoding=encoding) as fh:
            for record in csv.reader(fh, delimiter=sep, quoting=quoting):
                return record
    except UnicodeDecodeError:
        raise DataError(path, f"is not valid {_encoding_label(encoding)} text") from None
    except csv.Error as exc:
        raise DataError(path, f"header line is not valid CSV ({_one_line(exc)})") from None
    except OSError as exc:
        raise DataError(path, f"cannot read the file ({exc.strerror or _one_line(exc)})") from None
    return None


def _encoding_label(encoding: str) -> str:
    return "UTF-8" if encoding.lower().replace("_", "-") in ("utf-8", "utf-8-sig") else encoding


def _field_count_error(path: Path, sep: str, encoding: str, quoting: int, width: int,
                       has_header: bool, exc: BaseException) -> DataError:
    """Locate what pandas choked on (it only reports 'line N'): the first data row with
    too many fields, or the row where a quoted field never ends."""
    expected = "the header has" if has_header else "expected"
    row = 0
    try:
        with open(path, newline="", encoding=encoding) as fh:
            reader = csv.reader(fh, delimiter=sep, quoting=quoting, strict=True)
            if has_header:
                next(reader, None)
            try:
                for record in reader:
                    row += 1
                    if len(record) > width:
                        return DataError(path, f"row has {len(record)} fields but {expected} "
                                               f"{width}", row=row)
            except csv.Error as err:
                problem = ("a quoted field is never closed" if "end of data" in str(err)
                           else f"malformed CSV ({_one_line(err)})")
                return DataError(path, problem, row=row + 1)
    except (UnicodeDecodeError, OSError):
        pass
    return DataError(path, f"is not valid delimited text ({_one_line(exc)})")


def _read_text(path: Path, *, sep: str = ",", has_header: bool = True,
               names: Sequence[str] | None = None, encoding: str = "utf-8-sig",
               quoting: int = csv.QUOTE_MINIMAL, required: Sequence[str] = (),
               header_names: Callable[[list[str]], list[str]] | None = None) -> _Table:
    """Read a delimited text file as ``str`` cells, validating its shape.

    ``header_names`` (optional) maps the stripped header cells to column names (used for
    RecBole ``name:type`` headers); duplicates and required columns are checked on them.
    """
    header_cells: dict[str, str] | None = None
    if has_header:
        record = _first_record(path, sep, encoding, quoting)
        if record is None or not any(cell.strip() for cell in record):
            raise DataError(path, "file is empty (no header line)")
        raw = [cell.strip() for cell in record]
        col_names = header_names(raw) if header_names else raw
        _check_duplicate_names(path, col_names, "header")
        _check_required(path, col_names, required, sep)
        header_cells = dict(zip(col_names, raw))
    else:
        assert names is not None
        col_names = list(names)
    width = len(col_names)
    kwargs = dict(sep=sep, dtype=str, na_filter=False, keep_default_na=False,
                  skip_blank_lines=False, index_col=False, encoding=encoding,
                  quoting=quoting, engine="c")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            if has_header:
                frame = pd.read_csv(path, header=0, **kwargs)
            else:
                frame = pd.read_csv(path, header=None, names=list(range(width)), **kwargs)
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        raise _field_count_error(path, sep, encoding, quoting, width, has_header, exc) from None
    except UnicodeDecodeError:
        raise DataError(path, f"is not valid {_encoding_label(encoding)} text") from None
    except pd.errors.EmptyDataError:
        raise DataError(path, "file is empty") from None
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot be read ({_one_line(exc)})") from None
    if frame.shape[1] != width:
        raise DataError(path, f"rows have {frame.shape[1]} fields but expected {width}")
    frame.columns = range(width)
    # Blank lines (all cells empty) are skipped but still counted, like a spreadsheet.
    if len(frame):
        blank = np.logical_and.reduce([frame[c].eq("").to_numpy() for c in range(width)])
    else:
        blank = np.zeros(0, dtype=bool)
    rows = np.arange(1, len(frame) + 1)[~blank]
    keep = [i for i, n in enumerate(col_names) if n]
    frame = frame.loc[~blank, keep].reset_index(drop=True)
    frame.columns = [col_names[i] for i in keep]
    if len(frame) == 0:
        raise DataError(path, "has a header but no data rows" if has_header else "has no data rows")
    return _Table(list(col_names), frame, rows, header_cells)


def _import_pyarrow(path: Path):
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise DataError(path, f"reading Parquet needs a working 'pyarrow' ({_one_line(exc)})") from None
    return pyarrow, pyarrow.parquet


def _arrow_column(pa, column) -> pd.Series:
    t = column.type
    if pa.types.is_dictionary(t):
        column = column.cast(t.value_type)
        t = column.type
    if pa.types.is_integer(t) and not pa.types.is_int64(t):
        column = column.cast(pa.int64())
        t = column.type
    if pa.types.is_int64(t) and column.null_count:
        return column.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    if pa.types.is_boolean(t):
        return column.to_pandas().astype(object)
    return column.to_pandas()


def _read_parquet(path: Path, *, required: Sequence[str], wanted: Sequence[str]) -> _Table:
    pa, pq = _import_pyarrow(path)
    try:
        pf = pq.ParquetFile(path)
        names = list(pf.schema_arrow.names)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(path, f"is not a readable Parquet file ({_one_line(exc)})") from None
    _check_duplicate_names(path, names, "schema")
    _check_required(path, names, required)
    present = [c for c in wanted if c in names]
    try:
        table = pf.read(columns=present)
        frame = pd.DataFrame({c: _arrow_column(pa, table.column(c)) for c in present})
    except Exception as exc:
        raise DataError(path, f"cannot be read ({_one_line(exc)})") from None
    if table.num_rows == 0:
        raise DataError(path, "has columns but no data rows")
    frame.index = range(table.num_rows)
    return _Table(names, frame, np.arange(1, table.num_rows + 1), None)


def _read_table(path: str | Path, *, required: Sequence[str], wanted: Sequence[str]) -> tuple[Path, _Table]:
    p = _check_file(path)
    suffix = p.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return p, _read_text(p, required=required)
    if suffix in PARQUET_SUFFIXES:
        return p, _read_parquet(p, required=required, wanted=wanted)
    raise DataError(p, f"unsupported file type {suffix or '(no extension)'!r}; "
                       "expected .csv, .parquet or .pq")


_REPEATED_HEADER = "the header line is repeated inside the data"


def _repeated_header_check(table: _Table, columns: Sequence[str]) -> list[_Check]:
    """Flag rows whose cells in ``columns`` equal the header (vectorised; small files)."""
    if not table.header_cells or not columns:
        return []
    bad = np.ones(len(table.frame), dtype=bool)
    for c in columns:
        bad &= table.frame[c].str.strip().eq(table.header_cells[c]).to_numpy()
    return [_Check("", bad, lambda i: _REPEATED_HEADER)]


def _repeated_header_row(table: _Table, columns: Sequence[str]) -> Callable[[int], str | None]:
    """Per-row test for a repeated header, for rows that already failed a check."""
    cells = table.header_cells or {}
    cols = [c for c in columns if c in cells]

    def explain(i: int) -> str | None:
        if not cols:
            return None
        row = table.frame.iloc[i]
        same = all(isinstance(row[c], str) and row[c].strip() == cells[c] for c in cols)
        return _REPEATED_HEADER if same else None

    return explain


# ----------------------------------------------------------------------------- events


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


# ------------------------------------------------------------------------------ items


def _classify_categories(v: object) -> tuple[str, str | None]:
    if _is_missing(v):
        return "", None
    if isinstance(v, str):
        parts = v.split(CATEGORY_SEPARATOR)
    elif isinstance(v, (list, tuple, np.ndarray)):
        parts = list(v)
        if not all(isinstance(x, str) for x in parts):
            return "", f"{_show(v)} is not a list of category names"
    else:
        return "", f"{_show(v)} is not text ('{CATEGORY_SEPARATOR}'-separated category names)"
    return CATEGORY_SEPARATOR.join(p.strip() for p in parts if p.strip()), None


def _classify_title(v: object) -> tuple[str, str | None]:
    if _is_missing(v):
        return "", None
    if isinstance(v, (bool, np.bool_)):
        return "", f"{_show(v)} is a boolean, not a title"
    if isinstance(v, (str, int, np.integer)):
        return str(v).strip(), None
    return "", f"{_show(v)} has type {type(v).__name__}, not text"


#: Release years outside this range are refused as typos.
YEAR_RANGE = (1000, 3000)
_YEAR_AT_END = re.compile(r"(\d{4})\s*$")


def _classify_year(v: object) -> tuple[float, str | None]:
    """A release year: a number, or text ending in four digits (GroupLens's
    ``01-Jan-1995``). Missing, and text without a year (RecBole's ML-100k spells one
    ``unkonwn``), is unknown: NaN. A number outside :data:`YEAR_RANGE` is refused."""
    if _is_missing(v):
        return math.nan, None
    if isinstance(v, (bool, np.bool_)):
        return math.nan, f"{_show(v)} is a boolean, not a year"
    if isinstance(v, (int, float, np.integer, np.floating)):
        year = float(v)
    else:
        text = str(v).strip()
        try:
            year = float(text)
        except ValueError:
            match = _YEAR_AT_END.search(text)
            if match is None:
                return math.nan, None
            year = float(match.group(1))
    if not YEAR_RANGE[0] <= year <= YEAR_RANGE[1]:
        return math.nan, f"year {_show(v)} is outside {YEAR_RANGE[0]}-{YEAR_RANGE[1]}"
    return year, None


def _duplicate_check(ids: np.ndarray, rows: np.ndarray, column: str) -> _Check:
    """Flag repeated ids, naming the row where each first appeared."""
    series = pd.Series(ids, dtype=object)
    dup = series.duplicated(keep="first").to_numpy() & series.notna().to_numpy()
    first_row: dict[object, int] = {}
    if dup.any():
        for pos, v in enumerate(ids):
            first_row.setdefault(v, int(rows[pos]))
    return _Check(column, dup, lambda i: (f"duplicate {column} {_show(ids[i])} "
                                          f"(first at row {first_row.get(ids[i])})"))


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
