"""Empirical audit: the math against closed forms, then attacks on real (in-process) runs."""

from __future__ import annotations

import json
import math

import dp_accounting
import numpy as np
import pandas as pd
import pytest
from dp_accounting.pld import pld_privacy_accountant
from scipy import stats

from fedrec.shared import canary
from fedrec.shared.config import ConfigError, RunConfig
from fedrec.shared.federated_data import federation_of
from fedrec.simulations import empirical
from fedrec.simulations.audit import load_run
from fedrec.simulations.cli import main as fedrec
from fedrec.simulations.empirical_audit import (
    canary_audit,
    empirical_checks,
    membership_audit,
    per_coin_claim,
)

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


def test_one_run_p_value_and_bound_by_hand():
    # r = v = 2 guesses, m = 10, eps = ln 3 (q = 3/4), delta = 1e-3:
    # beta = q^2 = 0.5625; alpha = max(P[Bin = 1] / 1, P[Bin <= 1] / 2)
    #      = max(2 q (1 - q), (1 - q^2) / 2) = 0.375; p = 0.5625 + 0.375 * 2 * 10 * 1e-3
    assert empirical.one_run_p_value(10, 2, 2, math.log(3), 1e-3) == pytest.approx(0.57)
    assert empirical.one_run_p_value(10, 2, 2, math.log(3), 0.0) == pytest.approx(0.5625)
    # delta = 0, 100 guesses all right: q^100 = 0.05, eps = ln(q / (1 - q)) = 3.49296
    q = 0.05 ** (1 / 100)
    assert empirical.one_run_epsilon(1000, 100, 100, 0.0, 0.05) == pytest.approx(
        math.log(q / (1 - q)), abs=1e-5)
    assert math.log(q / (1 - q)) == pytest.approx(3.49296, abs=1e-5)
    # delta = 0 in general: P[Bin(r, q) >= v] = 0.05 at q = the Beta(v, r - v + 1) 5 % quantile
    q = stats.beta.ppf(0.05, 90, 11)
    assert empirical.one_run_epsilon(1000, 100, 90, 0.0, 0.05) == pytest.approx(
        math.log(q / (1 - q)), abs=1e-5)
    # delta > 0 can only lower the bound; chance-level guessing and 2 m delta > 1 give none
    assert 0 < empirical.one_run_epsilon(1000, 100, 90, 1e-5, 0.05) < math.log(q / (1 - q))
    assert empirical.one_run_epsilon(1000, 100, 50, 1e-5, 0.05) == 0.0
    assert empirical.one_run_epsilon(1000, 100, 100, 1e-3, 0.05) == 0.0


def _coins(rng, m):
    return rng.random(m) < 0.5


@pytest.mark.parametrize("eps", [0.0, 1.0, 3.0])
def test_one_run_bound_stays_below_the_epsilon_of_randomised_response(eps):
    """Randomised response on each coin is exactly eps-DP: the 95 % bound may exceed eps
    in at most about 5 % of runs, and it is not vacuous."""
    rng, bounds = np.random.default_rng(0), []
    for _ in range(60):
        coins = _coins(rng, 500)
        told = np.where(rng.random(500) < math.exp(eps) / (1 + math.exp(eps)), coins, ~coins)
        bounds.append(empirical.one_run_audit(told + 0.1 * rng.random(500), coins, 500,
                                              1e-5).epsilon_lower)
    bounds = np.array(bounds)
    assert np.mean(bounds > eps) <= 0.1
    assert eps == 0 or np.mean(bounds) > 0.5 * eps


def test_one_run_bound_stays_below_the_gaussian_mechanism():
    mu, delta = 2.0, 1e-5   # each coin moves the score by mu, noise sd 1
    claim = empirical.gaussian_pair_epsilon(mu, 1.0, 0.0, 1.0, delta)
    rng, bounds = np.random.default_rng(1), []
    for _ in range(40):
        coins = _coins(rng, 1000)
        result = empirical.one_run_audit(mu * coins + rng.normal(size=1000), coins, 1000, delta)
        bounds.append(result.epsilon_lower)
    assert np.mean(np.array(bounds) > claim) <= 0.1 and np.mean(bounds) > 0.5


def test_one_run_bound_exposes_a_scorer_that_memorises_members():
    rng = np.random.default_rng(2)
    coins = _coins(rng, 200)
    memorised = empirical.one_run_audit(coins + 0.01 * rng.random(200), coins, 200, 1e-5)
    assert memorised.epsilon_lower > 2.5 and memorised.correct == memorised.guesses
    # unscored canaries abstain but still count in m (the delta term)
    part = empirical.one_run_audit(coins[:50] + 0.0, coins[:50], 200, 1e-5)
    assert 0 < part.epsilon_lower < memorised.epsilon_lower and part.canaries == 200
    blind = empirical.one_run_audit(rng.random(200), coins, 200, 1e-5)
    assert blind.epsilon_lower < 0.5


def test_auc_and_roc_by_hand():
    assert empirical.auc([3, 4], [1, 2]) == 1.0
    assert empirical.auc([1, 3], [2, 4]) == 0.25
    assert empirical.auc([1, 1], [1, 1]) == 0.5
    fpr, tpr, _ = empirical.roc([3, 4], [1, 2])
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert tpr[2] == 1.0 and fpr[2] == 0.0


def test_example_canaries_are_coins_drawn_before_training():
    """Member or not is each canary's fair coin, drawn from (seed, user) alone: not the
    data's time order (the old design's members were earlier items and its non-members
    always the latest one)."""
    cfg = RunConfig(synthetic_users=60, synthetic_items=80, seed=3, example_canaries=40)
    fed, plain = federation_of(cfg), federation_of(cfg.replace(example_canaries=0))
    other = federation_of(cfg.replace(synthetic_items=120))   # other data, same seed
    assert len(fed.canary_users) == 40 and len(plain.canary_users) == 0
    assert np.array_equal(fed.train_sizes(), plain.train_sizes() + np.isin(
        np.arange(60), fed.canary_users))
    coins = []
    for user in map(int, fed.canary_users):
        c = fed.interaction_canary(user)
        mine, before = fed.client(user), plain.client(user)
        assert c.a != c.b and c.a_inserted == canary.interaction_coin(3, user)
        assert c.a_inserted == other.interaction_canary(user).a_inserted   # data-free coin
        # exactly the coin's item is trained on, the other never; n grows by 1 either way
        assert c.inserted in mine.train_items and c.held_out not in mine.train_items
        assert not np.isin([c.a, c.b], before.train_items).any() and c.a != before.test_item
        assert len(mine.train_items) == len(before.train_items) + 1
        assert mine.val_item < 0 or mine.train_items[-1] == mine.val_item   # still newest
        assert (mine.test_item, mine.val_item) == (before.test_item, before.val_item)
        coins.append(c.a_inserted)
    assert 0.25 < np.mean(coins) < 0.75
    assert plain.interaction_canary(int(fed.canary_users[0])) is None


@pytest.mark.parametrize("changes, message", [
    ({"catalogue": "items.csv", "clients": 2}, "deployment"),
    ({"lazy_clients": True, "clients_per_round": 2, "eval_clients": 2}, "lazy-clients"),
    ({"new_items": 0.2}, "new-items"),
    ({"example_canaries": -1}, "example-canaries must be >= 0")])
def test_example_canaries_refuse_what_would_break_them(changes, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**{"example_canaries": 5, **changes})


def test_per_coin_claim_follows_the_declared_relation():
    # a coin swaps one interaction for another: one substitution, two add/remove steps
    assert per_coin_claim(4.0, 1e-5, "replace_one") == (4.0, 1e-5)
    eps, delta = per_coin_claim(4.0, 1e-5, "add_or_remove_one")
    assert eps == 8.0 and delta == pytest.approx((1 + math.exp(4.0)) * 1e-5)
    assert per_coin_claim(None, 1e-5, "add_or_remove_one") == (None, 1e-5)
    assert per_coin_claim(53.0, 1e-5, "add_or_remove_one") == (106.0, 1.0)   # δ capped


def test_the_heuristic_without_canaries_is_kept_out_of_pass_fail():
    heuristic = {"design": "heuristic", "auc": 0.9, "advantage": 0.7, "devices": 50,
                 "claimed": None, "claim": "none"}
    assert empirical_checks({"canary": {"available": False}, "membership": heuristic}) == []
    one_run = {"design": "one-run", "claimed": 1.0, "claimed_per_coin": 1.0,
               "relation": "replace_one", "epsilon_lower": 1.5, "confidence": 0.95,
               "correct": 90, "guesses": 100, "canaries": 200}
    [check] = empirical_checks({"canary": {"available": False}, "membership": one_run})
    assert check.level == "example" and not check.passed


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
    from fedrec.simulations.inprocess import run_inprocess

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
    # without example canaries the membership attack is a heuristic outside the verdict
    audited = json.loads((dp / "audit.json").read_text())
    assert audited["empirical"]["membership"]["design"] == "heuristic"
    assert not any("membership" in c["name"] or "one-run" in c["name"]
                   for c in audited["checks"])


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
def test_one_run_audit_finds_memorisation_and_respects_example_dp(tmp_path):
    data = _random_tastes(tmp_path)
    run = dict(dataset=data, example_canaries=200, **MEMORISE)
    plain = membership_audit(load_run(_run(tmp_path, "plain", **run)))
    assert plain["design"] == "one-run" and plain["claimed"] is None
    assert plain["canaries"] == plain["scored"] == 200
    assert plain["epsilon_lower"] > 0.5 and plain["auc"] > 0.75
    private = _run(tmp_path, "dp", dp="client", client_noise_multiplier=2.0, client_clip=0.5,
                   **run)
    found = membership_audit(load_run(private))
    assert found["claimed"] is not None and found["relation"] in ("add_or_remove_one",
                                                                  "replace_one")
    assert found["epsilon_lower"] <= found["claimed_per_coin"]
    assert found["auc"] < plain["auc"] - 0.15
    assert fedrec(["audit", str(private), "--empirical"]) == 0
    checks = json.loads((private / "audit.json").read_text())["checks"]
    assert any(c["name"] == "one-run lower bound not above claimed example epsilon"
               and c["passed"] for c in checks)
    manifest = json.loads((private / "manifest.json").read_text())
    assert manifest["data"]["example_canaries"] == 200
    assert (private / "audit_roc.png").exists()
