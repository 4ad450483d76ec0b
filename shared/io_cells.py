"""Cells of a data file: classify each distinct cell once into a value or a one-line reason.

The checks (:class:`_Check`) say, per row, whether a column's cell failed and why;
:func:`_raise_first` raises :class:`~fedrec.shared.errors.DataError` for the first bad row.
Classifiers here cover ids, event types, numbers and the item attributes (categories,
title, release year); timestamps are :mod:`fedrec.shared.io_timestamps`. Internal to
:mod:`fedrec.shared.io`, whose names are the public ones.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fedrec.shared.errors import DataError
from fedrec.shared.schema import CATEGORY_SEPARATOR, EVENT_TYPES

_NA_TOKENS = frozenset({"nan", "na", "n/a", "#n/a", "null", "none", "<na>", "nat"})
_BOOL_TOKENS = frozenset({"true", "false"})
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?")
_ALLOWED_EVENTS = ", ".join(EVENT_TYPES)


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
