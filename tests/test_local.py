"""Local training knobs on one device: optimiser, Adam eps, learning-rate decay, recency,
and the serving fit of the user embedding."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fedrec.client.local import LocalModel
from fedrec.server.app import initial_global_weights, round_config
from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError
from fedrec.shared.federated_data import federation_of
from fedrec.shared.protocol import LocalSettings


@pytest.fixture(scope="module")
def setup():
    cfg = RunConfig(synthetic_users=8, synthetic_items=50, gmf_dim=4, mlp_dim=4, content_dim=4,
                    reconstruction_steps=0, local_epochs=1, batch_size=512)
    fed = federation_of(cfg)
    weights = initial_global_weights(cfg, fed.inter.n_items, fed.inter.item_features)
    model = LocalModel(cfg.model, fed.inter.n_items, fed.inter.item_features)
    return cfg, fed, weights, model


def _update(setup, user=3, **changes) -> dict[str, np.ndarray]:
    """One local step (batch larger than the client's rows) from the same start."""
    cfg, fed, weights, model = setup
    model.load(weights, None, (0, user))
    settings = LocalSettings.from_run_config(cfg.replace(**changes))
    model.train_global(fed.client(user), settings, np.random.default_rng(7))
    return {k: v - weights[k] for k, v in model.global_weights().items()}


def _flat(update: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([v.ravel() for v in update.values()])


def test_round_config_decays_the_local_learning_rate():
    cfg = RunConfig(learning_rate=0.2, lr_decay=0.5)
    assert [round_config(cfg, r)["learning-rate"] for r in (1, 2, 4)] == [0.2, 0.1, 0.025]
    assert round_config(cfg.replace(lr_decay=1.0), 9)["learning-rate"] == 0.2


def test_sgd_step_is_linear_in_the_learning_rate_and_leaves_untouched_rows(setup):
    small = _update(setup, local_optimizer="sgd", learning_rate=0.5)
    large = _update(setup, local_optimizer="sgd", learning_rate=1.5)
    np.testing.assert_allclose(_flat(large), 3 * _flat(small), rtol=1e-3, atol=1e-6)
    table = small["item_gmf_embedding/embeddings"]
    assert 0 < (np.abs(table).sum(axis=1) > 0).sum() < len(table)   # sparse: touched rows only


def test_fresh_adam_moves_every_touched_coordinate_by_the_learning_rate(setup):
    """Adam's first step is lr * g / |g|: a tiny gradient moves as far as a large one,
    which is why ``local-adam-eps`` exists."""
    moved = np.abs(_flat(_update(setup, learning_rate=0.01)))
    gradient = np.abs(_flat(_update(setup, local_optimizer="sgd", learning_rate=1.0)))
    touched = gradient > 0
    assert np.percentile(gradient[touched], 90) > 20 * np.percentile(gradient[touched], 10)
    assert np.median(moved[touched]) == pytest.approx(0.01, rel=0.02)
    assert moved.max() <= 0.01 * (1 + 1e-4) and not moved[~touched].any()


def test_a_large_adam_eps_makes_the_step_proportional_to_the_gradient(setup):
    sgd = _flat(_update(setup, local_optimizer="sgd", learning_rate=1.0))
    adam = _flat(_update(setup, learning_rate=1.0, local_adam_eps=1.0))
    scale = adam @ sgd / (sgd @ sgd)
    assert scale > 0
    np.testing.assert_allclose(adam, scale * sgd, rtol=1e-2, atol=1e-6)


def test_recency_weights_the_newest_positive_most(setup):
    cfg, fed, _, model = setup
    data = fed.client(2)
    settings = LocalSettings.from_run_config(cfg.replace(recency_decay=0.5))
    rows = model.rows(data, settings, np.random.default_rng(0))
    n = len(data.train_items)
    expected = data.train_weights * 0.5 ** np.arange(n - 1, -1, -1)
    np.testing.assert_allclose(rows.weight, expected, rtol=1e-6)
    np.testing.assert_array_equal(rows.item[:, 0], data.train_items)


def _served(setup, stored, **changes) -> dict[str, np.ndarray]:
    """The embedding the serving fit of user 2 gives, starting from ``stored``."""
    cfg, fed, weights, model = setup
    model.load(weights, stored, (0, 2))
    settings = LocalSettings.from_run_config(cfg.replace(reconstruction_steps=10, **changes))
    model.fit_for_serving(fed.client(2), settings, (0, 2), np.random.default_rng(5))
    return model.private_weights()


def test_a_fresh_serving_fit_does_not_depend_on_the_stored_embedding(setup):
    _, _, _, model = setup
    ones = {k: np.ones_like(v) for k, v in model.private_weights().items()}
    for passes, same in ((2, True), (0, False)):   # 0: refresh what is stored
        a, b = _served(setup, None, serve_passes=passes), _served(setup, ones, serve_passes=passes)
        assert all(np.allclose(a[k], b[k]) for k in a) is same


def test_the_serving_fit_is_k_reconstructions_over_recency_weighted_rows(setup, monkeypatch):
    """serve-passes reconstructions, each over rows drawn afresh whose positives weigh
    serve-recency-decay^r (r = 0: the newest)."""
    cfg, fed, _, model = setup
    data = fed.client(2)
    drawn = []
    rows = model.rows
    monkeypatch.setattr(model, "rows", lambda *a: drawn.append(rows(*a)) or drawn[-1])
    _served(setup, None, serve_passes=3, serve_recency_decay=0.5)
    assert len(drawn) == 3
    expected = data.train_weights * 0.5 ** np.arange(len(data.train_items) - 1, -1, -1)
    for r in drawn:
        np.testing.assert_allclose(r.weight, expected, rtol=1e-6)
    assert not np.array_equal(drawn[0].item, drawn[1].item)   # negatives drawn afresh


def test_an_averaged_serving_fit_is_the_mean_of_fits_over_their_own_negatives(setup):
    cfg, fed, weights, model = setup
    settings = LocalSettings.from_run_config(cfg.replace(reconstruction_steps=10, serve_passes=2,
                                                         serve_recency_decay=0.8))
    rng = np.random.default_rng(5)
    fits = []
    for _ in range(3):   # one after another from the same stream
        model.fit_for_serving(fed.client(2), settings, (0, 2), rng)
        fits.append(model.private_weights())
    assert not np.allclose(*(f["user_gmf_embedding/embeddings"] for f in fits[:2]))
    model.load(weights, None, (0, 2))
    model.fit_for_serving(fed.client(2), replace(settings, serve_average=3), (0, 2),
                          np.random.default_rng(5))
    for name, value in model.private_weights().items():
        np.testing.assert_allclose(value, np.mean([f[name] for f in fits], axis=0), atol=1e-6)


@pytest.mark.parametrize("changes, message", [
    ({"lr_decay": 0.0}, "lr-decay must be in"),
    ({"recency_decay": 1.5}, "recency-decay must be in"),
    ({"local_optimizer": "rmsprop"}, "local-optimizer must be one of"),
    ({"local_adam_eps": 0.0}, "local-adam-eps must be > 0"),
    ({"serve_passes": -1}, "serve-passes must be >= 0"),
    ({"serve_recency_decay": 0.0}, "serve-recency-decay must be in"),
    ({"holdout": "train"}, "holdout must be one of"),
    ({"serve_average": 0}, "serve-average must be >= 1"),
    ({"serve_average": 2}, "serve-average > 1 needs serve-passes > 0"),
    ({"dp": "client", "recency_decay": 0.9}, "recency-decay must be 1 with client-level DP"),
])
def test_bad_local_settings_fail_with_one_line(changes, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**changes)


def test_simulate_flags_reach_the_run_config(tmp_path):
    import argparse

    from fedrec.simulations.simulate_args import add_arguments, build_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--lr-decay", "0.9", "--local-optimizer", "sgd",
                              "--local-adam-eps", "1e-3", "--recency-decay", "0.95",
                              "--reconstruction-steps", "20", "--server-momentum", "0.8",
                              "--serve-passes", "3", "--serve-recency-decay", "0.9",
                              "--serve-average", "4", "--holdout", "validation",
                              "--dim", "32", "--gmf-dim", "64", "--out", str(tmp_path)])
    cfg = build_config(args)
    assert (cfg.lr_decay, cfg.local_optimizer, cfg.local_adam_eps, cfg.recency_decay,
            cfg.reconstruction_steps, cfg.server_momentum, cfg.serve_passes,
            cfg.serve_recency_decay, cfg.serve_average, cfg.holdout) == (
                0.9, "sgd", 1e-3, 0.95, 20, 0.8, 3, 0.9, 4, "validation")
    assert (cfg.gmf_dim, cfg.mlp_dim) == (64, 32)   # --gmf-dim overrides --dim for GMF only
    assert build_config(parser.parse_args(["--dim", "8"])).mlp_dim == 8
    with pytest.raises(SystemExit):   # argparse: one line and exit 2
        parser.parse_args(["--local-optimizer", "rmsprop"])
