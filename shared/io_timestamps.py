"""Timestamps of a data file: epoch seconds, ISO-8601 text or datetimes -> int64 seconds (UTC).

A vectorised path handles clean columns; any doubt falls back to the exact per-cell
path, which names the first bad row. Internal to :mod:`fedrec.shared.io`.
"""

from __future__ import annotations

import decimal
import math
import re
import warnings
from datetime import date, datetime

import numpy as np
import pandas as pd

from fedrec.shared.io_cells import _NA_TOKENS, _Check, _factorize, _finish, _is_missing, _show

#: Latest accepted epoch second (3000-01-01T00:00:00Z); larger values are almost
#: certainly milliseconds or microseconds.
MAX_TIMESTAMP = 32_503_680_000

_INT_RE = re.compile(r"[+-]?\d+")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_TZ_SUFFIX_RE = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
_EPOCH = pd.Timestamp(0, tz="UTC")
_ONE_SECOND = pd.Timedelta(1, "s")


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
