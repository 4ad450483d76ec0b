"""Client SDK: the device's event store and on-device recommendations."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedrec.client.recommender import Recommender
from fedrec.client.store import SCHEMA_VERSION, EventStore, SdkInputError
from fedrec.server.app import initial_global_weights
from fedrec.shared import privacy, protocol
from fedrec.shared.catalogue import load_catalogue
from fedrec.shared.config import RunConfig
from fedrec.shared.ledger import Ledger
from fedrec.shared.synthetic import SyntheticConfig, generate


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    path = tmp_path_factory.mktemp("cat") / "catalogue.csv"
    generate(SyntheticConfig(n_users=5, n_items=40, seed=2)).items.to_csv(path, index=False)
    return load_catalogue(str(path))


@pytest.fixture(scope="module")
def cfg():
    return RunConfig(gmf_dim=8, mlp_dim=8, content_dim=8)


def _device(tmp_path, catalogue, cfg, with_model=True):
    store = EventStore(tmp_path / "device.db", user_id="alice")
    if with_model:
        store.save_state(global_model=initial_global_weights(cfg, catalogue.n_items,
                                                             catalogue.item_features))
    return store, Recommender(store, catalogue, cfg)


# ----- event store -----

def test_store_keeps_events_and_state_across_restarts(tmp_path):
    with EventStore(tmp_path / "d.db", user_id="u1") as store:
        store.record("i1", "view", timestamp=10)
        store.record(7, "purchase", timestamp=20, value=9.5)
        ledger = Ledger("add_or_remove_one", 1e-5)
        ledger.record(1, privacy.dpsgd_event(1.0, 0.5, 4))
        store.save_state(user_embedding={"user_gmf_embedding/embeddings": np.ones((1, 4))},
                         ledger=ledger)
    with EventStore(tmp_path / "d.db", user_id="u1") as again:      # a restart
        events = again.events()
        assert list(events["item_id"]) == ["i1", "7"] and list(events["event"]) == ["view", "purchase"]
        assert events["value"].iloc[1] == 9.5 and np.isnan(events["value"].iloc[0])
        assert again.user_embedding()["user_gmf_embedding/embeddings"].sum() == 4
        assert again.ledger().rounds == [1] and again.version == SCHEMA_VERSION
        assert sqlite3.connect(tmp_path / "d.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_state_writes_are_all_or_nothing(tmp_path, monkeypatch):
    store = EventStore(tmp_path / "d.db")
    store.save_state(user_embedding={"e": np.zeros(2)}, global_model={"g": np.zeros(2)})
    real = store._put

    def crash_on_second(name, data, now, calls=[]):
        calls.append(name)
        if len(calls) == 2:
            raise OSError("disk full")
        real(name, data, now)
    monkeypatch.setattr(store, "_put", crash_on_second)
    with pytest.raises(OSError):
        store.save_state(user_embedding={"e": np.ones(2)}, global_model={"g": np.ones(2)})
    assert store.user_embedding()["e"].sum() == 0 and store.global_model()["g"].sum() == 0


def test_a_newer_schema_is_refused(tmp_path):
    EventStore(tmp_path / "d.db").close()
    db = sqlite3.connect(tmp_path / "d.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SdkInputError, match="newer than this SDK"):
        EventStore(tmp_path / "d.db")


@settings(max_examples=150, deadline=None)
@given(item=st.one_of(st.text(max_size=5), st.integers(), st.floats(), st.none(), st.booleans()),
       event=st.one_of(st.sampled_from(["view", "CLICK", "cart", "purchase", "rating", "like"]),
                       st.text(max_size=4), st.integers()),
       timestamp=st.one_of(st.none(), st.integers(min_value=-5, max_value=2**40), st.floats(),
                           st.text(max_size=3)),
       value=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                       st.text(max_size=3)))
@pytest.mark.inprocess
def test_record_accepts_good_input_and_refuses_the_rest_cleanly(tmp_path_factory, item, event,
                                                                timestamp, value):
    store = EventStore(tmp_path_factory.mktemp("fuzz") / "d.db")
    try:
        store.record(item, event, timestamp=timestamp, value=value)
        assert store.count() == 1
        assert store.events()["event"].iloc[0] in ("view", "click", "cart", "purchase", "rating")
    except SdkInputError as err:
        assert str(err) and store.count() == 0                   # nothing half-written
    store.close()


# ----- recommender -----

@pytest.mark.inprocess
def test_a_new_user_gets_recommendations_then_personal_ones(tmp_path, catalogue, cfg):
    store, rec = _device(tmp_path, catalogue, cfg)
    cold = rec.recommend(k=5)
    assert len(cold) == len(set(cold)) == 5 and store.user_embedding() is None
    liked = [str(i) for i in catalogue.item_ids[:6]]
    for t, item in enumerate(liked):
        store.record(item, "purchase", timestamp=100 + t)
    rec.update_from_events()
    assert store.user_embedding() is not None                     # fitted on the device
    warm = rec.recommend(k=5)
    assert not set(warm) & set(liked)                              # seen items excluded
    assert set(rec.recommend(k=40, exclude_seen=False)) == set(catalogue.item_ids.astype(str))


def test_candidates_diversity_and_bad_arguments(tmp_path, catalogue, cfg):
    _, rec = _device(tmp_path, catalogue, cfg)
    pool = [str(i) for i in catalogue.item_ids[10:20]]
    assert set(rec.recommend(k=3, candidates=pool)) <= set(pool)
    diverse = rec.recommend(k=8, diversity=0.9)
    assert len(set(diverse)) == 8
    for bad in (dict(k=0), dict(k="3"), dict(diversity=1.5), dict(candidates=["nope"])):
        with pytest.raises(SdkInputError):
            rec.recommend(**bad)


def test_fallbacks_before_any_model(tmp_path, catalogue, cfg):
    store, rec = _device(tmp_path, catalogue, cfg, with_model=False)
    with pytest.raises(SdkInputError, match="no global model"):
        rec.recommend()
    popularity = np.arange(catalogue.n_items, dtype=float)
    best = Recommender(store, catalogue, cfg, popularity=popularity).recommend(k=2)
    assert best == [str(catalogue.item_ids[-1]), str(catalogue.item_ids[-2])]


@pytest.mark.inprocess
def test_privacy_status_per_level_with_next_eligibility(tmp_path, catalogue, cfg):
    target = 15.0   # the two rounds below spend about 5.7 under replace-one
    store, rec = _device(tmp_path, catalogue, cfg)
    fresh = rec.privacy_status(target_epsilon=target)
    assert fresh["example"]["epsilon"] == 0.0 and fresh["example"]["remaining"] == target
    assert fresh["user"] is None and fresh["rounds_joined"] == 0 and fresh["last_round"] is None
    assert fresh["next_eligibility"] == {"round": None, "budget_allows_another_round": None}
    ledger = Ledger(privacy.EXAMPLE_RELATION, cfg.client_delta)
    event = privacy.dpsgd_event(2.0, 0.2, 10)
    for rnd in (1, 2):
        ledger.record(rnd, event)
    store.save_state(ledger=ledger, federation={      # as the ClientApp notes each round
        "round": 3, "rounds_joined": [1, 2], "participation_window": 2,
        "client_target_epsilon": None, "user_epsilon": 1.5, "user_delta": 1e-3})
    spent, one_more = ledger.epsilon("rdp"), ledger.epsilon("rdp", extra=event)
    status = rec.privacy_status(target_epsilon=target)
    assert status["example"]["epsilon"] == pytest.approx(spent)
    assert status["example"]["remaining"] == pytest.approx(target - spent)
    assert status["user"] == {"epsilon": 1.5, "delta": 1e-3, "accountant": "rdp", "as_of_round": 3}
    assert status["rounds_joined"] == 2 and status["last_round"] == 2
    assert status["next_eligibility"] == {"round": 4,           # last round 2 + window 2
                                         "budget_allows_another_round": one_more <= target}
    tight = rec.privacy_status(target_epsilon=(spent + one_more) / 2)
    assert tight["next_eligibility"]["budget_allows_another_round"] is False
    assert tight["example"]["remaining"] == pytest.approx((one_more - spent) / 2)


@pytest.mark.inprocess
def test_tflite_export_scores_like_keras(tmp_path, catalogue, cfg):
    import tensorflow as tf

    store, rec = _device(tmp_path, catalogue, cfg)
    store.record(str(catalogue.item_ids[3]), "cart", timestamp=5)
    rec.update_from_events()
    path = rec.export_tflite(tmp_path / "scorer.tflite")
    interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], np.array([0], np.int32))
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(out["index"])[0], rec.scores(), atol=1e-5)


@pytest.mark.inprocess
def test_the_client_app_trains_from_and_into_the_sdk_store(tmp_path, catalogue, cfg):
    """A deployed device whose app uses the SDK: events in, embedding/ledger/model kept."""
    from flwr.app import Context, Message, RecordDict

    from fedrec.client import app as capp
    from fedrec.server.app import round_config

    items = [str(i) for i in catalogue.item_ids[:12]]
    with EventStore(tmp_path / "phone.db", user_id="bob") as store:
        for t, item in enumerate(items):
            store.record(item, "view", timestamp=1000 + t)
    run = cfg.replace(catalogue=str(tmp_path / "unused.csv"), clients=1, dp="client",
                      out=str(tmp_path / "run"))
    catalogue.items.to_csv(run.catalogue, index=False)
    weights = initial_global_weights(run, catalogue.n_items, catalogue.item_features)
    for kind in ("train", "evaluate"):
        msg = Message(RecordDict({"arrays": protocol.to_record(weights),
                                  "config": round_config(run, 1)}), dst_node_id=9, message_type=kind)
        ctx = Context(run_id=1, node_id=9, node_config={"store-path": str(tmp_path / "phone.db"),
                                                        "device-index": 4},
                      state=RecordDict(), run_config=run.to_flower())
        reply = capp.app(msg, ctx)
        assert not reply.has_error(), reply.error
    with EventStore(tmp_path / "phone.db") as store:                # a restart of the app
        assert store.count() == len(items)
        assert store.ledger(run.client_delta).rounds == [1]          # DP round spent, kept
        assert store.user_embedding() is not None and store.global_model() is not None
        recs = Recommender(store, catalogue, run).recommend(k=5)
        assert len(recs) == 5 and not set(recs) & set(items)
