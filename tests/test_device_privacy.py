"""Issue 19, device side: example-level ε under replace-one (n is public), seeded rounds
only where the device allows them, 128-bit noise keys, noisy steps on empty batches, and
replay keys that cover the device's data and embedding."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from dp_accounting import dp_event as dpe
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant as rdp

from fedrec.client import app as capp
from fedrec.client import dp_sgd, local
from fedrec.client.local import LocalModel
from fedrec.client.state import LedgerStore, PrivateStore
from fedrec.shared import privacy, protocol
from fedrec.shared.config import RunConfig
from fedrec.shared.ledger import Ledger
from fedrec.shared.protocol import DpSgdPlan, LocalSettings
from tests.helpers import call_client as _call
from tests.helpers import initial_weights as _weights
from tests.helpers import small_config as _cfg
from tests.helpers import small_federation

REL = privacy.NeighborRel


@pytest.fixture(scope="module")
def fed():
    return small_federation()


# ----- item 1: replace-one -----

def test_dp_accounting_accounts_poisson_sampling_only_under_add_or_remove():
    """Why fedrec composes its own route: dp-accounting 0.4.3 refuses Poisson-sampled
    Gaussians under REPLACE_ONE in both its RDP and its PLD accountant."""
    event = privacy.dpsgd_event(2.0, 0.3, 5)
    assert rdp.RdpAccountant(privacy.RDP_ORDERS, REL.ADD_OR_REMOVE_ONE).supports(event)
    assert not rdp.RdpAccountant(privacy.RDP_ORDERS, REL.REPLACE_ONE).supports(event)
    assert not pld_privacy_accountant.PLDAccountant(REL.REPLACE_ONE).supports(event)
    assert privacy.make_accountant("rdp", "replace_one").supports(event)
    assert privacy.epsilons(event, 1e-5, "replace_one")["pld"] is None


def test_weak_triangle_by_hand():
    """(α - 1/2)/(α - 1) ε(2α) + ε(2α - 1): α = 2 -> 1.5 * 0.4 + 0.3; α = 3 -> 1.25 * 1 + 0.5."""
    from fedrec.shared.substitution import weak_triangle_rdp

    np.testing.assert_allclose(weak_triangle_rdp([2, 3], [0.4, 1.0], [0.3, 0.5]), [0.9, 1.75])
    with pytest.raises(ValueError):
        weak_triangle_rdp([1.0], [0.1], [0.1])


def test_replace_one_rdp_of_a_gaussian_by_hand():
    """q = 1 (every example every step): a Gaussian of sensitivity 2C, so the RDP at α of
    k steps is k α (2/z)^2 / 2 = 2 k α / z^2: at z = 4, k = 3, α = 2 that is 0.75."""
    acc = privacy.make_accountant("rdp", "replace_one")
    acc.compose(privacy.dpsgd_event(4.0, 1.0, 3))
    assert acc.rdp[list(acc.orders).index(2.0)] == pytest.approx(0.75, rel=1e-12)


def _independent_replace_one_epsilon(ledger_json: str) -> float:
    """An auditor's recomputation from a device ledger's JSON alone: dp-accounting's own
    orders and add-or-remove RdpAccountants at 2α and 2α - 1 for q < 1, its REPLACE_ONE
    Gaussian (z/2) for q = 1, Mironov's weak triangle written out here, dp-accounting's
    compute_epsilon. Shares no code with fedrec's accountant."""
    data = json.loads(ledger_json)
    orders = np.array([a for a in rdp.DEFAULT_RDP_ORDERS if a > 1], dtype=float)
    removal = rdp.RdpAccountant(list(2 * orders), REL.ADD_OR_REMOVE_ONE)
    addition = rdp.RdpAccountant(list(2 * orders - 1), REL.ADD_OR_REMOVE_ONE)
    whole = rdp.RdpAccountant(list(orders), REL.REPLACE_ONE)
    for _, event_dict, *_ in data["history"]:
        named = event_dict["event"]                     # SelfComposed(PoissonSampled(Gauss))
        q, z = named["sampling_probability"], named["event"]["noise_multiplier"]
        steps = event_dict["count"]
        if q == 1:
            whole.compose(dpe.GaussianDpEvent(z / 2), steps)
        else:
            step = dpe.PoissonSampledDpEvent(q, dpe.GaussianDpEvent(z))
            removal.compose(step, steps)
            addition.compose(step, steps)
    total = whole.rdp + (orders - 0.5) / (orders - 1) * removal.rdp + addition.rdp
    return rdp.compute_epsilon(orders, total, data["delta"])[0]


@pytest.mark.inprocess
def test_device_claims_replace_one_and_an_independent_recomputation_agrees(tmp_path, fed):
    """A device (q < 1: 29 examples, batch 8) runs two DP rounds; the ε it reports is
    under replace-one, and an auditor holding only its ledger file agrees within 1 %."""
    cfg = _cfg(tmp_path, dp="client", batch_size=8, client_noise_multiplier=1.5)
    weights, user = _weights(cfg, fed), 2
    replies = [_call(cfg, weights, user, "train", rnd=r) for r in (1, 2)]
    claimed = replies[-1].content["metrics"]["client-epsilon"]
    store = LedgerStore(cfg.client_state_root, user)
    ledger = store.load(cfg.client_delta)
    assert ledger.relation == "replace_one" and ledger.rounds == [1, 2]
    assert privacy.event_from_dict(ledger.history[0][1]).event.sampling_probability < 1
    independent = _independent_replace_one_epsilon(store.path.read_text())
    assert claimed == pytest.approx(independent, rel=0.01)
    assert claimed > 1.5 * Ledger("add_or_remove_one", cfg.client_delta,
                                  ledger.history).epsilon()      # about 2.5x add-or-remove


def test_the_median_movielens_client_at_z_3_88():
    """The README's example-level setting (64 examples, batch 32, 10 reconstruction + 4
    training steps per round, 10 rounds, δ = 1e-5): about 8 under add-or-remove, about
    19.9 under replace-one."""
    event = dpe.SelfComposedDpEvent(privacy.dpsgd_event(3.88, 0.5, 14), 10)
    assert privacy.epsilon(event, 1e-5) == pytest.approx(8.0, abs=0.01)
    assert privacy.epsilon(event, 1e-5, relation="replace_one") == pytest.approx(19.85, abs=0.01)


@pytest.mark.inprocess
def test_example_noise_is_calibrated_under_replace_one(tmp_path):
    from fedrec.simulations.calibrate import example_noise_multiplier

    cfg = RunConfig(dp="client", rounds=3, out=str(tmp_path))
    sigma = example_noise_multiplier(cfg, 64, 8.0)
    plan = LocalSettings.from_run_config(cfg.replace(client_noise_multiplier=sigma)).dp_plan(64)
    event = dpe.SelfComposedDpEvent(plan.event(), 3)
    assert privacy.epsilon(event, cfg.client_delta, relation="replace_one") == pytest.approx(
        8.0, rel=1e-3)
    assert privacy.epsilon(event, cfg.client_delta) < 5.0     # add-or-remove would say less


def test_manifest_declares_replace_one_for_the_example_level(tmp_path):
    from fedrec.server.dp import declared_privacy

    example = declared_privacy(RunConfig(dp="client", out=str(tmp_path)), 10, 10)["example"]
    assert example["relation"] == "replace_one" and "public" in example["relation_why"]
    assert example["second_opinion"] is None
    assert example["negatives"].startswith("per row")   # negatives depend on their row only


def test_an_old_add_or_remove_ledger_is_restated_under_replace_one(tmp_path):
    old = Ledger("add_or_remove_one", 1e-5)
    old.record(1, privacy.dpsgd_event(2.0, 0.25, 12))
    store = LedgerStore(tmp_path, 7)
    store.save(old)
    again = store.load(1e-5)
    assert again.relation == "replace_one" and again.history == old.history
    assert again.epsilon() > old.epsilon()


# ----- item 6: seeded rounds -----

def test_whether_a_device_allows_seeded_noise_is_its_own_setting():
    allows = capp.allows_seeded_noise
    assert not allows({"store-path": "/d.db", "device-index": 1})       # deployed: refuse
    assert not allows({"events-path": "/e.csv"})
    assert allows({"store-path": "/d.db", "allow-seeded-noise": True})
    assert allows({"events-path": "/e.csv", "allow-seeded-noise": "true"})
    assert allows({"partition-id": 3})                                   # simulated node
    assert not allows({"partition-id": 3, "allow-seeded-noise": False})


@pytest.mark.inprocess
def test_a_device_refuses_a_seeded_round_unless_it_allows_one(tmp_path, fed):
    from flwr.app import Context, Message, RecordDict

    from fedrec.server.app import round_config

    cfg = _cfg(tmp_path, dp="client", noise_seed=4)
    msg = Message(RecordDict({"arrays": protocol.to_record(_weights(cfg, fed)),
                              "config": round_config(cfg, 1)}), dst_node_id=4, message_type="train")
    ctx = Context(run_id=1, node_id=4, node_config={"partition-id": 3, "allow-seeded-noise": False},
                  state=RecordDict(), run_config=cfg.to_flower())
    reply = capp.app(msg, ctx)
    assert protocol.is_declined(reply) and "arrays" not in reply.content
    assert "allow-seeded-noise" in reply.content["config"]["declined-reason"]
    assert LedgerStore(cfg.client_state_root, 3).load(cfg.client_delta).rounds == []
    accepted = _call(cfg, _weights(cfg, fed), 3, "train", rnd=1)      # a simulated node
    assert "arrays" in accepted.content
    ledger = LedgerStore(cfg.client_state_root, 3).load(cfg.client_delta)
    assert ledger.rounds == [1] and ledger.seeded_rounds == [1] and not ledger.private()


def test_a_seeded_round_shows_as_not_private_in_privacy_status(tmp_path):
    from fedrec.client.recommender import Recommender
    from fedrec.client.store import EventStore
    from fedrec.shared.catalogue import load_catalogue
    from fedrec.shared.synthetic import SyntheticConfig, generate

    path = tmp_path / "catalogue.csv"
    generate(SyntheticConfig(n_users=5, n_items=40, seed=2)).items.to_csv(path, index=False)
    store = EventStore(tmp_path / "d.db")
    ledger = Ledger(privacy.EXAMPLE_RELATION, 1e-5)
    ledger.record(1, privacy.dpsgd_event(2.0, 0.2, 10))
    ledger.record(2, privacy.dpsgd_event(2.0, 0.2, 10), release_key="k", seeded=True)
    store.save_state(ledger=ledger)
    status = Recommender(store, load_catalogue(str(path)),
                         RunConfig(gmf_dim=8, mlp_dim=8, content_dim=8)).privacy_status()
    example = status["example"]
    assert example["private"] is False and example["seeded_rounds"] == [2]
    assert example["epsilon_against_seed_holder"] == float("inf")
    assert example["relation"] == "replace_one"
    assert Ledger.loads(ledger.dumps()).seeded_rounds == [2]


# ----- item 7: 128-bit device keys -----

def test_secret_device_randomness_uses_128_bits_of_os_entropy(monkeypatch):
    import secrets

    asked = []

    def randbits(k):
        asked.append(k)
        return secrets.SystemRandom().getrandbits(k)

    monkeypatch.setattr(capp.secrets, "randbits", randbits)
    settings = LocalSettings(1, 8, 0.1, 1, 0, 0.1, client_dp=True, noise_seed=-1)
    keys = [capp._dp_randomness(settings, 0, 3, 1)[1] for _ in range(2)]
    assert asked and min(asked) >= 128
    words = [local.noise_key_words(k) for k in keys]
    assert all(0 <= k < 1 << 128 for k in keys) and words[0][0] != words[1][0]
    assert words[0][1] != words[1][1]                   # both 64-bit words are drawn
    seeded = capp._dp_randomness(dataclasses.replace(settings, noise_seed=2), 0, 3, 1)[1]
    assert seeded >> 64 and seeded & ((1 << 64) - 1)    # a seeded key fills both words too


@pytest.mark.inprocess
def test_both_words_of_the_noise_key_shape_the_noise(tmp_path, fed):
    cfg = _cfg(tmp_path, dp="client", learning_rate=1.0, local_optimizer="sgd")
    model = LocalModel(cfg.model, fed.inter.n_items, fed.inter.item_features)
    start, data = _weights(cfg, fed), fed.client(2)
    plan = DpSgdPlan(2.0, clip=0.5, rate=1.0, reconstruction_steps=0, training_steps=1)

    def upload(key):
        model.load(start, None, (0, 2))
        model.train_dp(data, LocalSettings.from_run_config(cfg), plan, np.random.default_rng(5),
                       noise_key=key)
        return model.global_weights()["mlp_0/kernel"]

    base = (123 << 64) | 456
    np.testing.assert_array_equal(upload(base), upload(base))
    assert not np.allclose(upload(base), upload(base ^ 1))            # low word
    assert not np.allclose(upload(base), upload(base ^ (1 << 64)))    # high word
    with pytest.raises(ValueError):
        local.noise_key_words(1 << 128)


# ----- item 8: empty Poisson batches -----

def _sgd_round(tmp_path, fed, z, rate, steps, monkeypatch=None, empty=False):
    cfg = _cfg(tmp_path, dp="client", learning_rate=1.0, local_optimizer="sgd")
    if empty:   # every Poisson batch comes out empty
        monkeypatch.setattr(dp_sgd, "poisson_batches",
                            lambda n, q, k, rng: [np.zeros(0, np.int64)] * k)
    model = LocalModel(cfg.model, fed.inter.n_items, fed.inter.item_features)
    start, data = _weights(cfg, fed), fed.client(2)
    model.load(start, None, (0, 2))
    plan = DpSgdPlan(z, clip=0.5, rate=rate, reconstruction_steps=0, training_steps=steps)
    model.train_dp(data, LocalSettings.from_run_config(cfg), plan, np.random.default_rng(5),
                   noise_key=9)
    return model, {k: v - start[k] for k, v in model.global_weights().items()}, data


@pytest.mark.inprocess
def test_an_empty_poisson_batch_still_runs_its_noisy_step(tmp_path, fed, monkeypatch):
    """Every batch empty: each planned step still adds its noise (a zero clipped sum
    plus N(0, (zC)^2) over the expected batch), so the upload moves by
    lr z C / (q n) sqrt(steps) per weight, as in a round with examples."""
    z, rate, steps = 2.0, 0.25, 8
    model, update, data = _sgd_round(tmp_path, fed, z, rate, steps, monkeypatch, empty=True)
    assert model.dp.steps_run == steps
    expected = z * 0.5 / (rate * len(data.train_items)) * np.sqrt(steps)
    for name in ("mlp_0/kernel", "item_gmf_embedding/embeddings"):
        assert np.std(update[name]) == pytest.approx(expected, rel=0.1), name


@pytest.mark.inprocess
def test_every_planned_step_runs_where_empty_batches_are_likely(tmp_path, fed):
    """29 rows at q = 0.03: a batch is empty with odds 0.97^29 = 41 %, and every step
    is still run."""
    from fedrec.shared.training import poisson_batches

    rate, steps = 0.03, 40
    model, update, data = _sgd_round(tmp_path, fed, 1.0, rate, steps)
    settings = LocalSettings.from_run_config(_cfg(tmp_path, dp="client", learning_rate=1.0,
                                                  local_optimizer="sgd"))
    rng = np.random.default_rng(5)                       # the same draws, by hand
    rows = model.rows(data, settings, rng, dp=True)
    empty = sum(len(b) == 0 for b in poisson_batches(len(rows), rate, steps, rng))
    assert empty >= 10
    assert model.dp.steps_run == steps
    assert all(np.abs(u).max() > 0 for u in update.values())


# ----- item 12: replay keys -----

def test_release_key_covers_the_data_and_the_stored_embedding(tmp_path, fed):
    from flwr.app import Message, RecordDict

    from fedrec.server.app import round_config

    cfg = _cfg(tmp_path, dp="client", noise_seed=0)
    msg = Message(RecordDict({"arrays": protocol.to_record(_weights(cfg, fed)),
                              "config": round_config(cfg, 1)}), dst_node_id=1, message_type="train")
    settings, data = capp._settings(msg), fed.client(2)
    key = capp.release_key(msg, settings, 0, data, None)
    assert key == capp.release_key(msg, settings, 0, data, None)
    more = dataclasses.replace(data, train_items=np.append(data.train_items, 0),
                               train_weights=np.append(data.train_weights, 1.0))
    assert capp.release_key(msg, settings, 0, more, None) != key
    embedding = {"user_gmf_embedding/embeddings": np.ones((1, 8), np.float32)}
    stored = capp.release_key(msg, settings, 0, data, embedding)
    assert stored not in (key, None)
    other = {"user_gmf_embedding/embeddings": np.full((1, 8), 2, np.float32)}
    assert capp.release_key(msg, settings, 0, data, other) != stored
    secret = dataclasses.replace(settings, noise_seed=-1)
    assert capp.release_key(msg, secret, 0, data, None) is None


@pytest.mark.inprocess
def test_a_seeded_round_on_another_embedding_is_counted_again(tmp_path, fed):
    """The same seeded round replayed on the same inputs is free; run on a different
    stored embedding it is a different release and the ledger counts it."""
    cfg = _cfg(tmp_path, dp="client", noise_seed=0)
    weights, user = _weights(cfg, fed), 2
    _call(cfg, weights, user, "train", rnd=2)
    _call(cfg, weights, user, "train", rnd=2)            # a replay: free
    store, ledgers = PrivateStore(cfg.client_state_root, user), LedgerStore(
        cfg.client_state_root, user)
    assert ledgers.load(cfg.client_delta).rounds == [2]
    embedding = {k: v + 1.0 for k, v in store.load(2).items()}
    store.save(1, embedding)                              # round 2 now starts elsewhere
    _call(cfg, weights, user, "train", rnd=2)
    assert ledgers.load(cfg.client_delta).rounds == [2, 2]
