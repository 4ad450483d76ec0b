"""Differential privacy end to end (in-process): ledgers, budgets, noise, dense updates."""

from __future__ import annotations

import re

import numpy as np
import pytest
from dp_accounting import dp_event as dpe
from dp_accounting.rdp import rdp_privacy_accountant
from flwr.app import Message, RecordDict
from flwr.serverapp.strategy import FedAvg

from fedrec.client.mods import optional_fixedclipping_mod
from fedrec.client.state import LedgerStore
from fedrec.server.app import round_config
from fedrec.server.dp import ServerPrivacy, check_settings, noise_std
from fedrec.server.wrappers import wrap_strategy
from fedrec.shared import privacy, protocol
from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError
from fedrec.shared.ledger import Ledger
from fedrec.shared.protocol import DpSgdPlan, LocalSettings
from tests.helpers import FourNodeGrid as _Grid
from tests.helpers import call_client as _call
from tests.helpers import initial_weights as _weights
from tests.helpers import small_config as _cfg
from tests.helpers import small_federation
from tests.helpers import training_replies as _replies


@pytest.fixture(scope="module")
def fed():
    return small_federation()


# ----- ledgers -----

@pytest.mark.inprocess
def test_ledger_composes_rounds_exactly_like_a_direct_accountant_call():
    a = privacy.dpsgd_event(1.1, 0.05, 40)
    b = privacy.dpsgd_event(0.9, 0.10, 12)
    ledger = Ledger("add_or_remove_one", 1e-5)
    for rnd, event in enumerate([a, a, b, a], start=1):
        assert ledger.record(rnd, event)
    direct = rdp_privacy_accountant.RdpAccountant(privacy.RDP_ORDERS)
    for event in (a, a, b, a):
        direct.compose(event)
    assert ledger.epsilon("rdp") == pytest.approx(direct.get_epsilon(1e-5), rel=1e-12)
    assert ledger.entries()[0][1] == 2 and len(ledger.entries()) == 3  # coalesced a, a
    assert ledger.epsilon("pld") == pytest.approx(ledger.epsilon("rdp"), rel=0.15)
    # persistence round trip keeps every round and the same ε
    again = Ledger.loads(ledger.dumps())
    assert again.rounds == [1, 2, 3, 4] and again.epsilon("rdp") == ledger.epsilon("rdp")


def test_ledger_counts_a_replay_only_when_it_is_a_new_release():
    ledger = Ledger("add_or_remove_one", 1e-5)
    event = privacy.dpsgd_event(1.0, 0.1, 10)
    assert ledger.record(3, event, release_key="same-inputs-same-seeds")
    eps = ledger.epsilon()
    assert not ledger.record(3, event, release_key="same-inputs-same-seeds")  # identical output
    assert ledger.epsilon() == eps
    assert ledger.record(3, event, release_key="other-inputs")   # same round, new release
    assert ledger.record(3, event)                                # secret randomness: new draw
    assert ledger.rounds == [3, 3, 3] and ledger.epsilon() > eps
    assert Ledger.loads(ledger.dumps()).history == ledger.history


@pytest.mark.inprocess
def test_client_ledger_agrees_with_tensorflow_privacy_statement():
    """Same mechanism, two implementations: fedrec's ledger and tf-privacy's statement."""
    import tensorflow_privacy as tfp

    n, batch, epochs, sigma, delta = 1000, 50, 3, 1.1, 1e-5
    plan = LocalSettings(local_epochs=epochs, batch_size=batch, learning_rate=0.1, negatives=1,
                         reconstruction_steps=0, reconstruction_lr=0.1, client_dp=True,
                         client_noise_multiplier=sigma, client_delta=delta).dp_plan(n)
    assert plan.steps == 60 and plan.rate == 0.05
    ledger = Ledger("add_or_remove_one", delta)
    ledger.record(1, plan.event())
    statement = tfp.compute_dp_sgd_privacy_statement(
        number_of_examples=n, batch_size=batch, num_epochs=epochs, noise_multiplier=sigma,
        delta=delta, used_microbatching=False)
    theirs = float(re.search(r"Poisson sampling \(\*\):\s+([\d.]+)", statement).group(1))
    assert ledger.epsilon("rdp") == pytest.approx(theirs, abs=2e-3)


def test_user_level_event_matches_flower_sampling_and_replace_one_sensitivity():
    # everyone sampled: a plain Gaussian with z/2 (std zC/m over sensitivity 2C/m)
    event = privacy.user_level_event(100, 100, 100, noise_std=1.2 * 0.5 / 100, clip=0.5)
    assert event == dpe.GaussianDpEvent(pytest.approx(0.6))
    # fixed-size sampling without replacement; fewer replies mean less noise per update
    event = privacy.user_level_event(1000, 50, 40, noise_std=1.0 * 2.0 / 50, clip=2.0)
    assert isinstance(event, dpe.SampledWithoutReplacementDpEvent)
    assert (event.source_dataset_size, event.sample_size) == (1000, 50)
    assert event.event.noise_multiplier == pytest.approx(1.0 * 40 / 50 / 2)
    direct = rdp_privacy_accountant.RdpAccountant(
        privacy.RDP_ORDERS, privacy.NeighborRel.REPLACE_ONE)
    direct.compose(event, 30)
    ledger = Ledger("replace_one", 1e-4)
    for r in range(30):
        ledger.record(r, event)
    assert ledger.epsilon("rdp") == pytest.approx(direct.get_epsilon(1e-4), rel=1e-12)
    assert ledger.epsilon("pld") is None  # PLD has no sampling without replacement


# ----- client: example-level DP-SGD -----

@pytest.mark.inprocess
def test_client_dp_ledger_persists_and_matches_the_plan(tmp_path, fed):
    cfg = _cfg(tmp_path, dp="client", client_noise_multiplier=1.5)
    weights = _weights(cfg, fed)
    user = 3
    replies = [_call(cfg, weights, user, "train", rnd=r) for r in (1, 2)]
    plan = LocalSettings.from_run_config(cfg).dp_plan(len(fed.client(user).train_items))
    ledger = LedgerStore(cfg.client_state_root, user).load(cfg.client_delta)  # a "restart"
    assert ledger.rounds == [1, 2]
    expected = privacy.epsilon(dpe.SelfComposedDpEvent(plan.event(), 2), cfg.client_delta,
                               relation="replace_one")            # n is public: substitution
    assert ledger.relation == "replace_one"
    assert ledger.epsilon() == pytest.approx(expected, rel=1e-9)
    eps = [r.content["metrics"]["client-epsilon"] for r in replies]
    assert eps[0] < eps[1] == pytest.approx(expected, rel=1e-9)


@pytest.mark.inprocess
def test_client_declines_a_round_past_its_budget(tmp_path, fed):
    probe = _cfg(tmp_path / "probe", dp="client")
    plan = LocalSettings.from_run_config(probe).dp_plan(len(fed.client(5).train_items))
    one = privacy.epsilon(plan.event(), probe.client_delta, relation="replace_one")
    two = privacy.epsilon(dpe.SelfComposedDpEvent(plan.event(), 2), probe.client_delta,
                          relation="replace_one")
    cfg = _cfg(tmp_path / "run", dp="client", client_target_epsilon=(one + two) / 2)
    weights = _weights(cfg, fed)
    first = _call(cfg, weights, 5, "train", rnd=1)
    second = _call(cfg, weights, 5, "train", rnd=2)
    assert "arrays" in first.content and not protocol.is_declined(first)
    assert protocol.is_declined(second) and "arrays" not in second.content
    assert "budget" in second.content["config"]["declined-reason"]
    assert LedgerStore(cfg.client_state_root, 5).load(cfg.client_delta).rounds == [1]


def test_local_noise_scale_is_tensorflow_privacy_add_aggregate_noise_scale():
    """LocalModel draws its own (seeded) noise at std z*C/B: tf-privacy's scale for a mean loss."""
    import tensorflow as tf
    from tensorflow_privacy.privacy.fast_gradient_clipping.gradient_clipping_utils import (
        add_aggregate_noise,
    )

    tf.random.set_seed(0)
    z, clip, batch = 1.3, 0.7, 16
    noisy = add_aggregate_noise([tf.zeros([400, 250])], batch, clip, z, loss_reduction="mean")
    from fedrec.client.local import mean_noise_std
    assert float(tf.math.reduce_std(noisy[0])) == pytest.approx(mean_noise_std(z, clip, batch),
                                                                rel=0.01)


@pytest.mark.inprocess
def test_a_local_dp_step_adds_noise_of_the_planned_scale(tmp_path, fed):
    """One DP-SGD step with plain SGD (lr 1): with and without noise, same batch; the
    difference is the noise itself, std z * C / expected batch size."""
    from fedrec.client.local import LocalModel

    cfg = _cfg(tmp_path, dp="client", learning_rate=1.0, local_optimizer="sgd")
    data = fed.client(2)
    model = LocalModel(cfg.model, fed.inter.n_items, fed.inter.item_features)
    settings = LocalSettings.from_run_config(cfg)
    start = _weights(cfg, fed)
    moved = {}
    for z in (0.0, 3.0):
        plan = DpSgdPlan(z, clip=0.5, rate=1.0, reconstruction_steps=0, training_steps=1)
        model.load(start, None, (0, 2))
        model.train_dp(data, settings, plan, np.random.default_rng(5), noise_key=11)
        moved[z] = model.global_weights()
    noise = np.concatenate([(moved[3.0][k] - moved[0.0][k]).ravel() for k in start])
    expected = 3.0 * 0.5 / len(data.train_items)       # rate 1: every example, every step
    assert np.std(noise) == pytest.approx(expected, rel=0.05)


def _sgd_dp_update(tmp_path, fed, z, lazy, zero_weights=False, steps=6):
    """The global update of one client after ``steps`` DP-SGD steps with plain SGD."""
    import dataclasses

    from fedrec.client.local import LocalModel

    cfg = _cfg(tmp_path, dp="client", learning_rate=0.5, local_optimizer="sgd")
    data = fed.client(2)
    if zero_weights:   # no gradient at all: the update is the noise alone
        data = dataclasses.replace(data, train_weights=np.zeros_like(data.train_weights))
    model = LocalModel(cfg.model, fed.inter.n_items, fed.inter.item_features)
    model.lazy_noise = lazy
    start = _weights(cfg, fed)
    model.load(start, None, (0, 2))
    plan = DpSgdPlan(z, clip=0.5, rate=0.5, reconstruction_steps=0, training_steps=steps)
    model.train_dp(data, LocalSettings.from_run_config(cfg), plan, np.random.default_rng(5),
                   noise_key=11)
    return {k: v - start[k] for k, v in model.global_weights().items()}, data


def _tf_privacy_clipped_mean(model, variables, clip, x, y, w):
    """tensorflow-privacy's own clipped mean gradient over ``variables``: only the layers
    that own them trainable, as ``compute_clipped_gradients_and_outputs`` requires."""
    import tensorflow as tf
    from tensorflow_privacy.privacy.fast_gradient_clipping import clip_grads

    owned = {id(v) for v in variables}
    layers = [layer for layer in model.model.layers if layer.weights]
    for layer in layers:
        layer.trainable = any(id(v) in owned for v in layer.weights)
    try:
        loss = tf.keras.losses.BinaryCrossentropy(from_logits=True)
        model.model.compile(loss=loss)
        clipped, _, _ = clip_grads.compute_clipped_gradients_and_outputs(
            model.model, clip, model.dp.registry, x, y, w, clipping_loss=loss)
    finally:
        for layer in layers:
            layer.trainable = True
    return [tf.convert_to_tensor(g).numpy() for g in clipped]


@pytest.mark.inprocess
def test_a_dp_step_is_the_clipped_sum_over_the_expected_batch_size(tmp_path, fed):
    """Without noise, one DP-SGD step (plain SGD, lr 1) moves the global weights by minus
    the sum of per-example clipped gradients over the *expected* batch size: tf-privacy's
    mean over the drawn batch times drawn / expected."""
    from fedrec.client.local import LocalModel
    from fedrec.shared.training import batch_arrays, poisson_batches

    cfg = _cfg(tmp_path, dp="client", learning_rate=1.0, local_optimizer="sgd")
    settings, data = LocalSettings.from_run_config(cfg), fed.client(2)
    model = LocalModel(cfg.model, fed.inter.n_items, fed.inter.item_features)
    start = _weights(cfg, fed)
    model.load(start, None, (0, 2))
    plan = DpSgdPlan(0.0, clip=0.05, rate=0.5, reconstruction_steps=0, training_steps=1)
    model.train_dp(data, settings, plan, np.random.default_rng(5), noise_key=1)
    moved = {k: v - start[k] for k, v in model.global_weights().items()}

    rng = np.random.default_rng(5)                       # the same draws, by hand
    rows = model.rows(data, settings, rng, dp=True)
    idx = poisson_batches(len(rows), 0.5, 1, rng)[0]
    assert 0 < len(idx) != 0.5 * len(rows)               # drawn and expected sizes differ
    model.load(start, None, (0, 2))
    clipped = _tf_privacy_clipped_mean(model, model.global_vars, 0.05,
                                       *batch_arrays(rows, idx, fed.inter.item_features))
    biggest = 0.0
    for var, grad in zip(model.global_vars, clipped):
        name = var.name.rsplit(":", 1)[0]
        expected = -grad * len(idx) / (0.5 * len(rows))
        np.testing.assert_allclose(moved[name], expected, rtol=1e-3, atol=1e-6)
        biggest = max(biggest, np.abs(expected).max())
    assert biggest > 1e-3                                 # the comparison has teeth


@pytest.mark.parametrize("phase", ["user", "global"])
def test_each_dp_phase_clips_exactly_the_weights_it_trains(tmp_path, fed, phase):
    """Reconstruction steps clip the gradient of the user embedding alone, global steps
    that of the global group alone: the clipped sum equals tf-privacy's with only that
    phase's layers trainable, at a clip that binds (a norm over both groups would give
    other clip factors), and an unclipped run tells the clip did bind."""
    import tensorflow as tf

    from fedrec.client.local import LocalModel
    from fedrec.shared.training import batch_arrays

    cfg = _cfg(tmp_path, dp="client")
    settings, data = LocalSettings.from_run_config(cfg), fed.client(3)
    model = LocalModel(cfg.model, fed.inter.n_items, fed.inter.item_features)
    model.load(_weights(cfg, fed), None, (0, 3))
    rows = model.rows(data, settings, np.random.default_rng(1))
    batch = batch_arrays(rows, np.arange(len(rows)), fed.inter.item_features)
    variables = model.user_vars if phase == "user" else model.global_vars
    clipped = [np.asarray(tf.convert_to_tensor(g)) for g in
               model.dp.clipped_sum(variables, *batch, 0.01, float(len(rows)))[0]]
    free = [np.asarray(tf.convert_to_tensor(g)) for g in
            model.dp.clipped_sum(variables, *batch, 1e6, float(len(rows)))[0]]
    reference = _tf_privacy_clipped_mean(model, variables, 0.01, *batch)
    assert len(clipped) == len(variables) == len(reference)
    for mine, theirs in zip(clipped, reference):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-7)
    norm = lambda grads: np.sqrt(sum(np.sum(g ** 2) for g in grads))  # noqa: E731
    assert norm(clipped) < 0.5 * norm(free)                # the clip bound


def test_pad_batch_adds_weightless_copies_of_the_first_row():
    from fedrec.shared.training import pad_batch

    x = {"user": np.arange(5), "item": np.arange(10).reshape(5, 2)}
    y, w = np.ones((5, 2), np.float32), np.full(5, 0.5, np.float32)
    px, py, pw = pad_batch((x, y, w), 4)
    assert len(pw) == 8 and px["item"].shape == (8, 2) and py.shape == (8, 2)
    np.testing.assert_array_equal(px["item"][:5], x["item"])
    np.testing.assert_array_equal(px["item"][5:], np.tile(x["item"][0], (3, 1)))
    np.testing.assert_array_equal(pw, [0.5] * 5 + [0.0] * 3)
    assert pad_batch((x, y, w), 5)[0] is x                  # a multiple already: unchanged


def test_padding_a_dp_batch_changes_neither_the_clipped_sum_nor_the_loss(tmp_path, fed):
    """The rows DP-SGD pads its Poisson batches with (weight 0) contribute nothing, at a
    clip that binds."""
    import tensorflow as tf

    from fedrec.client.local import LocalModel
    from fedrec.shared.training import batch_arrays, pad_batch

    cfg = _cfg(tmp_path, dp="client")
    model = LocalModel(cfg.model, fed.inter.n_items, fed.inter.item_features)
    model.load(_weights(cfg, fed), None, (0, 4))
    rows = model.rows(fed.client(4), LocalSettings.from_run_config(cfg), np.random.default_rng(2))
    batch = batch_arrays(rows, np.arange(7), fed.inter.item_features)
    padded = pad_batch(batch, 16)
    assert len(padded[2]) == 16
    dense = lambda grads: [np.asarray(tf.convert_to_tensor(g)) for g in grads]  # noqa: E731
    plain, loss = model.dp.clipped_sum(model.global_vars, *batch, 0.01, 20.0)
    pads, pad_loss = model.dp.clipped_sum(model.global_vars, *padded, 0.01, 20.0)
    for a, b in zip(dense(plain), dense(pads)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    assert float(loss) == pytest.approx(float(pad_loss), rel=1e-6)
    assert max(np.abs(g).max() for g in dense(plain)) > 1e-5


@pytest.mark.inprocess
def test_lazy_table_noise_without_noise_is_plain_dp_sgd(tmp_path, fed):
    lazy, _ = _sgd_dp_update(tmp_path, fed, 0.0, lazy=True)
    eager, _ = _sgd_dp_update(tmp_path, fed, 0.0, lazy=False)
    assert np.abs(lazy["item_gmf_embedding/embeddings"]).max() > 0
    for k in eager:
        np.testing.assert_allclose(lazy[k], eager[k], rtol=1e-5, atol=1e-7)


@pytest.mark.inprocess
def test_lazy_table_noise_gives_every_row_the_noise_of_every_step(tmp_path, fed):
    """With no gradient the update is -lr times the noise of all executed steps:
    std lr * z C / B * sqrt(steps) on every entry, on the rows that batches read (caught
    up before each read) and on those they never read (caught up at the end) alike.
    Every one of the 6 Poisson batches at rate 0.5 is non-empty (each has 0.5^rows odds
    of being empty)."""
    z, steps = 2.0, 6
    update, data = _sgd_dp_update(tmp_path, fed, z, lazy=True, zero_weights=True, steps=steps)
    lr, clip, expected_batch = 0.5, 0.5, 0.5 * len(data.train_items)
    expected = lr * z * clip / expected_batch * np.sqrt(steps)
    for name in ("item_gmf_embedding/embeddings", "item_mlp_embedding/embeddings",
                 "mlp_0/kernel"):
        assert np.std(update[name]) == pytest.approx(expected, rel=0.08), name
    table = update["item_gmf_embedding/embeddings"]
    read = np.unique(data.train_items)          # positives: read by (nearly) every batch
    assert np.std(table[read]) == pytest.approx(expected, rel=0.25)
    assert np.abs(np.mean(table)) < 0.1 * expected


@pytest.mark.inprocess
def test_client_noise_is_applied_seeded_and_hides_which_items_were_touched(tmp_path, fed):
    user = 4
    touched = set(np.asarray(fed.client(user).train_items).tolist())

    def update(sub, **dp):
        cfg = _cfg(tmp_path / sub, **dp)
        weights = _weights(cfg, fed)
        sent = protocol.from_record(_call(cfg, weights, user, "train", rnd=1).content["arrays"])
        return {k: sent[k] - weights[k] for k in weights}

    a, b = update("a", dp="client", noise_seed=0), update("b", dp="client", noise_seed=0)
    c = update("c", dp="client", noise_seed=1)
    secret = [update(f"s{i}", dp="client") for i in range(2)]  # default: OS entropy
    name = "item_gmf_embedding/embeddings"
    np.testing.assert_array_equal(a[name], b[name])            # same seeds, same noise
    assert not np.allclose(a[name], c[name])                   # another noise seed differs
    assert not np.allclose(secret[0][name], secret[1][name])   # secret noise never repeats
    rows_changed = np.flatnonzero(np.abs(a[name]).sum(axis=1) > 0)
    assert len(rows_changed) == fed.inter.n_items              # every row moved: dense
    plain = update("plain")
    plain_changed = set(np.flatnonzero(np.abs(plain[name]).sum(axis=1) > 0).tolist())
    assert touched <= plain_changed < set(range(fed.inter.n_items))  # without DP: a leak


# ----- server: user-level DP-FedAvg -----

def _aggregate(cfg, weights, updates, rnd=1):
    strategy = wrap_strategy(FedAvg(fraction_train=1.0, min_train_nodes=4, min_available_nodes=4),
                             cfg, sampled=4)
    sp = ServerPrivacy(cfg, 4, 4)
    arrays = protocol.to_record(weights)
    list(strategy.configure_train(rnd, arrays, round_config(cfg, rnd), _Grid()))
    replies = _replies(weights, updates)
    sp.before_aggregation(strategy, rnd)
    new, _ = strategy.aggregate_train(rnd, replies)
    return protocol.from_record(new), sp.after_aggregation(strategy, rnd, len(replies)), strategy


def test_server_noise_std_is_what_the_mechanism_implies_and_is_seeded(tmp_path):
    weights = {"w": np.zeros((200, 50), np.float32)}
    same = [{"w": np.full((200, 50), 0.001, np.float32)} for _ in range(4)]  # norm 0.1 < clip
    cfg = RunConfig(out=str(tmp_path), dp="server", noise_multiplier=2.0, clip=1.0, noise_seed=0)
    new, line, _ = _aggregate(cfg, weights, same)
    assert line["dp_noise_std"] == pytest.approx(2.0 * 1.0 / 4)
    assert np.std(new["w"] - 0.001) == pytest.approx(line["dp_noise_std"], rel=0.03)
    again, _, _ = _aggregate(cfg, weights, same)
    other, _, _ = _aggregate(cfg.replace(noise_seed=9), weights, same)
    secret = [_aggregate(cfg.replace(noise_seed=-1), weights, same)[0] for _ in range(2)]
    np.testing.assert_array_equal(new["w"], again["w"])
    assert not np.allclose(new["w"], other["w"])
    assert not np.allclose(secret[0]["w"], secret[1]["w"])       # the default: unpredictable
    assert line["dp_event"] == privacy.event_to_dict(dpe.GaussianDpEvent(1.0))  # z / 2
    assert line["epsilon"] == pytest.approx(privacy.epsilon(
        dpe.GaussianDpEvent(1.0), cfg.user_delta(4), relation="replace_one"))


def test_server_side_clipping_bounds_each_update(tmp_path):
    weights = {"w": np.zeros((10,), np.float32)}
    big = [{"w": np.full((10,), 100.0, np.float32)} for _ in range(4)]
    cfg = RunConfig(out=str(tmp_path), dp="server", noise_multiplier=0.0, clip=0.5)
    new, line, _ = _aggregate(cfg, weights, big)
    assert np.linalg.norm(new["w"]) == pytest.approx(0.5, rel=1e-5)
    assert line["epsilon"] == float("inf")      # DP claimed without noise: not private


def test_adaptive_clipping_accounts_the_clip_it_used_and_the_noise_it_added(tmp_path):
    weights = {"w": np.zeros((100,), np.float32)}
    updates = [{"w": np.full((100,), 1.0, np.float32)} for _ in range(4)]  # norm 10 > clip
    cfg = RunConfig(out=str(tmp_path), dp="server", dp_clipping="server-adaptive",
                    noise_multiplier=0.5, clip=1.0, clipped_count_stddev=2.0)
    _, line, strategy = _aggregate(cfg, weights, updates)
    assert line["dp_clip"] == 1.0 and strategy.clipping_norm != 1.0
    assert line["dp_noise_std"] == pytest.approx(noise_std(strategy))
    inner = privacy.event_from_dict(line["dp_event"])
    assert inner.events[0].noise_multiplier == pytest.approx(line["dp_noise_std"] * 4 / 2.0)
    assert inner.events[1] == dpe.GaussianDpEvent(2.0)


@pytest.mark.inprocess
def test_fewer_replies_than_sampled_are_accounted_as_less_noise_per_update(tmp_path):
    cfg = RunConfig(out=str(tmp_path), dp="server", noise_multiplier=2.0, clip=1.0)
    full = privacy.user_level_event(100, 10, 10, 2.0 / 10, 1.0)
    short = privacy.user_level_event(100, 10, 6, 2.0 / 10, 1.0)
    assert short.event.noise_multiplier == pytest.approx(0.6 * full.event.noise_multiplier)
    assert privacy.epsilon(short, 1e-4, relation="replace_one") > privacy.epsilon(
        full, 1e-4, relation="replace_one")
    sp = ServerPrivacy(cfg.replace(target_epsilon=privacy.epsilon(
        dpe.SelfComposedDpEvent(full, 2), cfg.user_delta(100), relation="replace_one") * 1.01),
        100, 10)
    sp.ledger.record(1, full)
    assert sp.exceeded(1) is None
    sp.ledger.record(2, short)                # ran with fewer replies than planned
    assert "target" in sp.exceeded(2)


def test_adaptive_plan_uses_flowers_split_of_the_noise(tmp_path):
    cfg = RunConfig(out=str(tmp_path), dp="server", dp_clipping="server-adaptive",
                    noise_multiplier=0.5, clip=1.0, clipped_count_stddev=2.0)
    weights = {"w": np.zeros((100,), np.float32)}
    _, line, strategy = _aggregate(cfg, weights, [{"w": np.full((100,), 0.01, np.float32)}] * 4)
    planned = ServerPrivacy(cfg, 4, 4).planned_event()
    # Flower's own split (the wrapper's noise multiplier), before the clip adapts
    assert planned.events[0].noise_multiplier == pytest.approx(strategy.noise_multiplier / 2)
    assert planned.events[1] == dpe.GaussianDpEvent(2.0)


@pytest.mark.inprocess
def test_server_refuses_a_round_past_the_target(tmp_path):
    cfg = RunConfig(out=str(tmp_path), dp="server", noise_multiplier=4.0, clip=1.0)
    sp = ServerPrivacy(cfg, 100, 10)
    one = sp.ledger.epsilon(extra=sp.planned_event())
    sp = ServerPrivacy(cfg.replace(target_epsilon=one * 1.5), 100, 10)
    assert sp.refuse(1) is None
    sp.ledger.record(1, sp.planned_event())
    assert "target" in sp.refuse(2)


def test_fixedclipping_mod_clips_updates_and_tolerates_zero_ones():
    weights = {"w": np.zeros((4,), np.float32)}
    sent = Message(RecordDict({"arrays": protocol.to_record(weights),
                               "config": round_config(RunConfig(), 1)}),
                   dst_node_id=1, message_type="train")
    sent.content["config"]["clipping_norm"] = 0.5

    def answer(update):
        arrays = protocol.to_record({"w": np.full((4,), update, np.float32)})
        return lambda msg, ctx: Message(RecordDict({"arrays": arrays}), reply_to=msg)

    clipped = optional_fixedclipping_mod(sent, None, answer(3.0))
    clipped_update = protocol.from_record(clipped.content["arrays"])["w"]
    assert np.linalg.norm(clipped_update) == pytest.approx(0.5)
    zero = optional_fixedclipping_mod(sent, None, answer(0.0))   # Flower's mod would divide by 0
    assert not zero.has_error()
    del sent.content["config"]["clipping_norm"]
    untouched = optional_fixedclipping_mod(sent, None, answer(3.0))
    assert protocol.from_record(untouched.content["arrays"])["w"][0] == 3.0


# ----- bad settings: one clear line -----

@pytest.mark.parametrize("changes, message", [
    ({"noise_multiplier": -1.0}, "noise-multiplier must be a finite number >= 0"),
    ({"clip": 0.0}, "clip must be > 0"),
    ({"client_clip": -1.0}, "client-clip must be > 0"),
    ({"dp": "local"}, "dp must be one of"),
    ({"delta": 1.5}, "delta must be in"),
    ({"dp": "server", "strategy": "fedadam"}, "needs strategy fedavg or fedavgm"),
    ({"dp": "server", "dp_clipping": "client-fixed", "secagg": True, "strategy": "fedavgm"},
     r"fedavgm \(fedavg with secagg\)"),
])
def test_bad_dp_settings_fail_at_the_edge(changes, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**changes)


def test_impossible_budgets_and_delta_are_refused_before_running(tmp_path):
    base = RunConfig(out=str(tmp_path), dp="both", noise_multiplier=1.0)
    with pytest.raises(ConfigError, match="must be < 1/N"):
        check_settings(base.replace(delta=0.2), 10, [20] * 10)
    with pytest.raises(ConfigError, match="already exceeded by one round"):
        check_settings(base.replace(target_epsilon=0.01), 10, [20] * 10)
    with pytest.raises(ConfigError, match="client-target-epsilon .* already"):
        check_settings(base.replace(client_target_epsilon=0.01), 10, [20] * 10)
    with pytest.raises(ConfigError, match="client-delta .* must be < 1/n"):
        check_settings(base.replace(client_delta=0.1), 10, [20] * 10)
    with pytest.raises(ConfigError, match="dp settings"):  # Flower's adaptive noise split
        check_settings(base.replace(dp_clipping="server-adaptive", noise_multiplier=5.0), 10,
                       [20] * 10)
    check_settings(base, 10, [20] * 10)   # sane settings pass
