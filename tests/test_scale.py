"""The scale path (``lazy-clients``): clients generated on demand, few simulation nodes
acting for many users, memory measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedrec.server.rundir import RunDir
from fedrec.server.slots import SlotGrid, slots_needed
from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError
from fedrec.shared.federated_data import load_federation
from fedrec.shared.lazy_synthetic import LazySyntheticFederation
from fedrec.shared.synthetic import SyntheticConfig
from fedrec.simulations.inprocess import InProcessGrid


def test_a_lazy_client_holds_the_same_events_as_the_eager_one():
    lazy = LazySyntheticFederation(SyntheticConfig(n_users=150, n_items=120, seed=5), seed=5)
    eager = load_federation("synthetic", 5, 150, 120)
    for u in range(0, 150, 7):
        a, b = lazy.client(u), eager.client(u)
        assert list(lazy.catalogue.item_ids[a.train_items]) == list(eager.inter.item_ids[b.train_items])
        np.testing.assert_array_equal(a.train_weights, b.train_weights)
        assert a.evaluable == b.evaluable
        if a.evaluable:
            assert lazy.catalogue.item_ids[a.test_item] == eager.inter.item_ids[b.test_item]
            assert len(a.test_negatives) == len(b.test_negatives) and a.test_item not in a.test_negatives
    np.testing.assert_array_equal(lazy.train_sizes(), eager.train_sizes())
    # the server side needs the catalogue only: same items, same content features
    order = [list(eager.inter.item_ids).index(i) for i in lazy.catalogue.item_ids]
    np.testing.assert_array_equal(lazy.item_features, eager.item_features[order])


class _EchoGrid:
    """Slots 101..103 that reply with the user they were told to act for."""

    def __init__(self) -> None:
        self.sent: list[list[Message]] = []

    def get_node_ids(self):
        return [103, 101, 102]

    def send_and_receive(self, messages, *, timeout=None):
        self.sent.append(list(messages))
        return [Message(RecordDict({"metrics": MetricRecord(
            {"user": int(m.content["config"]["partition-id"])})}), reply_to=m) for m in messages]


def test_a_slot_grid_shows_one_node_per_user_and_sends_through_few_slots():
    real = _EchoGrid()
    grid = SlotGrid(real, n_users=1000, slots=3)
    assert grid.get_node_ids() == list(range(1, 1001))
    shared = RecordDict({"arrays": ArrayRecord(), "config": ConfigRecord({"server-round": 1})})
    users = [0, 17, 999, 500, 3]
    msgs = [Message(shared, dst_node_id=u + 1, message_type="train") for u in users]
    replies = grid.send_and_receive(msgs)
    assert [len(w) for w in real.sent] == [3, 2]                   # waves of <= 3 slots
    assert all(m.metadata.dst_node_id in (101, 102, 103) for w in real.sent for m in w)
    assert [grid.position(r.metadata.src_node_id) for r in replies] == users
    assert [int(r.content["metrics"]["user"]) for r in replies] == users
    assert "partition-id" not in shared["config"]                  # the strategy's record is untouched


def test_too_few_simulation_nodes_is_one_clear_error():
    with pytest.raises(RuntimeError, match="needs 5 simulation nodes .* 3 are connected: start "
                                           "the simulation with --num-supernodes 5"):
        SlotGrid(_EchoGrid(), n_users=100, slots=5, timeout=0.0)


@pytest.mark.inprocess
def test_a_lazy_federation_runs_its_users_through_a_few_nodes(tmp_path):
    from fedrec.server.app import run_federation

    cfg = RunConfig(out=str(tmp_path / "run"), rounds=3, lazy_clients=True, synthetic_users=300,
                    synthetic_items=80, clients_per_round=6, eval_clients=10, gmf_dim=8,
                    mlp_dim=8, content_dim=8, dp="server", noise_multiplier=0.3, noise_seed=0)
    slots = slots_needed(cfg, 300)
    assert slots == 10
    results = run_federation(InProcessGrid(cfg, slots), cfg)
    rows = RunDir(cfg.out).private_rows()     # who took part: server-private
    joined = sorted({p for r in rows for p in r["participants"]})
    assert all(r["clients_sampled"] == 6 and len(set(r["participants"])) == 6 for r in rows)
    assert max(joined) >= slots and len(joined) > slots   # users, not the 10 nodes
    assert results["metrics"]["hr@10"] is not None and rows[-1]["eval_clients"] == 10
    # a user's state lives on disk under its own index: exactly the users that trained
    trained = {int(p.parent.name) for p in Path(cfg.client_state_root).rglob("round-*.npz")}
    assert trained == set(joined)
    manifest = json.loads((Path(cfg.out) / "manifest.json").read_text())
    assert manifest["data"]["users"] == 300 and manifest["data"]["training_interactions"] is None
    # user-level accounting samples 6 of the 300 users, not of the 10 nodes
    events = [entry[1] for entry in manifest["accounting"]["user"]["history"]]
    assert len(events) == 3 and all(e["class_name"] == "SampledWithoutReplacementDpEvent"
                                    and e["source_dataset_size"] == 300
                                    and e["sample_size"] == 6 for e in events)


@pytest.mark.parametrize("changes, message", [
    ({"dataset": "movielens-100k"}, "lazy-clients is for dataset = synthetic"),
    ({"eval_clients": 0}, "needs clients-per-round and eval-clients > 0"),
    ({"canaries": 3}, "cannot be combined with canaries"),
])
def test_lazy_clients_settings_fail_at_the_edge(changes, message):
    base = dict(lazy_clients=True, clients_per_round=5, eval_clients=5)
    with pytest.raises(ConfigError, match=message):
        RunConfig(**{**base, **changes})
