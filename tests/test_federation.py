"""The ClientApp in-process (no Ray): what leaves the device, and exact metric aggregation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from flwr.app import Message, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords, aggregate_metricrecords

from fedrec.client import app as capp
from fedrec.client.state import PrivateStore
from fedrec.server.app import initial_global_weights
from fedrec.server.reply_order import eval_order, train_order
from fedrec.shared import protocol
from fedrec.shared.config import RunConfig
from fedrec.shared.evaluate import evaluate
from fedrec.shared.federated_data import federation_of
from fedrec.shared.interactions import evaluation_negatives
from fedrec.shared.model import build_model, get_private_weights, make_scorer, set_weights
from tests.helpers import call_client as _call

N_USERS = 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = RunConfig(synthetic_users=N_USERS, synthetic_items=60,
                    out=str(tmp_path_factory.mktemp("run")), gmf_dim=8, mlp_dim=8, content_dim=8)
    fed = federation_of(cfg)
    weights = initial_global_weights(cfg, fed.inter.n_items, fed.inter.item_features)
    return cfg, fed, weights


def test_replies_carry_only_the_global_group(setup):
    cfg, fed, weights = setup
    model = build_model(cfg.model, 1, fed.inter.n_items, fed.inter.item_features.shape[1])
    private = get_private_weights(model)
    private_shapes = {v.shape for v in private.values()}
    for user in range(N_USERS):
        reply = _call(cfg, weights, user, "train")
        assert set(reply.content.keys()) == {"arrays", "metrics"}
        sent = protocol.from_record(reply.content["arrays"])
        assert set(sent) == set(weights)                          # by name: global only
        assert not any(name.startswith("user_") for name in sent)
        assert not any(a.shape in private_shapes for a in sent.values())  # by shape
        stored = PrivateStore(cfg.client_state_root, user).load(1)
        assert set(stored) == set(private)                         # it stayed on the device
        for arr in stored.values():                                # ... and appears nowhere
            assert not any(a.size >= arr.size and np.isin(arr.ravel(), a.ravel()).all()
                           for a in sent.values())
        assert reply.content["metrics"]["num-examples"] == len(fed.client(user).train_items)


def test_training_changes_the_global_weights_and_is_deterministic(setup):
    cfg, _, weights = setup
    a = protocol.from_record(_call(cfg, weights, 2, "train", rnd=7).content["arrays"])
    b = protocol.from_record(_call(cfg, weights, 2, "train", rnd=7).content["arrays"])
    assert any(not np.allclose(a[k], weights[k]) for k in weights)
    for k in weights:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7)


def test_federated_metrics_equal_a_centralized_evaluation(setup):
    """Flower's weighted average of per-client replies == evaluate() on the same model."""
    cfg, fed, weights = setup
    replies = [_call(cfg, weights, u, "evaluate", rnd=3) for u in range(N_USERS)]
    agg = aggregate_metricrecords([r.content for r in replies], "num-examples")
    # centralized: one model with every device's (just refreshed) user embedding
    model = build_model(cfg.model, N_USERS, fed.inter.n_items, fed.inter.item_features.shape[1])
    set_weights(model, weights, "global")
    private = {k: np.zeros_like(v) for k, v in get_private_weights(model).items()}
    for u in range(N_USERS):
        for k, v in PrivateStore(cfg.client_state_root, u).load(3, kind="eval").items():
            private[k][u] = v[0]
    set_weights(model, private, "private")
    negatives = evaluation_negatives(fed.split, 99, cfg.seed, "test")
    central = evaluate(make_scorer(model, fed.inter.item_features), fed.split, negatives,
                       beyond=False)
    assert agg["hr@10"] == pytest.approx(central["hr@10"], abs=1e-6)
    assert agg["ndcg@10"] == pytest.approx(central["ndcg@10"], abs=1e-6)
    assert agg["mrr"] == pytest.approx(central["mrr"], abs=1e-6)
    assert agg["full_hr@10"] == pytest.approx(central["full_hr@10"], abs=1e-6)
    assert agg["full_ndcg@10"] == pytest.approx(central["full_ndcg@10"], abs=1e-6)


def test_private_store_versions_by_round(tmp_path):
    store = PrivateStore(tmp_path, 4)
    assert store.load(10) is None
    store.save(1, {"user_gmf_embedding/embeddings": np.ones((1, 2), np.float32)})
    store.save(2, {"user_gmf_embedding/embeddings": np.full((1, 2), 2, np.float32)})
    store.save(3, {"user_gmf_embedding/embeddings": np.full((1, 2), 3, np.float32)})
    assert store.load(2)["user_gmf_embedding/embeddings"][0, 0] == 2   # resume of round 3
    assert store.load(9)["user_gmf_embedding/embeddings"][0, 0] == 3
    assert store.load(1) is None                                       # pruned: keep two
    store.save(3, {"user_gmf_embedding/embeddings": np.zeros((1, 2), np.float32)}, kind="eval")
    assert store.load(9)["user_gmf_embedding/embeddings"][0, 0] == 3   # eval state apart
    assert store.load(9, kind="eval")["user_gmf_embedding/embeddings"][0, 0] == 0


def test_evaluation_does_not_change_what_training_starts_from(setup):
    cfg, _, weights = setup
    plain = protocol.from_record(_call(cfg, weights, 4, "train", rnd=2).content["arrays"])
    _call(cfg, weights, 4, "evaluate", rnd=1)           # an evaluation in between
    again = protocol.from_record(_call(cfg, weights, 4, "train", rnd=2).content["arrays"])
    for k in plain:
        np.testing.assert_allclose(plain[k], again[k], rtol=1e-6, atol=1e-7)


def test_train_sizes_count_what_each_client_trains_on(setup):
    _, fed, _ = setup
    assert fed.train_sizes().tolist() == [len(fed.client(u).train_items)
                                          for u in range(fed.n_clients)]


def test_a_fresh_serving_fit_does_not_depend_on_past_training(setup, tmp_path):
    """With serve-passes > 0 the evaluated embedding is fitted from the user's initial
    draw: a device that trained before ranks exactly as one that never did; with the
    default refresh (0) it does not."""
    cfg, _, weights = setup

    def served(passes: int, trained: bool) -> dict[str, np.ndarray]:
        run = cfg.replace(out=str(tmp_path / f"{passes}{trained}"), serve_passes=passes,
                          serve_recency_decay=0.8)
        if trained:
            _call(run, weights, 5, "train", rnd=1)
        _call(run, weights, 5, "evaluate", rnd=2)
        return PrivateStore(run.client_state_root, 5).load(2, kind="eval")

    for passes, same in ((2, True), (0, False)):
        a, b = served(passes, False), served(passes, True)
        assert all(np.allclose(a[k], b[k]) for k in a) is same


def test_the_validation_view_holds_out_the_validation_item(setup):
    cfg, fed, weights = setup
    data = fed.client(3)
    view = data.for_validation()
    assert view.test_item == data.val_item and view.val_item == -1
    np.testing.assert_array_equal(view.test_negatives, data.val_negatives)
    np.testing.assert_array_equal(view.train_items, data.train_items[:-1])
    assert data.val_item not in view.train_items and data.test_item not in view.train_items
    # a run with holdout = validation trains and ranks on that view
    run = cfg.replace(holdout="validation")
    reply = _call(run, weights, 3, "train", rnd=1).content["metrics"]
    assert reply["num-examples"] == len(view.train_items)


def _reply(arrays: dict | None, metrics: dict) -> Message:
    """A client's reply as the server receives it (to a train message for node 1)."""
    sent = Message(RecordDict(), dst_node_id=1, message_type="train")
    content = {"metrics": MetricRecord(metrics)}
    if arrays is not None:
        content["arrays"] = capp.to_record(arrays)
    return Message(RecordDict(content), reply_to=sent)


def _permutations(items: list) -> list[list]:
    return [list(p) for p in itertools.permutations(items)]


def test_training_aggregation_is_the_same_in_every_reply_order():
    # equal weight and loss (an audit run's canaries): only the arrays tell them apart
    values = [np.float32(0.1), np.float32(0.2), np.float32(0.7), np.float32(1e-3)]
    replies = [_reply({"w": np.array([v])}, {"num-examples": 1, "train-loss": 0.0})
               for v in values]
    unsorted = {aggregate_arrayrecords([m.content for m in p], "num-examples")["w"].numpy()
                .tobytes() for p in _permutations(replies)}
    assert len(unsorted) > 1   # Flower's float sum does depend on the order
    in_order = {aggregate_arrayrecords([m.content for m in sorted(p, key=train_order)],
                                       "num-examples")["w"].numpy().tobytes()
                for p in _permutations(replies)}
    assert len(in_order) == 1


def test_evaluation_average_is_the_same_in_every_reply_order():
    replies = [_reply(None, {"num-examples": 1, "ndcg@10": v, "client-seconds": 9.0 - v})
               for v in (0.1, 0.2, 0.3, 0.7)]
    unsorted = {aggregate_metricrecords([m.content for m in p], "num-examples")["ndcg@10"]
                for p in _permutations(replies)}
    assert len(unsorted) > 1
    in_order = {aggregate_metricrecords([m.content for m in sorted(p, key=eval_order)],
                                        "num-examples")["ndcg@10"]
                for p in _permutations(replies)}
    assert len(in_order) == 1
