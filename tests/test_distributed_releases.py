"""--noise distributed for the statistics releases (issue #22): what the server holds,
the ε claim and its audit, the wrap rule."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from fedrec.client import releases as device
from fedrec.server import distributed
from fedrec.shared import skellam, stats
from fedrec.shared.errors import ConfigError
from fedrec.shared.protocol_releases import NOISE_BITS, NOISE_MU_SHARE, NOISE_SCALE, popularity_request
from fedrec.shared.release_config import ReleaseConfig
from fedrec.simulations import audit_releases, release_sim

SMALL = dict(dataset="synthetic", synthetic_users=30, synthetic_items=40, head=20, cap=10,
             noise="distributed")


def test_server_sum_carries_exactly_the_accounted_noise():
    """Over repeated popularity releases (test seeds, not private) the server's unmasked
    sum minus the true scaled sum has mean 0 and the variance of Sk(mu) plus the known
    rounding variance sum f (1 - f): the server never holds the un-noised sum."""
    cfg = ReleaseConfig(**SMALL)
    _, clients = release_sim.devices(cfg)
    n, scale, mu = len(clients), 64.0, 400.0
    release = distributed.SkellamRelease(clients[0].n_items, scale, mu, n, bits=20)
    request = {**popularity_request(1.0, 0), NOISE_SCALE: scale, NOISE_MU_SHARE: mu / n,
               NOISE_BITS: 20}
    exact = [scale * device.dense_contribution(stats.POPULARITY, request, c) for c in clients]
    true_sum = np.sum(exact, axis=0)
    frac = [e - np.floor(e) for e in exact]
    rounding_var = float(np.mean(np.sum([f * (1 - f) for f in frac], axis=0)))
    errors = []
    for rep in range(60):
        shares = [device.noisy_share(stats.POPULARITY, request, c,
                                     device.noise_generator(1000 + rep, u))
                  for u, c in enumerate(clients)]
        errors.append(distributed.modular_sum(shares, release) * scale - true_sum)
    errors = np.concatenate(errors)
    assert abs(errors.mean()) < 4 * np.sqrt((mu + rounding_var) / errors.size)
    assert errors.var() == pytest.approx(mu + rounding_var, rel=0.06)
    assert errors.var() > 0.9 * mu          # the noise is there, whatever the rounding


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    return out, release_sim.run(ReleaseConfig(**SMALL, target_epsilon=2.0, out=str(out)))


def test_target_epsilon_is_met_and_audited(distributed_run):
    out, results = distributed_run
    claim = results["privacy"]
    assert claim["private"] and claim["accountant"] == "rdp" and claim["noise"] == "distributed"
    assert 1.95 <= claim["epsilon"] <= 2.0
    assert claim["epsilons"]["pld"] is None
    ledger = json.loads((out / "ledger.json").read_text())
    assert [h[1]["class_name"] for h in ledger["history"]] == ["SkellamEvent"] * 2
    bits = results["bits_per_coordinate"]
    assert set(bits) == {"popularity", "cooccurrence"} and all(2 < b <= 32 for b in bits.values())
    assert results["upload_bytes"]["cooccurrence"] == -(-bits["cooccurrence"] * 190 // 8)
    result = audit_releases.audit(out)
    assert result["passed"], result["checks"]


def test_audit_catches_a_declared_mu_that_was_not_spent(distributed_run, tmp_path):
    out, _ = distributed_run
    for name in ("manifest.json", "ledger.json", "privacy.json"):
        (tmp_path / name).write_text((out / name).read_text())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["privacy"]["releases"]["cooccurrence"]["mu"] *= 1.5
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert not audit_releases.audit(tmp_path)["passed"]


@pytest.mark.inprocess
def test_wrap_rule_refuses_an_impossible_width(tmp_path):
    cfg = ReleaseConfig(**SMALL, target_epsilon=2.0, skellam_bits=8, out=str(tmp_path / "w"))
    with pytest.raises(ConfigError, match="needs .* bits per coordinate not to wrap"):
        release_sim.run(cfg)
    done = subprocess.run([sys.executable, "-m", "fedrec.simulations.cli", "simulate", "--pipeline",
                           "popularity", "--dataset", "synthetic", "--synthetic-users", "20",
                           "--synthetic-items", "30", "--noise", "distributed",
                           "--skellam-bits", "8", "--out", str(tmp_path / "cli")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "bits per coordinate not to wrap" in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("changes, message", [
    (dict(noise="local"), "noise must be central or distributed"),
    (dict(noise="distributed", target_epsilon=float("inf")), "finite --target-epsilon"),
    (dict(noise="distributed", skellam_bits=70), "skellam-bits"),
])
def test_bad_noise_settings_are_one_clear_error(changes, message):
    with pytest.raises(ConfigError, match=message):
        ReleaseConfig(**changes)


def test_bits_bound_holds_for_the_plan():
    plans = distributed.plan(4.0, 1e-5, {"popularity": 1.0}, {"popularity": 1682}, 4096.0,
                             943, 32)
    r = plans["popularity"]
    need = 943 * np.floor(skellam.rounded_l2_norm_bound(4096.0, skellam.BETA, 1682)) \
        + skellam.noise_tail(r.mu, 1682)
    assert 2 ** (r.bits - 1) > need >= 2 ** (r.bits - 2)
