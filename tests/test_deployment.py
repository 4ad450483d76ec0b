"""A real federation with real processes on 127.0.0.1: SuperLink + 3 SuperNodes over TLS
with SuperNode authentication, each device an app's SDK store (tests/deploy_support.py).
Two rounds of DP-FedAvg, then every SDK recommends from the new model; the same under
SecAgg+; unregistered keys and plaintext are refused. Faults: test_deployment_faults.py."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from fedrec.client.recommender import Recommender
from fedrec.client.store import EventStore
from fedrec.server.certs import make_credentials
from fedrec.shared.catalogue import load_catalogue
from fedrec.shared.config import RunConfig
from tests.deploy_support import MODEL, run_to_end, three_node_federation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    with three_node_federation(tmp_path_factory.mktemp("deployment")) as started:
        yield started


def test_two_dp_rounds_over_tls_then_every_sdk_recommends_from_the_new_model(deployment):
    fed, root, stores = deployment
    run = run_to_end(fed, root, "run", dp="both", **{"client-noise-multiplier": 1.0})
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
    run = run_to_end(fed, root, "secagg", rounds=1, **{"dp-clipping": "client-fixed", "secagg": True})
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
