"""A statistics-release run end to end: run directory, ε claim, audit, CLI errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from fedrec.shared import knn
from fedrec.shared.errors import ConfigError
from fedrec.shared.release_config import ReleaseConfig
from fedrec.simulations import audit_releases, release_sim

SMALL = dict(dataset="synthetic", synthetic_users=60, synthetic_items=80, head=40, cap=20)


@pytest.fixture(scope="module")
def private_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rel") / "run"
    cfg = ReleaseConfig(**SMALL, target_epsilon=4.0, out=str(out))
    return out, release_sim.run(cfg)


@pytest.mark.inprocess
def test_private_run_claims_its_target_and_audits(private_run):
    out, results = private_run
    claim = results["privacy"]
    assert claim["private"] and claim["relation"] == "replace_one"
    assert 3.9 <= claim["epsilon"] <= 4.0
    assert claim["epsilons"]["rdp"] >= claim["epsilon"]     # RDP is the looser bound
    assert results["evaluated_users"] > 0 and 0 <= results["metrics"]["hr@10"] <= 1
    assert results["upload_bytes"]["cooccurrence"] == 4 * 40 * 39 // 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert "participants" not in json.dumps(manifest)
    released, settings = knn.load_released(out / "release.npz")      # what devices get
    assert len(released.head) == 40 and settings.knn_weight == 100.0
    result = audit_releases.audit(out)
    assert result["passed"], result["checks"]


def test_audit_catches_a_declared_noise_that_was_not_spent(private_run, tmp_path):
    out, _ = private_run
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("manifest.json", "ledger.json", "privacy.json"):
        (bad / name).write_text((out / name).read_text())
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["privacy"]["releases"]["cooccurrence"]["noise_multiplier"] *= 1.5
    (bad / "manifest.json").write_text(json.dumps(manifest))
    result = audit_releases.audit(bad)
    assert not result["passed"]
    assert not next(c for c in result["checks"] if c["name"].startswith("declared"))["passed"]


@pytest.mark.inprocess
def test_seeded_or_noiseless_runs_claim_infinity(tmp_path):
    seeded = release_sim.run(ReleaseConfig(**SMALL, noise_seed=3, out=str(tmp_path / "s")))
    assert seeded["privacy"]["epsilon"] == math.inf and not seeded["privacy"]["private"]
    again = release_sim.run(ReleaseConfig(**SMALL, noise_seed=3, out=str(tmp_path / "s2")))
    assert again["metrics"] == seeded["metrics"]            # seeded: reproducible
    exact = release_sim.run(ReleaseConfig(**SMALL, target_epsilon=math.inf,
                                          out=str(tmp_path / "inf")))
    assert exact["privacy"]["epsilon"] == math.inf
    assert audit_releases.audit(tmp_path / "inf")["passed"]


def test_more_budget_is_not_worse_on_average(tmp_path):
    """Sanity of the pipeline: with no noise kNN beats popularity on the generator's
    clustered users; popularity-only ignores the co-occurrence release."""
    knn_run = release_sim.run(ReleaseConfig(**SMALL, target_epsilon=math.inf,
                                            out=str(tmp_path / "k")))
    pop_run = release_sim.run(ReleaseConfig(**SMALL, pipeline="popularity",
                                            target_epsilon=math.inf, out=str(tmp_path / "p")))
    assert "cooccurrence" not in pop_run["upload_bytes"]
    assert knn_run["metrics"]["hr@10"] > pop_run["metrics"]["hr@10"]


@pytest.mark.parametrize("changes, message", [
    (dict(pipeline="svd"), "pipeline must be one of"),
    (dict(target_epsilon=0.0), "target-epsilon must be > 0"),
    (dict(popularity_share=1.0), "popularity-share"),
    (dict(knn_decay=0.0), "knn settings"),
])
def test_bad_settings_are_one_clear_error(changes, message):
    with pytest.raises(ConfigError, match=message):
        ReleaseConfig(**changes)


@pytest.mark.inprocess
def test_cli_runs_and_refuses_an_existing_run(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "fedrec.simulations.cli", "simulate", "--pipeline", "knn", "--dataset",
           "synthetic", "--synthetic-users", "30", "--synthetic-items", "40", "--head", "20",
           "--target-epsilon", "8", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "results.json").read_text())["pipeline"] == "knn"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "already holds a run" in again.stderr
    audit = subprocess.run([sys.executable, "-m", "fedrec.simulations.cli", "audit", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert audit.returncode == 0, audit.stdout + audit.stderr


@pytest.mark.slow
def test_flower_engine_releases_what_the_in_process_engine_releases(tmp_path):
    """The same devices and server through Flower's simulation engine (messages, one
    SuperNode per user): with the same test seed the release and metrics are equal."""
    cfg = ReleaseConfig(dataset="synthetic", synthetic_users=12, synthetic_items=30, head=15,
                        cap=8, noise_seed=5, out=str(tmp_path / "flower"))
    flower = release_sim.run_flower(cfg)
    local = release_sim.run(cfg.replace(out=str(tmp_path / "local")))
    assert flower["engine"] == "flower" and local["engine"] == "inprocess"
    for key, value in local["metrics"].items():
        assert flower["metrics"][key] == pytest.approx(value, abs=1e-9)
    a, _ = knn.load_released(tmp_path / "flower" / "release.npz")
    b, _ = knn.load_released(tmp_path / "local" / "release.npz")
    np.testing.assert_allclose(a.similarity, b.similarity, atol=1e-9)
    assert audit_releases.audit(tmp_path / "flower")["passed"]


def test_without_dp_the_federated_similarity_is_the_centralized_one(tmp_path):
    """Raw contributions over every item: the released cosine similarity equals the
    centralized item-kNN's (fedrec.simulations.baselines.item_similarity) on the same data."""
    from fedrec.shared.federated_data import load_federation
    from fedrec.simulations.baselines import item_similarity

    cfg = ReleaseConfig(dataset="synthetic", synthetic_users=40, synthetic_items=50,
                        contributions="raw", target_epsilon=math.inf, head=0, cap=0,
                        knn_rank=0, knn_alpha=0.5, ease_lambda=10.0, ease_weight=100.0,
                        out=str(tmp_path / "raw"))
    results = release_sim.run(cfg)
    assert results["privacy"]["epsilon"] == math.inf and not results["privacy"]["private"]
    released, _ = knn.load_released(tmp_path / "raw" / "release.npz")
    split = load_federation("synthetic", 0, 40, 50).split.with_validation_in_train()
    assert list(released.head) == list(range(split.n_items))
    counts = np.asarray(split.train_matrix().sum(axis=0)).ravel()
    seen = counts > 0                   # an unseen item's degree is floored at 1 here
    central = item_similarity(split)
    np.testing.assert_allclose(released.similarity[np.ix_(seen, seen)],
                               central[np.ix_(seen, seen)], rtol=1e-6, atol=1e-9)
    assert released.ease is not None and released.ease.shape == (50, 50)
    with pytest.raises(ConfigError, match="no sensitivity bound"):
        cfg.replace(target_epsilon=8.0)


@pytest.mark.inprocess
def test_the_flower_release_apps_release_what_the_in_process_engine_releases(tmp_path):
    """The wire protocol of the release apps (``fedrec.shared.protocol_releases``) without
    Flower's engine: the ServerApp's main and the ClientApp over a grid that hands each
    message to the ClientApp in this process release and measure what the loop does."""
    from flwr.app import Context, RecordDict

    from fedrec.client.release_app import app as client_app
    from fedrec.server import release_app

    cfg = ReleaseConfig(dataset="synthetic", synthetic_users=12, synthetic_items=30, head=15,
                        cap=8, noise_seed=5, out=str(tmp_path / "grid"))

    class Grid:
        contexts = {n: Context(run_id=1, node_id=n, node_config={"partition-id": n - 1},
                               state=RecordDict(), run_config=cfg.to_dict())
                    for n in range(1, 13)}

        def get_node_ids(self):
            return list(self.contexts)

        def send_and_receive(self, messages, *, timeout=None):
            return [client_app(m, self.contexts[m.metadata.dst_node_id]) for m in messages]

    release_app.main(Grid(), Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                                     run_config=cfg.to_dict()))
    grid = release_sim.read_results(tmp_path / "grid")
    local = release_sim.run(cfg.replace(out=str(tmp_path / "local")))
    assert grid["metrics"] and grid["metrics"] == pytest.approx(local["metrics"], abs=1e-12)
    a, _ = knn.load_released(tmp_path / "grid" / "release.npz")
    b, _ = knn.load_released(tmp_path / "local" / "release.npz")
    np.testing.assert_allclose(a.similarity, b.similarity, atol=1e-12)
    np.testing.assert_array_equal(a.head, b.head)
