"""Raw tables: a CSV (or other delimited text) or Parquet file read as cells, shape checked.

Nothing is validated cell by cell here (that is :mod:`fedrec.shared.io_cells`): a file
must exist, be readable, have unique column names, the required columns and rows of
the header's width. Internal to :mod:`fedrec.shared.io`.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fedrec.shared.errors import DataError
from fedrec.shared.io_cells import _Check, _one_line

CSV_SUFFIXES: tuple[str, ...] = (".csv",)
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")


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
