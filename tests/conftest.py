"""Shared fixtures: small hand-made datasets (no network, no randomness from globals)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from fedrec.shared.schema import Dataset, normalize_events  # noqa: E402


def _memoise_dp_accounting() -> None:
    """Memoise two pure, slow dp-accounting functions for this test process.

    - ``rdp._compute_rdp_sample_wor_gaussian_scalar(q, sigma, alpha)``: RDP of the
      Gaussian sampled without replacement at one order, pure Python and O(alpha^2) at
      integer orders (~1.5 s per event over ``shared.privacy.RDP_ORDERS``);
    - ``privacy_loss_distribution.from_gaussian_mechanism(...)``: the Gaussian's PLD on a
      fine grid (seconds per call; PLD objects are immutable, ``compose`` returns a new one).

    The suite asks for the same arguments again and again (every calibration's Brent
    search, every ledger re-composing its rounds, every audit's PLD second opinion). A
    cached call returns the very object the first call computed, so no number a test
    checks changes; production code and the processes tests start compute every call.
    """
    import functools

    from dp_accounting.pld import privacy_loss_distribution as pld
    from dp_accounting.rdp import rdp_privacy_accountant as rdp

    for module, name, size in ((rdp, "_compute_rdp_sample_wor_gaussian_scalar", None),
                               (pld, "from_gaussian_mechanism", 256)):   # PLDs: MBs each
        function = getattr(module, name)
        if not hasattr(function, "cache_info"):
            setattr(module, name, functools.lru_cache(maxsize=size)(function))


_memoise_dp_accounting()


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


@pytest.fixture
def noise_draws(monkeypatch) -> tuple[list[int], list[int]]:
    """Write-ahead probe for the statistics releases: a test's ledger-save callback appends
    ``len(ledger.history)`` to ``saved``; every noise draw (``stats.add_noise``) appends to
    ``drawn`` how many events were durable at that moment."""
    from fedrec.shared import stats

    saved: list[int] = []
    drawn: list[int] = []
    real = stats.add_noise

    def spy(total, z, rng, symmetric=False):
        drawn.append(saved[-1])
        return real(total, z, rng, symmetric)

    monkeypatch.setattr(stats, "add_noise", spy)
    return saved, drawn
