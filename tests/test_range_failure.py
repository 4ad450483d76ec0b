"""The strict (ε, δ) claim with SecAgg+'s range-failure term (issue #22 follow-up):
ε is converted at δ_acc = δ - (1 + e^E) p, so that δ_acc + (1 + e^ε) p <= δ."""

from __future__ import annotations

import dataclasses
import math

import pytest

from fedrec.server import ddp, distributed, release_run
from fedrec.shared import skellam, stats
from fedrec.shared.config import RunConfig
from fedrec.shared.ledger import Ledger
from fedrec.shared.range_failure import RangeFailureTooLikely, accounted_delta, strict_claim
from fedrec.shared.release_config import ReleaseConfig


def _eps(delta: float) -> float:
    """A toy accountant, non-increasing in δ: ε(δ) = ln(1/δ) / 10."""
    return math.log(1 / delta) / 10


def test_the_claim_is_converted_at_the_accounted_delta_hand_computed():
    # δ = 1e-3, p = 1e-5, E = 2: (1 + e^2) p = 8.38905609893065e-5,
    # δ_acc = 9.161094390106935e-4, ε = ln(1091.5735...) / 10 = 0.69953...
    claim = strict_claim(_eps, 1e-3, 1e-5, epsilon_bound=2.0)
    assert claim.delta_accounted == pytest.approx(9.161094390106935e-4, rel=1e-12)
    assert claim.epsilon == pytest.approx(0.6995374, abs=1e-6)
    assert claim.epsilon_bound == 2.0 and claim.delta == 1e-3
    assert claim.delta_accounted + (1 + math.exp(claim.epsilon)) * 1e-5 <= 1e-3
    assert accounted_delta(1e-3, 1e-5, 2.0) == claim.delta_accounted


def test_without_a_valid_bound_e_is_the_epsilon_at_half_delta():
    # E = ε(δ/2) = ln(2000) / 10 = 0.76009; (1 + e^E) p = 3.13843e-5; δ_acc = 9.686157e-4;
    # ε = ln(1 / 9.686157e-4) / 10 = 0.693964
    for bound in (None, 0.5):            # 0.5 < ε(δ_acc): not a bound, so not used
        claim = strict_claim(_eps, 1e-3, 1e-5, epsilon_bound=bound)
        assert claim.epsilon_bound == pytest.approx(0.7600902, abs=1e-6)
        assert claim.delta_accounted == pytest.approx(9.686157e-4, rel=1e-6)
        assert claim.epsilon == pytest.approx(0.6939639, abs=1e-6)


def test_no_failure_term_is_the_plain_claim_and_a_large_one_is_refused():
    assert strict_claim(_eps, 1e-3, 0.0).epsilon == _eps(1e-3)
    with pytest.raises(RangeFailureTooLikely, match="leaves no accounted delta"):
        strict_claim(_eps, 1e-3, 1e-3, epsilon_bound=2.0)   # (1 + e^0.76) 1e-3 > δ / 2


def test_dp_fedavg_prints_the_epsilon_at_delta_acc_not_delta():
    cfg = RunConfig(dataset="synthetic", synthetic_users=5, synthetic_items=60, rounds=2,
                    dp="distributed", secagg=True, clip=0.5, noise_seed=0,
                    target_epsilon=20.0)
    plan = dataclasses.replace(ddp.plan_rounds(cfg, 5, 5, 100), range_log2=-37)
    dp = ddp.DistributedPrivacy(cfg, 5, plan)
    for r in (1, 2):
        dp.record_planned(r)
    record = dp.summary()
    p = 2 * 5 * 2.0 ** -37                                  # rounds x devices x 2^-37
    delta, delta_acc = record["delta"], record["delta_accounted"]
    assert record["range_failure_probability"] == p and delta == cfg.user_delta(5)
    assert 0 < delta_acc < delta
    assert delta_acc + (1 + math.exp(record["epsilon_bound"])) * p <= delta
    assert record["epsilon"] <= record["epsilon_bound"]
    at_acc = Ledger(dp.ledger.relation, delta_acc, dp.ledger.history).epsilon("rdp")
    assert record["epsilon"] == at_acc > dp.ledger.epsilon("rdp")   # δ_acc, not δ
    assert record["epsilon_by_accountant"]["rdp"] == record["epsilon"]
    assert dp.spent() == record["epsilon"]
    assert "delta_with_range_failure" not in record


def test_a_devices_share_exceeds_c_with_the_hand_computed_bernstein_bound():
    # c = 100, floor(R) = 10: the noise must exceed x = 90; 2 d exp(-x^2 / (2 (mu + x/3)))
    # = 10 exp(-8100 / 260) = exp(2.302585 - 31.153846) = 2.9516e-13
    assert skellam.share_exceed_probability(100, 10.5, 100.0, 5) == pytest.approx(
        2.9516e-13, rel=1e-4)
    assert skellam.share_exceed_probability(10, 10.5, 1.0, 5) == 1.0        # x <= 0
    assert skellam.share_exceed_probability(100, 10.5, 1e6, 5) == 1.0       # capped


def test_secagg_releases_print_the_epsilon_at_delta_acc_and_in_process_at_delta():
    cfg = ReleaseConfig(dataset="synthetic", synthetic_users=30, synthetic_items=40,
                        pipeline="popularity", noise="distributed", target_epsilon=2.0)
    delta = cfg.user_delta(30)
    (release,) = distributed.plan(2.0, delta, {"popularity": 1.0}, {"popularity": 40}, 16.0,
                                  30, 30).values()
    assert release.range_failure() == 0.0      # the sized width: p underflows float64
    release = dataclasses.replace(release, bits=7)     # too narrow: p visible (c = 64)
    p = release.range_failure()
    assert p == 30 * skellam.share_exceed_probability(
        64, release.event().l2_sensitivity / 2, release.mu_per_device, 40)
    assert p == pytest.approx(7.48e-5, rel=0.01)
    ledger = Ledger(stats.RELATION, delta)
    ledger.record(1, release.event())
    plan = {"popularity": release}
    user = release_run.privacy_record(cfg, ledger, plan, {}, secagg=True)["user"]
    assert user["range_failure_probability"] == p and user["delta"] == delta
    assert user["delta_accounted"] + (1 + math.exp(user["epsilon_bound"])) * p <= delta
    at_acc = Ledger(stats.RELATION, user["delta_accounted"], ledger.history).epsilon("rdp")
    assert user["epsilon"] == at_acc > ledger.epsilon("rdp")
    # ε(δ_acc) > the target here, so E is the fallback ε(δ / 2), not the target
    assert user["epsilon"] <= user["epsilon_bound"] == Ledger(
        stats.RELATION, delta / 2, ledger.history).epsilon("rdp")
    inprocess = release_run.privacy_record(cfg, ledger, plan, {}, secagg=False)["user"]
    assert inprocess["range_failure_probability"] == 0.0
    assert inprocess["epsilon"] == ledger.epsilon("rdp") and inprocess["delta_accounted"] == delta
