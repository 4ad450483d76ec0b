"""Shared fixtures: small hand-made datasets (no network, no randomness from globals)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from fedrec.shared.schema import Dataset, normalize_events  # noqa: E402


def _memoise_sampled_without_replacement_rdp() -> None:
    """Memoise dp-accounting's RDP of the Gaussian sampled without replacement at one order.

    ``_compute_rdp_sample_wor_gaussian_scalar(q, sigma, alpha)`` is a pure function of three
    floats, in pure Python and O(alpha^2) at integer orders: ~1.5 s per event over
    ``shared.privacy.RDP_ORDERS``, and the suite asks for the same (q, sigma) again and
    again (every calibration's Brent search, every ledger re-composing its rounds). The
    cache returns the very float the first call computed, so no number a test checks
    changes; it lives in this test process only (production code and subprocesses
    compute every call)."""
    import functools

    from dp_accounting.rdp import rdp_privacy_accountant as rdp

    if not hasattr(rdp._compute_rdp_sample_wor_gaussian_scalar, "cache_info"):
        rdp._compute_rdp_sample_wor_gaussian_scalar = functools.lru_cache(maxsize=None)(
            rdp._compute_rdp_sample_wor_gaussian_scalar)


_memoise_sampled_without_replacement_rdp()


def make_dataset(rows: list[tuple], items: list[tuple] | None = None, name: str = "tiny") -> Dataset:
    """Dataset from ``(user, item, timestamp, event)`` tuples and optional item rows."""
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"])
    events["value"] = np.nan
    table = None
    if items is not None:
        table = pd.DataFrame(items, columns=["item_id", "categories", "price", "title"])
    return Dataset(name, normalize_events(events), table)


@pytest.fixture
def tiny() -> Dataset:
    """3 users, 6 items, hand-checkable timelines."""
    rows = [
        ("a", "i1", 10, "view"), ("a", "i2", 20, "view"), ("a", "i3", 30, "view"),
        ("a", "i2", 25, "purchase"), ("a", "i4", 40, "view"),
        ("b", "i1", 5, "view"), ("b", "i5", 6, "cart"), ("b", "i6", 6, "view"),
        ("c", "i3", 1, "view"), ("c", "i4", 2, "view"),
    ]
    items = [("i1", "shoes", 10.0, "Shoe"), ("i2", "shoes|sport", 20.0, "Runner"),
             ("i3", "books", 5.0, "Book"), ("i4", "books", 7.0, "Novel"),
             ("i5", "sport", 30.0, "Ball"), ("i6", "", np.nan, "Mystery")]
    return make_dataset(rows, items)
