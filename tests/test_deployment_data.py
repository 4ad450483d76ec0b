"""Deployment data path: the server knows only the catalogue; a device only its own events."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict

from fedrec.client import app as capp
from fedrec.server.app import initial_global_weights, round_config, server_data
from fedrec.shared import protocol
from fedrec.shared.catalogue import load_catalogue, load_device
from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError, DataError
from fedrec.shared.synthetic import SyntheticConfig, generate


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    data = generate(SyntheticConfig(n_users=6, n_items=50, seed=3))
    data.items.to_csv(root / "catalogue.csv", index=False)
    users = list(dict.fromkeys(data.events["user_id"]))
    for k, user in enumerate(users[:2]):
        data.events[data.events["user_id"] == user].to_csv(root / f"device{k}.csv", index=False)
    return root, data, users


def _cfg(root, **kw):
    return RunConfig(catalogue=str(root / "catalogue.csv"), clients=2, gmf_dim=8, mlp_dim=8,
                     content_dim=8, out=str(root / "run"), **kw)


def test_server_sees_only_the_catalogue(files):
    root, data, _ = files
    view = server_data(_cfg(root))
    cat = load_catalogue(str(root / "catalogue.csv"))
    assert (view.n_clients, view.n_items) == (2, len(data.items)) == (2, cat.n_items)
    assert view.manifest["fingerprint"] == cat.fingerprint and "training_interactions" not in view.manifest
    assert list(cat.item_ids) == data.items["item_id"].astype(str).tolist()   # catalogue order
    with pytest.raises(ConfigError, match="clients must be >= 1"):
        RunConfig(catalogue="x.csv")


def test_a_device_indexes_its_events_like_the_catalogue(files):
    root, data, users = files
    device = load_device(str(root / "device0.csv"), str(root / "catalogue.csv"), seed=0)
    cat = load_catalogue(str(root / "catalogue.csv"))
    own = data.events[data.events["user_id"] == users[0]]
    client = device.client(0, stream_user=7)
    held = {client.test_item, client.val_item} - {-1}
    ids = set(cat.item_ids[np.concatenate([client.train_items, list(held)])].astype(str))
    assert ids == set(own["item_id"].astype(str)) and client.user == 7
    np.testing.assert_array_equal(device.inter.item_features, cat.item_features)


@pytest.mark.inprocess
def test_device_client_app_trains_and_evaluates_from_its_own_files(files):
    root, _, _ = files
    cfg = _cfg(root)
    cat = load_catalogue(cfg.catalogue)
    weights = initial_global_weights(cfg, cat.n_items, cat.item_features)
    for kind in ("train", "evaluate"):
        msg = Message(RecordDict({"arrays": protocol.to_record(weights),
                                  "config": round_config(cfg, 1)}), dst_node_id=5, message_type=kind)
        ctx = Context(run_id=1, node_id=5, node_config={
            "events-path": str(root / "device1.csv"), "device-index": 1,
            "state-dir": str(root / "device1-state")}, state=RecordDict(), run_config=cfg.to_flower())
        reply = capp.app(msg, ctx)
        assert not reply.has_error(), reply.error
        if kind == "train":
            sent = protocol.from_record(reply.content["arrays"])
            assert {k: v.shape for k, v in sent.items()} == {k: v.shape for k, v in weights.items()}
        else:
            assert reply.content["metrics"]["num-examples"] == 1
    assert (root / "device1-state" / "1").is_dir()          # the device's own storage


def test_bad_device_files_are_one_clear_error(files, tmp_path):
    root, data, _ = files
    data.events.head(40).to_csv(tmp_path / "two_users.csv", index=False)
    with pytest.raises(DataError, match="exactly one user"):
        load_device(str(tmp_path / "two_users.csv"), str(root / "catalogue.csv"), 0)
    one = data.events[data.events["user_id"] == data.events["user_id"].iloc[0]].copy()
    one.iloc[2, one.columns.get_loc("item_id")] = "no-such-item"
    one.to_csv(tmp_path / "unknown.csv", index=False)
    with pytest.raises(DataError, match="row 3.*item_id|item_id.*row 3"):
        load_device(str(tmp_path / "unknown.csv"), str(root / "catalogue.csv"), 0)
