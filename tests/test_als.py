"""DP alternating least squares as a statistics release (``--pipeline als``, issue #21 step 3):
the contribution's sensitivity, one write-ahead event per pass, the audit, the CLI, and
recovery of a planted low-rank structure without noise."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from fedrec.client import releases as device
from fedrec.server import releases
from fedrec.shared import als, knn, metrics, stats
from fedrec.shared.ledger import Ledger
from fedrec.shared.protocol_releases import als_request
from fedrec.shared.release_config import ReleaseConfig
from fedrec.simulations import audit_releases, release_sim

SMALL = dict(pipeline="als", dataset="synthetic", synthetic_users=60, synthetic_items=80,
             head=40, cap=20, als_rank=4)


def test_contribution_hand_case_and_worst_case_norm():
    # r = 1, u = 3 (normalised to 1), two head items of h = 3: each block (u^2, u) / 2
    np.testing.assert_allclose(als.contribution(np.array([0, 2]), np.array([3.0]), 3),
                               [0.5, 0.5, 0, 0, 0.5, 0.5])
    # the bound is attained: u on one axis, any number of items
    for m in (1, 4, 9):
        c = als.contribution(np.arange(m), np.array([0.0, 2.0, 0.0]), 10)
        assert np.linalg.norm(c) == pytest.approx(1.0)
    assert not als.contribution(np.array([], np.int64), np.ones(3), 5).any()
    assert not als.contribution(np.array([1]), np.zeros(3), 5).any()


@pytest.mark.parametrize("seed", range(5))
def test_replacing_or_removing_a_user_moves_the_als_sum_by_at_most_two_or_one(seed):
    """REPLACE_ONE sensitivity 2 (remove/add: 1) of an ALS pass, through the device code
    and the server's own clipping: an adversarial device sends an inflated vector."""
    rng = np.random.default_rng(seed)
    n_items, h, rank, cap = 30, 12, 4, 5
    head = np.sort(rng.choice(n_items, size=h, replace=False))
    request = als_request(head, rng.normal(size=(h, rank)), cap, 0.1, 1.0)
    users = [SimpleNamespace(train_items=rng.choice(n_items, size=rng.integers(1, 20)),
                             n_items=n_items) for _ in range(10)]
    honest = [device.contribution(als.ALS, request, u) for u in users]
    assert max(np.linalg.norm(c) for c in honest) <= 1 + 1e-12
    size = als.contribution_size(h, rank)
    base = releases.vector_sum(honest, size, "als-1")
    evil = rng.normal(size=size) * 100
    assert np.linalg.norm(base - releases.vector_sum(honest[:-1] + [evil], size, "x")) <= 2 + 1e-9
    assert np.linalg.norm(base - releases.vector_sum(honest[:-1], size, "x")) <= 1 + 1e-9
    bad = [np.full(size, np.nan), np.ones(size - 1)]                 # malformed: zero
    np.testing.assert_array_equal(releases.vector_sum(honest + bad, size, "x"), base)


def test_budget_splits_equally_over_the_passes():
    split = stats.split_budget(1.0, 0.2, ("popularity", "als-1", "als-2"))
    assert split.shares == pytest.approx({"popularity": 0.2, "als-1": 0.4, "als-2": 0.4})
    assert stats.composed_multiplier([split.multiplier(r) for r in split.shares]) == pytest.approx(1.0)


def test_item_factors_solve_the_ridge_and_drop_unsupported_items():
    # r = 1: item 0 has A = 4, b = 2 -> V = 2 / (4 + 1); item 1 has support 0.5 <= cut
    total = np.array([4.0, 2.0, 0.5, 0.5])
    factors = als.item_factors(total, 2, 1, 0.0, 1.0, min_support=1.0)
    np.testing.assert_allclose(factors, [[0.4], [0.0]])
    # negatives add the sum of all blocks: V_0 = 2 / (4 + 0.5 * 4.5 + 1)
    np.testing.assert_allclose(als.item_factors(total, 2, 1, 0.5, 1.0, 1.0)[0], [2 / 7.25])
    released = knn.Released(np.array([5.0, 1.0, 3.0]), np.array([0, 1]), None,
                            factors=np.array([[1.0], [0.0]]))
    scores = knn.als_scores(np.array([0]), released, knn.KnnSettings())
    assert scores[1] == scores[0]            # no factor: the lowest score, popularity decides


def _planted(seed: int = 0):
    """Three groups of users, each on its own block of items; group A is the largest, so
    popularity ranks A's items first for everyone. One held-out item per user."""
    rng = np.random.default_rng(seed)
    blocks = [np.arange(0, 14), np.arange(14, 27), np.arange(27, 40)]
    users = []
    for group, count in zip(blocks, (60, 40, 30)):
        for _ in range(count):
            items = rng.choice(group, size=9, replace=False)
            users.append((items[:8], items[8]))
    return users, 40


def _hit_rate(users, released, settings, k=5):
    hits = []
    for train, held in users:
        scores = knn.device_scores(train, released, settings)
        others = np.setdiff1d(np.arange(len(scores)), np.append(train, held))
        rank = metrics.rank_of_positive(scores[[held]], scores[others][None])
        hits.append(metrics.hit_rate(rank, k))
    return float(np.mean(hits))


def test_without_noise_als_recovers_a_planted_low_rank_ranking():
    users, n_items = _planted()
    data = [SimpleNamespace(train_items=t, n_items=n_items) for t, _ in users]

    def collect(statistic, request):
        if statistic == stats.POPULARITY:
            return [stats.popularity_contribution(d.train_items, n_items) for d in data]
        return [device.contribution(statistic, request, d) for d in data]

    settings = knn.KnnSettings(als_weight=100.0, als_negative=0.01)
    cfg = releases.ReleaseSettings(("popularity", "als-1", "als-2"), 1.0, 0, 0.0, 0.2, 0, 0,
                                   settings, als_rank=3, als_item_lambda=1.0)
    released = releases.run_releases(collect, n_items, cfg, Ledger("replace_one", 1e-3),
                                     lambda _led: None)
    assert released.factors.shape == (40, 3)
    popularity_only = knn.Released(released.popularity, released.head, None)
    pop, fused = _hit_rate(users, popularity_only, settings), _hit_rate(users, released, settings)
    assert fused > pop + 0.3, (pop, fused)


def test_ledger_has_one_event_per_pass_written_before_its_noise(noise_draws):
    saved, drawn = noise_draws
    users, n_items = _planted(1)
    data = [SimpleNamespace(train_items=t, n_items=n_items) for t, _ in users]

    def collect(statistic, request):
        if statistic == stats.POPULARITY:
            return [stats.popularity_contribution(d.train_items, n_items) for d in data]
        return [device.contribution(statistic, request, d) for d in data]

    cfg = releases.ReleaseSettings(("popularity", "als-1", "als-2"), 1.0, 0, 1.0, 0.2, 20, 5,
                                   knn.KnnSettings(als_weight=1.0), noise_seed=1, als_rank=2)
    ledger = Ledger("replace_one", 1e-3)
    out = releases.run_releases(collect, n_items, cfg, ledger,
                                lambda led: saved.append(len(led.history)))
    assert drawn == [1, 2, 3] and len(ledger.history) == 3
    assert [h[1] for h in ledger.history[1:]] == [ledger.history[1][1]] * 2   # equal shares
    assert out.factors.shape == (20, 2)


@pytest.fixture(scope="module")
def private_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("als") / "run"
    return out, release_sim.run(ReleaseConfig(**SMALL, als_passes=2, target_epsilon=4.0,
                                              out=str(out)))


@pytest.mark.inprocess
def test_private_als_run_claims_its_target_and_audits(private_run, tmp_path):
    out, results = private_run
    assert 3.9 <= results["privacy"]["epsilon"] <= 4.0 and results["privacy"]["releases"] == 3
    assert results["upload_bytes"]["als-2"] == 4 * 40 * als.block_size(4)
    released, settings = knn.load_released(out / "release.npz")
    assert released.factors.shape == (40, 4) and settings.als_weight == 3.0
    result = audit_releases.audit(out)
    assert result["passed"], result["checks"]
    bad = tmp_path / "bad"                  # a pass declared with more noise than spent
    bad.mkdir()
    for name in ("manifest.json", "ledger.json", "privacy.json"):
        (bad / name).write_text((out / name).read_text())
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["privacy"]["releases"]["als-2"]["noise_multiplier"] *= 1.5
    (bad / "manifest.json").write_text(json.dumps(manifest))
    assert not audit_releases.audit(bad)["passed"]


def test_als_settings_errors_are_one_clear_line():
    from fedrec.shared.errors import ConfigError

    with pytest.raises(ConfigError, match="als-passes"):
        ReleaseConfig(pipeline="als", als_passes=0)
    with pytest.raises(ConfigError, match="not wired for --pipeline als"):
        ReleaseConfig(pipeline="als", noise="distributed")


@pytest.mark.inprocess
def test_cli_simulate_pipeline_als_runs_and_audits(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "fedrec.simulations.cli", "simulate", "--pipeline", "als",
           "--dataset", "synthetic", "--synthetic-users", "30", "--synthetic-items", "40",
           "--head", "20", "--als-rank", "3", "--target-epsilon", "8", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["pipeline"] == "als" and math.isfinite(results["privacy"]["epsilon"])
    audit = subprocess.run([sys.executable, "-m", "fedrec.simulations.cli", "audit", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert audit.returncode == 0, audit.stdout + audit.stderr
