"""A distributed-noise statistics release in a real deployment (issue #22): SuperLink +
3 SuperNodes over TLS with SuperNode authentication (``fedrec.server.deployment`` with
``app="release"``), each SuperNode one user (``partition-id``), the Skellam shares
carried by SecAgg+, and one SuperNode killed while the SecAgg+ protocol runs: the
release completes with the survivors, the records say how many shares were summed, the
unmasked sum is exactly those devices' noisy shares, and ``fedrec audit`` passes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tomllib

from fedrec.server.deployment import LocalDeployment, Ports, app_defaults
from fedrec.shared import flower_app
from fedrec.shared.errors import FedrecError
from fedrec.shared.release_config import ReleaseConfig
from fedrec.simulations import audit_releases, release_sim
from tests.deploy_support import QuickExpiry, trainings_received, wait_for
from tests.test_release_secagg import _device_shares, _transcript

#: The release: popularity, distributed noise, t = ceil(0.66 * 3) = 2 of 3 (SecAgg+
#: reconstruction threshold 2); seeded noise and the transcript so that the test can
#: recompute every share (the run is marked not private).
CFG = ReleaseConfig(pipeline="popularity", dataset="synthetic", synthetic_users=3,
                    synthetic_items=30, noise="distributed", min_survivors=0.66,
                    noise_seed=5, secagg_transcript=True)


def test_a_release_deployment_names_the_release_apps_and_their_settings(tmp_path):
    fed = LocalDeployment(tmp_path, Ports.free(1), app="release")
    fed.credentials(1)
    project = tomllib.loads((fed.project / "pyproject.toml").read_text())["tool"]["flwr"]
    assert project["app"]["components"] == flower_app.RELEASE
    assert project["app"]["config"]["min-survivors"] == 1.0      # overridable: named here
    assert "partition-id" not in project["app"]["config"]        # node config, not run
    with pytest.raises(FedrecError, match="unknown deployment app 'neumf'"):
        app_defaults("neumf")


@pytest.mark.slow
def test_a_supernode_killed_mid_secagg_leaves_the_survivors_sum(tmp_path, monkeypatch):
    out = tmp_path / "release"
    cfg = CFG.replace(out=str(out))
    changed = {k: v for k, v in cfg.to_dict().items() if v != ReleaseConfig().to_dict()[k]}
    with QuickExpiry(tmp_path / "federation", Ports.free(3), app="release") as fed:
        fed.credentials(3)
        fed.start_superlink()
        for i in (1, 2, 3):
            fed.register(i)
            fed.start_supernode(i, {"partition-id": i - 1})
        fed.wait_online(3)
        proc = fed.run(changed)
        # SecAgg+ stages are train messages: setup, share keys, masked vectors, unmask
        wait_for(lambda: trainings_received(fed, 3) >= 1, 600,
                 "SuperNode 3 to receive SecAgg+'s setup stage")
        fed.stop("supernode-3")
        stages_seen = trainings_received(fed, 3)
        assert stages_seen < 4, "killed after the unmask stage had reached it"
        # flwr run --stream exits 0 even when the ServerApp fails: look at the results
        assert proc.wait(timeout=900) == 0 and (out / "results.json").exists(), \
            (fed.root / "flwr-run.log").read_text()[-3000:]
    record = json.loads((out / "privacy.json").read_text())["user"]["distributed"]
    record = record["releases"]["popularity"]
    s = record["survivors"]                    # what was summed, as the server counted it
    assert (record["devices"], record["threshold"]) == (3, 2)
    # a node killed before the masked-vector stage reached it cannot be in the sum;
    # one killed after may have uploaded (then its mask seed is rebuilt: s = 3)
    assert s == 2 if stages_seen < 3 else s in (2, 3)
    assert record["mu_actual"] == pytest.approx(record["mu"] * s / 2, rel=1e-12)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["survivors"]["popularity"] == record
    assert manifest["privacy"]["transport"] == "secagg+"
    _, unmasked = _transcript(out)
    assert unmasked["popularity"]["survivors"] == s
    seen, _ = _device_shares(cfg, tmp_path / "local", monkeypatch)
    summed = range(s)                          # partitions 0, 1 (and 2 if it uploaded)
    np.testing.assert_array_equal(np.array(unmasked["popularity"]["total"]),
                                  np.sum([seen["popularity"][u][1] for u in summed], axis=0))
    results = json.loads((out / "results.json").read_text())   # evaluated: the live ones
    _, clients = release_sim.devices(cfg)
    assert results["evaluated_users"] == sum(c.evaluable for c in clients[:2])
    from fedrec.simulations.cli import main as fedrec
    assert fedrec(["audit", str(out)]) == 0
    # seeded noise: the run claims ε = inf; the audit's own ε of the noise summed
    # (mu s / t) is what a run with secret noise would be held to
    summed = next(c for c in audit_releases.audit(out)["checks"]
                  if c["name"].startswith("every release summed"))
    own = float(summed["detail"].split("ε with mu s / t ")[1].split(",")[0])
    assert 0 < own <= cfg.target_epsilon
