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
from fedrec.shared.protocol_releases import (
    NOISE_BITS,
    NOISE_MU_SHARE,
    NOISE_SCALE,
    popularity_request,
)
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


# ----- dropouts: shares sized for t = ceil(min_survivors * n) survivors -----

def test_sum_with_dropouts_carries_at_least_the_accounted_noise():
    """Shares of Sk(mu / t); each round a random s in [t, n] devices upload (test-only
    seeded generator). The unmasked sum minus the survivors' true scaled sum has the
    variance mu s / t (plus the known rounding variance): never below the accounted mu."""
    cfg = ReleaseConfig(**SMALL)
    _, clients = release_sim.devices(cfg)
    n, scale, mu, t = len(clients), 64.0, 400.0, 18
    release = distributed.SkellamRelease(clients[0].n_items, scale, mu, n, bits=20, threshold=t)
    assert release.mu_per_device == mu / t
    request = {**popularity_request(1.0, 0), NOISE_SCALE: scale,
               NOISE_MU_SHARE: release.mu_per_device, NOISE_BITS: 20}
    exact = np.array([scale * device.dense_contribution(stats.POPULARITY, request, c)
                      for c in clients])
    rounding = (exact - np.floor(exact)) * (1 - exact + np.floor(exact))   # f (1 - f)
    test_rng = np.random.default_rng(7)          # which devices fail: test only
    errors, expected, at_t = [], [], []
    for rep in range(80):
        s = t if rep % 4 == 0 else int(test_rng.integers(t, n + 1))
        alive = np.sort(test_rng.choice(n, size=s, replace=False))
        shares = [device.noisy_share(stats.POPULARITY, request, clients[u],
                                     device.noise_generator(2000 + rep, int(u)))
                  for u in alive]
        total, summed = distributed.modular_total(shares, release)
        assert summed == s
        err = total * scale - exact[alive].sum(axis=0)
        errors.append(err)
        expected.append(np.full(err.size, mu * s / t) + rounding[alive].sum(axis=0))
        if s == t:
            at_t.append(err)
    errors, expected = np.concatenate(errors), np.concatenate(expected)
    assert abs(errors.mean()) < 4 * np.sqrt(expected.mean() / errors.size)
    assert np.mean(errors ** 2) == pytest.approx(expected.mean(), rel=0.06)
    assert np.var(np.concatenate(at_t)) > 0.9 * mu     # the fewest survivors: still mu


@pytest.mark.inprocess
def test_too_few_survivors_is_not_released_and_the_event_stays(tmp_path):
    """30 devices, t = 27, 6 fail: 24 < 27 shares carry less than mu, so the release
    fails with one line; its write-ahead event stays in the ledger."""
    out = tmp_path / "few"
    cfg = ReleaseConfig(**SMALL, target_epsilon=2.0, min_survivors=0.9, release_dropout=0.2,
                        out=str(out))
    with pytest.raises(distributed.TooFewSurvivors, match="24 of 30 devices .* the 27 the noise"):
        release_sim.run(cfg)
    ledger = json.loads((out / "ledger.json").read_text())
    assert [h[1]["class_name"] for h in ledger["history"]] == ["SkellamEvent"]
    record = json.loads((out / "manifest.json").read_text())["survivors"]["popularity"]
    assert (record["survivors"], record["threshold"], record["devices"]) == (24, 27, 30)
    assert not (out / "release.npz").exists() and not (out / "privacy.json").exists()
    done = subprocess.run([sys.executable, "-m", "fedrec.simulations.cli", "simulate", "--pipeline",
                           "popularity", "--dataset", "synthetic", "--synthetic-users", "20",
                           "--synthetic-items", "30", "--noise", "distributed",
                           "--min-survivors", "0.9", "--release-dropout", "0.5",
                           "--out", str(tmp_path / "cli")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "10 of 20 devices uploaded" in done.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def dropout_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-drop") / "run"
    cfg = ReleaseConfig(**SMALL, target_epsilon=2.0, min_survivors=0.7, release_dropout=0.2,
                        out=str(out))
    return out, release_sim.run(cfg)


def test_dropout_run_records_survivors_and_the_noise_summed(dropout_run):
    out, results = dropout_run
    section = results["distributed"]
    assert section == results["privacy"]["distributed"]
    assert json.loads((out / "manifest.json").read_text())["survivors"] == section["releases"]
    declared = json.loads((out / "manifest.json").read_text())["privacy"]["releases"]
    for name, rec in section["releases"].items():         # t = ceil(0.7 * 30) = 21, 6 fail
        assert (rec["devices"], rec["threshold"], rec["survivors"]) == (30, 21, 24)
        assert rec["mu"] == declared[name]["mu"]
        assert rec["mu_actual"] == pytest.approx(rec["mu"] * 24 / 21)
        assert declared[name]["mu_per_device"] == pytest.approx(rec["mu"] / 21)
    claim = results["privacy"]["epsilon"]
    assert 1.95 <= claim <= 2.0 and section["epsilon_actual"] < claim
    result = audit_releases.audit(out)
    assert result["passed"], result["checks"]


@pytest.mark.parametrize("files", [("privacy.json", "manifest.json"), ("privacy.json",)])
def test_audit_fails_on_a_tampered_survivors_record(dropout_run, tmp_path, files):
    out, _ = dropout_run
    for name in ("manifest.json", "ledger.json", "privacy.json"):
        (tmp_path / name).write_text((out / name).read_text())
    for name in files:                   # claim fewer survivors than the threshold
        record = json.loads((tmp_path / name).read_text())
        section = (record["user"]["distributed"]["releases"] if name == "privacy.json"
                   else record["survivors"])
        section["cooccurrence"]["survivors"] = 20
        section["cooccurrence"]["mu_actual"] = section["cooccurrence"]["mu"] * 20 / 21
        (tmp_path / name).write_text(json.dumps(record))
    result = audit_releases.audit(tmp_path)
    assert not result["passed"]
    assert [c["name"] for c in result["checks"] if not c["passed"]] == [
        "every release summed >= t shares; ε of the noise summed <= claim"]


@pytest.mark.parametrize("changes, message", [
    (dict(noise="distributed", min_survivors=0.0), "min-survivors must be in"),
    (dict(noise="distributed", min_survivors=1.5), "min-survivors must be in"),
    (dict(noise="distributed", release_dropout=1.0), "release-dropout in"),
    (dict(noise="distributed", release_dropout=-0.1), "release-dropout in"),
    (dict(min_survivors=0.8), "apply to --noise distributed only"),
    (dict(release_dropout=0.1), "apply to --noise distributed only"),
])
def test_bad_survivor_settings_are_one_clear_error(changes, message):
    with pytest.raises(ConfigError, match=message):
        ReleaseConfig(**changes)


def test_survivor_threshold_and_flags():
    import argparse

    from fedrec.simulations import simulate_args

    assert ReleaseConfig(noise="distributed", min_survivors=0.7).survivor_threshold(10) == 7
    assert ReleaseConfig(noise="distributed", min_survivors=0.75).survivor_threshold(943) == 708
    assert ReleaseConfig().survivor_threshold(943) == 943
    parser = argparse.ArgumentParser()
    simulate_args.add_arguments(parser)
    args = parser.parse_args(["--pipeline", "knn", "--noise", "distributed",
                              "--min-survivors", "0.8", "--release-dropout", "0.1"])
    cfg = simulate_args.build_release_config(args)
    assert (cfg.min_survivors, cfg.release_dropout) == (0.8, 0.1)


def test_bits_cover_every_device_and_the_largest_noise():
    """With t < n the width is for all n uploads and the noise of n shares, mu n / t."""
    r = distributed.plan(4.0, 1e-5, {"popularity": 1.0}, {"popularity": 1682}, 4096.0,
                         943, 32, threshold=472)["popularity"]
    assert (r.devices, r.threshold) == (943, 472)
    need = 943 * np.floor(skellam.rounded_l2_norm_bound(4096.0, skellam.BETA, 1682)) \
        + skellam.noise_tail(r.mu * 943 / 472, 1682)
    assert 2 ** (r.bits - 1) > need >= 2 ** (r.bits - 2)


def test_dropouts_are_seeded_and_exact():
    a = release_sim.dropouts(0.2, 30, 0, 1)
    assert len(a) == 6 and a == release_sim.dropouts(0.2, 30, 0, 1)
    assert a != release_sim.dropouts(0.2, 30, 0, 2)
    assert release_sim.dropouts(0.0, 30, 0, 1) == frozenset()
