"""A real federation with real processes on 127.0.0.1: SuperLink + 3 SuperNodes over TLS
with SuperNode authentication, each device an app's SDK store. Two rounds of DP-FedAvg,
then every SDK recommends from the new model; the same under SecAgg+; unregistered keys
and plaintext are refused; a SuperNode killed mid-run costs its replies, not the run."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from fedrec.client.recommender import Recommender
from fedrec.client.store import EventStore
from fedrec.server.certs import make_credentials
from fedrec.server.deployment import LocalDeployment
from fedrec.server.rundir import RunDir
from fedrec.shared.catalogue import load_catalogue
from fedrec.shared.config import RunConfig
from fedrec.shared.synthetic import SyntheticConfig, generate

pytestmark = pytest.mark.slow
MODEL = {"gmf-dim": 8, "mlp-dim": 8, "content-dim": 8}
HEARTBEAT_HOOK = Path(__file__).resolve().parent / "flwr_heartbeat"


class QuickExpiry(LocalDeployment):
    """The deployment with SuperNodes that declare a 10 s heartbeat (tests/flwr_heartbeat):
    a killed node is offline after ~20 s instead of ~60 s; nothing asserted depends on it."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(HEARTBEAT_HOOK), env.get("PYTHONPATH")) if p)
        return env


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("deployment")
    data = generate(SyntheticConfig(n_users=3, n_items=60, seed=5))
    data.items.to_csv(root / "catalogue.csv", index=False)
    stores = []
    for k, user in enumerate(dict.fromkeys(data.events["user_id"]), start=1):
        path = root / f"device-{k}.db"
        with EventStore(path) as store:     # what the app recorded on the device
            for row in data.events[data.events["user_id"] == user].itertuples():
                store.record(row.item_id, row.event, int(row.timestamp))
        stores.append(path)
    with QuickExpiry(root / "federation") as fed:
        fed.credentials(3)
        fed.start_superlink()
        for i in (1, 2, 3):
            fed.register(i)
            fed.start_supernode(i, {"store-path": str(stores[i - 1]), "device-index": i})
        fed.wait_online(3)
        yield fed, root, stores


def _run(fed, root, name: str, **changes) -> RunDir:
    config = {"catalogue": str(root / "catalogue.csv"), "clients": 3, "rounds": 2,
              "out": str(root / name), "dp": "server", "noise-multiplier": 0.3, "clip": 1.0,
              # every device must reply: a generous timeout costs nothing when they do,
              # and keeps a loaded CI machine (three TF processes on two cores) from
              # dropping the slowest one
              "round-timeout": 300.0, **MODEL, **changes}
    proc = fed.run(config)
    assert proc.wait(timeout=900) == 0, (fed.root / "flwr-run.log").read_text()[-3000:]
    return RunDir(root / name)


def test_two_dp_rounds_over_tls_then_every_sdk_recommends_from_the_new_model(deployment):
    fed, root, stores = deployment
    run = _run(fed, root, "run", dp="both", **{"client-noise-multiplier": 1.0})
    rows = run.read_metrics()
    assert [r["clients_replied"] for r in rows] == [3, 3]
    privacy = json.loads((run.path / "privacy.json").read_text())
    assert privacy["user"]["rounds"] == 2 and math.isfinite(privacy["user"]["epsilon"])
    # example level: the manifest holds the events the devices reported; an auditor
    # recomputes the largest client ε from it, and it is what the devices' ledgers say
    clients = run.read_client_accounting()["clients"]   # per device: server-private
    assert sorted(clients) == ["1", "2", "3"]
    for index, path in enumerate(stores, start=1):
        with EventStore(path) as store:
            history = store.ledger().history
        assert [(h[0], h[1]) for h in history] == [
            (r, e["event"]) for e in clients[str(index)] for r in e["rounds"]]
    from fedrec.simulations.cli import main as fedrec
    assert fedrec(["audit", str(run.path)]) == 0
    audit = json.loads((run.path / "audit.json").read_text())
    assert audit["levels"]["example"]["source"] == "manifest.json"
    assert audit["levels"]["example"]["recomputed"]["rdp"] == pytest.approx(
        privacy["example"]["max_client_epsilon"], rel=1e-9)
    final, _ = run.load_checkpoint(2)
    catalogue = load_catalogue(str(root / "catalogue.csv"))
    cfg = RunConfig(**{k.replace("-", "_"): v for k, v in MODEL.items()})
    for path in stores:
        with EventStore(path) as store:
            model = store.global_model()
            assert set(model) == set(final)
            assert all(np.array_equal(model[k], final[k]) for k in final)   # the new model
            assert store.ledger() is not None
            top = Recommender(store, catalogue, cfg).recommend(k=5)
            assert len(top) == 5 and set(top) <= set(catalogue.item_ids.astype(str))
            status = Recommender(store, catalogue, cfg).privacy_status()
            assert status["rounds_joined"] == 2 and status["user"]["as_of_round"] == 2
            assert status["user"]["epsilon"] == pytest.approx(privacy["user"]["epsilon"])
            assert status["example"]["epsilon"] == pytest.approx(store.ledger().epsilon())


def test_secure_aggregation_over_tls_the_server_only_holds_the_sum(deployment):
    """Flower's SecAgg+ (legacy workflow + secaggplus_mod) with client-side clipping DP."""
    fed, root, _ = deployment
    # one round: SecAgg+ runs its whole protocol (keys, shares, masks, unmasking) per round
    run = _run(fed, root, "secagg", rounds=1, **{"dp-clipping": "client-fixed", "secagg": True})
    rows = run.read_metrics()
    assert [(r["clients_replied"], r["secagg_distinct_updates"]) for r in rows] == [(3, 1)]
    assert all(r["dp_noise_std"] == pytest.approx(0.3 * 1.0 / 3) for r in rows)
    from fedrec.simulations.cli import main as fedrec
    assert fedrec(["audit", str(run.path)]) == 0


def test_unregistered_keys_and_plaintext_are_refused(deployment):
    fed, root, stores = deployment
    stranger = make_credentials(root / "stranger", 1).node_keys[0]   # never registered
    fed.start_supernode(4, {"store-path": str(stores[0]), "device-index": 4}, key=stranger)
    fed.start_supernode(5, {"store-path": str(stores[0]), "device-index": 5}, tls=False)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and any(
            fed.procs[n].poll() is None for n in ("supernode-4", "supernode-5")):
        time.sleep(2)
    assert fed.online_nodes() == 3
    assert fed.procs["supernode-4"].poll() not in (None, 0)       # gave up: refused
    assert fed.procs["supernode-5"].poll() not in (None, 0)
    log4 = (fed.root / "supernode-4.log").read_text()
    assert "No SuperNode found with the given public key" in log4, log4[-1500:]
    assert "Connection attempt failed" in (fed.root / "supernode-5.log").read_text()


def _wait(condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)


def _received(fed, index: int) -> int:
    return (fed.root / f"supernode-{index}.log").read_text().count("Received: train message")


def test_faults_under_dp_a_node_killed_mid_round_then_the_server_killed_and_resumed(deployment):
    """Under user- and example-level DP: SuperNode 3 killed while it trains in round 1 (the round ends
    with the other two) and restarted with its store; then the SuperLink (and the
    ServerApp in it) killed after round 2 and restarted on its database, and the run
    resumed: every round once, ε counted once, ledger and manifest agree."""
    fed, root, stores = deployment
    with EventStore(stores[2]) as store:
        events_before = len(store.events())
    spent_before = {}                                 # a device's ledger spans every run
    for index, path in enumerate(stores, start=1):
        with EventStore(path) as store:
            spent_before[index] = len(store.ledger().history)
    config = {"catalogue": str(root / "catalogue.csv"), "clients": 3, "rounds": 3,
              "out": str(root / "faults"), "dp": "both", "noise-multiplier": 0.5,
              "client-noise-multiplier": 1.0,
              "clip": 1.0, "round-timeout": 60.0, **MODEL}
    seen = _received(fed, 3)
    proc = fed.run(config)
    _wait(lambda: _received(fed, 3) > seen, 600, "SuperNode 3 to receive its round-1 training")
    fed.stop("supernode-3")               # mid-round: it has the message, not yet replied
    # the device restarts on its store once the SuperLink has noticed it gone (a node
    # still listed online cannot be activated again); round 1's training goes on
    # without it, and its evaluation (all N under DP) waits for it
    _wait(lambda: fed.online_nodes() == 2, 300, "SuperNode 3's heartbeat to expire")
    fed.start_supernode(3, {"store-path": str(stores[2]), "device-index": 3})
    run = RunDir(root / "faults")
    _wait(lambda: len(run.read_metrics()) >= 2, 900, "rounds 1 and 2")
    fed.stop("superlink")                          # the server side dies (ServerApp with it)
    fed.stop("flwr-run")
    proc.wait()
    for i in (1, 2, 3):   # devices restart too (a SuperNode gives up after its retries)
        fed.stop(f"supernode-{i}")
    fed.start_superlink()                          # same --database: nodes stay registered
    # the database still lists the dead sessions online; a node is let in again once its
    # heartbeat has expired (Flower refuses to activate a node that is online)
    _wait(lambda: fed.online_nodes() == 0, 300, "the old sessions' heartbeats to expire")
    for i in (1, 2, 3):
        fed.start_supernode(i, {"store-path": str(stores[i - 1]), "device-index": i})
    resumed = fed.run({**config, "resume": True})  # the ServerApp waits for all three
    assert resumed.wait(timeout=900) == 0, (fed.root / "flwr-run.log").read_text()[-3000:]
    rows = run.read_metrics()
    assert [r["round"] for r in rows] == [1, 2, 3]                   # no round lost or doubled
    assert (rows[0]["clients_replied"], rows[0]["dp_replied"]) == (2, 2)
    assert rows[0]["clients_timed_out"] + rows[0]["clients_failed"] == 1
    assert [r["clients_replied"] for r in rows[1:]] == [3, 3]
    privacy = json.loads((run.path / "privacy.json").read_text())
    history = run.manifest()["accounting"]["user"]["history"]
    # round 3 is in twice if the server died after releasing it (evaluation) and before
    # its metrics line: that release happened, and the re-run is a new one (write-ahead)
    releases = run.read_releases()
    assert [h[0] for h in history] == [r["round"] for r in releases] in ([1, 2, 3], [1, 2, 3, 3])
    assert privacy["user"]["rounds"] == 3 and privacy["user"]["releases"] == len(history)
    from fedrec.shared import privacy as dp
    from fedrec.shared.ledger import Ledger
    ledger = Ledger("replace_one", privacy["user"]["delta"])
    for entry in releases:                        # every release logged, composed once each
        ledger.record(entry["round"], dp.event_from_dict(entry["dp_event"]))
    assert privacy["user"]["epsilon"] == pytest.approx(ledger.epsilon("rdp"), rel=1e-12)
    from fedrec.simulations.cli import main as fedrec
    assert fedrec(["audit", str(run.path)]) == 0
    with EventStore(stores[2]) as store:          # the restarted device kept its state
        assert len(store.events()) == events_before
        assert store.user_embedding() is not None and store.global_model() is not None
    clients = run.read_client_accounting()["clients"]   # per device: server-private
    spent = {u: sorted(set(r for e in c for r in e["rounds"])) for u, c in clients.items()}
    assert spent == {"1": [1, 2, 3], "2": [1, 2, 3], "3": [2, 3]}   # 3 died before training
    for index, path in enumerate(stores, start=1):   # ledgers survived both restarts (a
        with EventStore(path) as store:              # round 3 spent before the server died
            added = [h[0] for h in store.ledger().history[spent_before[index]:]]   # may be
        assert set(spent[str(index)]) <= set(added) and len(added) <= len(spent[str(index)]) + 1


def test_a_supernode_killed_mid_run_costs_its_replies_not_the_run(deployment):
    fed, root, _ = deployment
    # two rounds: all three reply in round 1, SuperNode 3 is killed as round 1's metrics
    # line appears, and round 2 ends with the other two (a ClientApp takes seconds to
    # start, so the node cannot have replied to round 2 within the 0.5 s poll)
    proc = fed.run({"catalogue": str(root / "catalogue.csv"), "clients": 3, "rounds": 2,
                    "out": str(root / "killed"), "round-timeout": 30.0, **MODEL})
    run = RunDir(root / "killed")
    deadline = time.monotonic() + 600
    while not run.read_metrics() and time.monotonic() < deadline:
        time.sleep(0.5)
    fed.stop("supernode-3")                                         # gone after round 1
    assert proc.wait(timeout=900) == 0, (fed.root / "flwr-run.log").read_text()[-3000:]
    rows = run.read_metrics()
    assert len(rows) == 2 and rows[0]["clients_replied"] == 3
    last = rows[-1]
    assert last["clients_replied"] == 2
    assert last["clients_sampled"] - last["clients_replied"] in (0, 1)   # timed out, or unsampled
