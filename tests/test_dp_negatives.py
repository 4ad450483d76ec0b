"""Negatives under example-level DP depend on their own row only (issue #19, training
negatives): substituting one interaction changes one row's distribution and no other, the
unit DP-SGD's per-example analysis covers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from fedrec.client.local import DpSgdPlan, LocalModel, LocalSettings
from fedrec.server.app import initial_global_weights
from fedrec.shared.config import RunConfig
from fedrec.shared.federated_data import load_federation
from fedrec.shared.training import make_rows


def _negative_frequencies(items, row: int, n_items: int, draws: int, public=None) -> np.ndarray:
    """How often each item is one of row ``row``'s negatives, over ``draws`` calls."""
    from fedrec.shared.training import make_dp_rows

    counts = np.zeros(n_items)
    for seed in range(draws):
        rows = make_dp_rows(np.zeros(len(items), np.int64), np.asarray(items), np.ones(len(items)),
                            n_items, 40, np.random.default_rng(seed), public)
        np.add.at(counts, rows.item[row, 1:], 1)
    return counts / counts.sum()


def test_own_positive_matrix_holds_the_row_positive_and_the_public_items():
    from fedrec.shared.training import own_positive_matrix

    m = own_positive_matrix(np.array([0, 3, 3]), 6, np.array([5, 3]))
    assert [sorted(m[i].indices) for i in range(3)] == [[0, 3, 5], [3, 5], [3, 5]]
    assert set(m.data) == {1.0}


def test_a_rows_negatives_are_uniform_over_all_but_its_own_positive():
    """Row 1 (positive 1) draws items 0 and 2, the other rows' positives, as often as any
    other item; never its own positive, never a public item."""
    freq = _negative_frequencies([0, 1, 2], 1, 6, 500, public=np.array([5]))
    assert freq[1] == 0 and freq[5] == 0
    np.testing.assert_allclose(freq[[0, 2, 3, 4]], 0.25, atol=0.015)


@pytest.mark.inprocess
def test_a_rows_negative_distribution_does_not_depend_on_the_other_rows():
    """Substitute row 0's positive (0 -> 3): rows 1 and 2 draw from the same distribution
    (make_rows, which avoids all of a user's positives, would move items 0 and 3)."""
    for row in (1, 2):
        before = _negative_frequencies([0, 1, 2], row, 6, 500)
        after = _negative_frequencies([3, 1, 2], row, 6, 500)
        np.testing.assert_allclose(before, after, atol=0.02)
    train = sp.csr_matrix(np.array([[1, 1, 1, 0, 0, 0]]))          # one user, 3 positives
    old = make_rows(np.zeros(3, np.int64), np.array([0, 1, 2]), np.ones(3), train, 200,
                    np.random.default_rng(0))
    assert not np.isin(old.item[:, 1:], [0, 1, 2]).any()    # the coupling being removed


@pytest.fixture(scope="module")
def device():
    cfg = RunConfig(synthetic_users=12, synthetic_items=60, gmf_dim=4, mlp_dim=4, content_dim=4,
                    dp="client", batch_size=8)
    fed = load_federation("synthetic", 0, 12, 60)
    model = LocalModel(cfg.model, fed.inter.n_items, fed.inter.item_features)
    model.load(initial_global_weights(cfg, fed.inter.n_items, fed.inter.item_features), None,
               (0, 2))
    return cfg, fed, model


def test_device_dp_training_rows_avoid_only_their_own_positive(device, monkeypatch):
    """The rows a device's DP-SGD round trains on: a row's negatives may be the user's
    other positives (they are drawn without looking at them) but never its own."""
    cfg, fed, model = device
    data = fed.client(2)
    seen = []

    def record(steps_fn, rows, rate, steps, rng, counter):
        seen.append(rows)
        return [], counter + steps

    monkeypatch.setattr(model.dp, "_dp_phase", record)
    plan = DpSgdPlan(1.0, 1.0, 0.5, reconstruction_steps=0, training_steps=1)
    model.train_dp(data, LocalSettings.from_run_config(cfg), plan, np.random.default_rng(3), 7)
    (rows,) = seen
    negatives, own = rows.item[:, 1:], rows.item[:, :1]
    assert not (negatives == own).any()
    assert np.isin(negatives, data.train_items).any()     # another positive of the user
