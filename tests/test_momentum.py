"""Server momentum after the DP noise (``fedrec.server.momentum``): FedAvgM's update, no ε spent."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg, FedAvgM

from fedrec.server.app import round_config
from fedrec.server.dp import ServerPrivacy, mechanism
from fedrec.server.momentum import ServerMomentumAfterNoise
from fedrec.server.strategy import get_state, make_strategy, set_state
from fedrec.shared import protocol
from fedrec.shared.config import RunConfig
from tests.helpers import FourNodeGrid as _Grid
from tests.helpers import training_replies as _replies

SHAPE = (30, 4)


def _round(strategy, weights, updates, rnd, cfg, privacy=None):
    """One training round of ``strategy`` on replies weights + update; (new weights, the
    round's privacy fields or None)."""
    arrays = protocol.to_record(weights)
    list(strategy.configure_train(rnd, arrays, round_config(cfg, rnd), _Grid()))
    replies = _replies(weights, [{"w": update} for update in updates])
    if privacy is not None:
        privacy.before_aggregation(strategy, rnd)
    new, _ = strategy.aggregate_train(rnd, replies)
    line = privacy.after_aggregation(strategy, rnd, len(replies)) if privacy else None
    return protocol.from_record(new), line


def _updates(rng):
    return [rng.normal(0.0, 0.01, SHAPE).astype(np.float32) for _ in range(4)]


def test_momentum_after_noise_is_flowers_fedavgm_update():
    """Around a plain FedAvg, the wrapper gives exactly what Flower's FedAvgM gives, round
    after round (the same update rule), and momentum changes the result."""
    cfg = RunConfig()
    common = dict(fraction_train=1.0, min_train_nodes=4, min_available_nodes=4)
    mine = ServerMomentumAfterNoise(FedAvg(**common), server_learning_rate=0.7,
                                    server_momentum=0.9)
    flower = FedAvgM(**common, server_learning_rate=0.7, server_momentum=0.9)
    plain = FedAvg(**common)
    rng = np.random.default_rng(0)
    weights = {"w": np.zeros(SHAPE, np.float32)}
    for rnd in (1, 2, 3):
        updates = _updates(rng)
        ours, _ = _round(mine, weights, updates, rnd, cfg)
        theirs, _ = _round(flower, weights, updates, rnd, cfg)
        average, _ = _round(plain, weights, updates, rnd, cfg)
        np.testing.assert_allclose(ours["w"], theirs["w"], rtol=1e-6, atol=1e-7)
        if rnd > 1:   # from round 2 on the momentum carries the earlier rounds
            assert np.abs(ours["w"] - average["w"]).max() > 1e-3
        weights = ours


def _dp_cfg(tmp_path, **changes):
    return RunConfig(out=str(tmp_path), dp="server", strategy="fedavgm", server_momentum=0.9,
                     server_learning_rate=0.5, noise_multiplier=1.0, clip=1.0, noise_seed=0,
                     **changes)


def test_momentum_sits_outside_the_dp_wrapper_and_spends_no_epsilon(tmp_path):
    """Under user-level DP, fedavgm is FedAvg inside Flower's DP wrapper with the momentum
    outside it: the first round moves η of the way to the *noised* average that plain
    DP-FedAvg releases (same noise seed), with the same noise std and ε; the manifest
    names the post-processing."""
    cfg = _dp_cfg(tmp_path)
    strategy = make_strategy(cfg, 4)
    assert isinstance(strategy, ServerMomentumAfterNoise)
    assert isinstance(strategy.strategy, DifferentialPrivacyServerSideFixedClipping)
    assert type(strategy.strategy.strategy) is FedAvg

    weights = {"w": np.full(SHAPE, 0.2, np.float32)}
    updates = _updates(np.random.default_rng(1))
    ours, line = _round(strategy, weights, updates, 1, cfg, ServerPrivacy(cfg, 4, 4))
    plain_cfg = cfg.replace(strategy="fedavg")
    released, plain_line = _round(make_strategy(plain_cfg, 4), weights, updates, 1, plain_cfg,
                                  ServerPrivacy(plain_cfg, 4, 4))
    assert np.std(released["w"] - weights["w"]) > 0.1          # the noise is there (std 0.25)
    np.testing.assert_allclose(ours["w"], weights["w"] + 0.5 * (released["w"] - weights["w"]),
                               rtol=1e-5, atol=1e-6)
    for key in ("epsilon", "epsilon_pld", "dp_noise_std", "dp_clip", "dp_event"):
        assert line[key] == plain_line[key]
    assert mechanism(cfg, 4, 4)["post_processing"] == {"server_momentum": 0.9,
                                                       "server_learning_rate": 0.5}
    assert mechanism(plain_cfg, 4, 4)["post_processing"] is None


@pytest.mark.inprocess
def test_momentum_state_survives_a_checkpoint(tmp_path):
    """The momentum is strategy state: restored into a fresh strategy, the next round is
    the same as the uninterrupted one's."""
    cfg = _dp_cfg(tmp_path)
    rng = np.random.default_rng(2)
    first, second = _updates(rng), _updates(rng)
    weights = {"w": np.zeros(SHAPE, np.float32)}
    strategy = make_strategy(cfg, 4)
    after_1, _ = _round(strategy, weights, first, 1, cfg, ServerPrivacy(cfg, 4, 4))
    state = get_state(strategy)
    assert state["0:momentum_vector:0"].shape == SHAPE
    straight, _ = _round(strategy, after_1, second, 2, cfg, ServerPrivacy(cfg, 4, 4))

    restored = make_strategy(cfg, 4)
    set_state(restored, state)
    resumed, _ = _round(restored, after_1, second, 2, cfg, ServerPrivacy(cfg, 4, 4))
    np.testing.assert_array_equal(resumed["w"], straight["w"])
    fresh, _ = _round(make_strategy(cfg, 4), after_1, second, 2, cfg, ServerPrivacy(cfg, 4, 4))
    assert not np.allclose(fresh["w"], straight["w"])          # the state mattered


@pytest.mark.parametrize("eta, beta", [(0.0, 0.9), (1.0, 1.0), (1.0, -0.1)])
def test_momentum_arguments_are_checked(eta, beta):
    with pytest.raises(ValueError, match="server (learning rate|momentum)"):
        ServerMomentumAfterNoise(FedAvg(), server_learning_rate=eta, server_momentum=beta)
