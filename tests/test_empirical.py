"""Empirical audit: the math against closed forms, then attacks on real (in-process) runs."""

from __future__ import annotations

import json
import math

import dp_accounting
import numpy as np
import pandas as pd
import pytest
from dp_accounting.pld import pld_privacy_accountant

from shared import canary
from shared.cli import main as fedrec
from shared.config import RunConfig
from simulations import empirical
from simulations.audit import load_run
from simulations.empirical_audit import canary_audit, membership_audit


# ----- math -----

@pytest.mark.parametrize("mu", [0.5, 1.0, 3.0])
def test_equal_variance_pair_is_the_gaussian_mechanism(mu):
    eps = empirical.gaussian_pair_epsilon(2 * mu, 2.0, 0.0, 2.0, 1e-5)  # shift / sd = mu
    accountant = pld_privacy_accountant.PLDAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(1.0 / mu))
    assert eps == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-4)
    assert empirical.gaussian_mechanism_delta(eps, mu) == pytest.approx(1e-5, rel=1e-3)
    # symmetric, and 0 for identical distributions
    assert empirical.gaussian_pair_epsilon(0.0, 2.0, 2 * mu, 2.0, 1e-5) == pytest.approx(eps)
    assert empirical.gaussian_pair_epsilon(1.0, 1.0, 1.0, 1.0, 1e-5) == 0.0


def test_unequal_variances_are_distinguishable_even_with_equal_means():
    # N(0, 2^2) vs N(0, 1): the likelihood ratio is unbounded in the tails
    wide = empirical.gaussian_pair_epsilon(0.0, 2.0, 0.0, 1.0, 1e-5)
    assert 10 < wide < empirical.EPSILON_CAP
    assert empirical.gaussian_pair_epsilon(0.0, 1.1, 0.0, 1.0, 1e-5) < wide


def test_clopper_pearson_and_the_lower_bound_by_hand():
    lo, hi = empirical.clopper_pearson(0, 20, 0.95)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 20))
    lo, hi = empirical.clopper_pearson(20, 20, 0.95)
    assert lo == pytest.approx(0.025 ** (1 / 20)) and hi == 1.0
    # a perfect attack on 20 + 20 examples: TPR >= 0.025^(1/20), FPR <= 1 - 0.025^(1/20)
    q = 0.025 ** (1 / 20)
    assert empirical.epsilon_lower_bound(20, 20, 0, 20, 0.0) == pytest.approx(math.log(q / (1 - q)))
    assert empirical.epsilon_lower_bound(10, 20, 10, 20, 1e-5) == 0.0   # chance: no bound


def test_auc_and_roc_by_hand():
    assert empirical.auc([3, 4], [1, 2]) == 1.0
    assert empirical.auc([1, 3], [2, 4]) == 0.25
    assert empirical.auc([1, 1], [1, 1]) == 0.5
    fpr, tpr, _ = empirical.roc([3, 4], [1, 2])
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert tpr[2] == 1.0 and fpr[2] == 0.0


def test_membership_audit_separates_shifted_scores_only():
    rng = np.random.default_rng(0)
    strong = empirical.membership_audit(rng.normal(3, 1, 400), rng.normal(0, 1, 400), 1e-5, rng)
    none = empirical.membership_audit(rng.normal(0, 1, 400), rng.normal(0, 1, 400), 1e-5, rng)
    assert strong.auc > 0.95 and strong.epsilon_lower > 1.5
    assert abs(none.auc - 0.5) < 0.06 and none.epsilon_lower < 0.3


def test_canary_directions_are_unit_seeded_and_order_free():
    shapes = {"b": (3, 4), "a": (5,)}
    d1 = canary.direction(7, 2, shapes)
    d2 = canary.direction(7, 2, dict(reversed(list(shapes.items()))))
    assert np.linalg.norm(canary.flatten(d1)) == pytest.approx(1.0)
    assert all(np.array_equal(d1[k], d2[k]) for k in shapes)
    assert not np.allclose(canary.flatten(d1), canary.flatten(canary.direction(7, 3, shapes)))
    sent = {"b": np.zeros((3, 4), np.float32), "a": np.ones(5, np.float32)}
    moved = canary.update(sent, 7, 2, norm=0.5)
    assert list(moved) == ["b", "a"] and moved["a"].dtype == np.float32
    step = canary.flatten({k: moved[k] - sent[k] for k in sent})
    assert np.linalg.norm(step) == pytest.approx(0.5, rel=1e-6)
    cos = canary.cosines(sent, moved, 7, range(4))
    assert cos[2] == pytest.approx(1.0, abs=1e-6) and np.all(np.abs(np.delete(cos, 2)) < 0.9)


# ----- attacks on real runs (the real ServerApp loop and ClientApp, in process) -----

def _run(tmp_path, name, **changes):
    from simulations.inprocess import run_inprocess

    cfg = RunConfig(out=str(tmp_path / name), **changes)
    run_inprocess(cfg)
    return tmp_path / name


CANARY_RUN = dict(synthetic_users=40, clients_per_round=10, canaries=16, rounds=5, eval_every=5,
                  clip=1.0, noise_seed=0)


@pytest.mark.slow
def test_canaries_stay_below_a_dp_claim_and_expose_a_run_without_dp(tmp_path):
    dp = _run(tmp_path, "dp", dp="server", noise_multiplier=2.0, **CANARY_RUN)
    plain = _run(tmp_path, "plain", **CANARY_RUN)
    found = canary_audit(load_run(dp))
    assert found["available"] and 0 <= found["epsilon"] <= found["claimed"]
    assert found["claimed"] == json.loads((dp / "privacy.json").read_text())["user"]["epsilon"]
    leaked = canary_audit(load_run(plain))
    assert leaked["epsilon"] > 3 * found["epsilon"] and leaked["epsilon"] > 8
    # the audit command: a correct run passes; the same plain run claiming DP fails
    assert fedrec(["audit", str(dp), "--empirical"]) == 0
    report = (dp / "audit.md").read_text()
    assert "canaries (Andrew et al. 2024)" in report and (dp / "audit_canaries.png").exists()
    dp_privacy = json.loads((dp / "privacy.json").read_text())
    (plain / "privacy.json").write_text(json.dumps(dp_privacy))       # a false claim
    assert fedrec(["audit", str(plain), "--empirical"]) == 1
    failed = [c for c in json.loads((plain / "audit.json").read_text())["checks"] if not c["passed"]]
    assert "canary estimate not above claimed user epsilon" in {c["name"] for c in failed}
    # canaries are not users: no ledger, no evaluation, outside the participation log check
    rows = [json.loads(x) for x in (dp / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["eval_clients"] == 56


def _random_tastes(tmp_path, users: int = 200, items: int = 100, per_user: int = 12):
    """Users with independent random histories: only memorisation can tell a training
    item from the held-out one."""
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", 1000 + t, "purchase") for u in range(users)
            for t, i in enumerate(rng.choice(items, per_user, replace=False))]
    path = tmp_path / "events.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"]).to_csv(path, index=False)
    return str(path)


MEMORISE = dict(rounds=3, eval_every=3, local_epochs=10, learning_rate=0.05,
                reconstruction_steps=50, reconstruction_lr=0.1, noise_seed=0)


@pytest.mark.slow
def test_membership_inference_finds_memorisation_and_respects_example_dp(tmp_path):
    data = _random_tastes(tmp_path)
    plain = membership_audit(load_run(_run(tmp_path, "plain", dataset=data, **MEMORISE)))
    assert plain["claimed"] is None and plain["devices"] == 200
    assert plain["auc"] > 0.75 and plain["epsilon_lower"] > 0.5
    private = _run(tmp_path, "dp", dataset=data, dp="client", client_noise_multiplier=2.0,
                   client_clip=0.5, **MEMORISE)
    found = membership_audit(load_run(private))
    assert found["claimed"] is not None and found["epsilon_lower"] <= found["claimed"]
    assert found["auc"] < plain["auc"] - 0.15
    assert fedrec(["audit", str(private), "--empirical"]) == 0
    assert (private / "audit_roc.png").exists()
