"""fedrec.shared.skellam: the Skellam RDP, the rounding bounds, the quantizer, the event."""

import math

import numpy as np
import pytest
from dp_accounting import dp_event as dpe
from dp_accounting.rdp import rdp_privacy_accountant as rdp_acc

from fedrec.shared import privacy, skellam
from fedrec.shared.ledger import Ledger


def test_rdp_hand_computed():
    # alpha 2, Delta1 = Delta2 = 1, mu = 1: 2/2 + min((3 + 6)/4, 3/2) = 2.5
    assert skellam.skellam_rdp(2, 1.0, 1.0, 1.0) == pytest.approx(2.5)
    # alpha 10, mu 100: 10/200 + min(25/40000, 3/200) = 0.050625
    assert skellam.skellam_rdp(10, 1.0, 1.0, 100.0) == pytest.approx(0.050625)
    # non-integer orders are bounded by the next integer order (RDP grows with alpha)
    assert skellam.skellam_rdp(2.3, 1.0, 1.0, 100.0) == skellam.skellam_rdp(3, 1.0, 1.0, 100.0)


def test_rdp_matches_reference_units():
    """Google's ``_skellam_rdp(l1, l2, central_var, scale, a)`` states the bound in real
    units (sensitivities l1, l2, variance central_var, integer grid 1/scale); ours is in
    integer units: l1*s, l2*s, variance s^2 * central_var. Their expression, written out:
    a/(2 mu) l2^2 + min(((2a-1) s l2^2 + 6 l1)/(4 s^3 mu^2), 3 l1/(2 s mu))."""
    l1, l2, var, s = 3.0, 1.5, 0.7, 40.0
    for a in (2, 7, 64):
        theirs = a / (2 * var) * l2 ** 2 + min(((2 * a - 1) * s * l2 ** 2 + 6 * l1)
                                              / (4 * s ** 3 * var ** 2), 3 * l1 / (2 * s * var))
        assert skellam.skellam_rdp(a, l1 * s, l2 * s, var * s * s) == pytest.approx(theirs)


def test_gaussian_limit():
    """With variance mu the Skellam RDP tends to the Gaussian's alpha Delta2^2 / (2 mu),
    i.e. a Gaussian of std sqrt(mu) (= sqrt(2 lambda) for Poisson(lambda) - Poisson(lambda))
    and noise multiplier sqrt(mu) / Delta2; it is never below it."""
    for mu in (1e2, 1e4, 1e8):
        for a in (2, 32):
            gauss = a / (2 * mu)
            assert skellam.skellam_rdp(a, 1.0, 1.0, mu) >= gauss
        assert skellam.skellam_rdp(32, 1.0, 1.0, mu) / (32 / (2 * mu)) < 1 + 3 / mu
    # ε agrees with dp-accounting's Gaussian at the same orders for large mu
    mu, l2 = 1e8, 2.0
    event = skellam.SkellamEvent(mu=mu, l1_sensitivity=2.0, l2_sensitivity=l2)
    acc = rdp_acc.RdpAccountant(list(skellam.ORDERS))
    acc.compose(dpe.GaussianDpEvent(math.sqrt(mu) / l2))
    gauss_eps = acc.get_epsilon(1e-5)
    ours = skellam.epsilon([event], 1e-5)
    assert gauss_eps <= ours <= gauss_eps * (1 + 1e-4)


def test_rounded_bounds_hand_computed():
    assert skellam.rounded_l2_norm_bound(10.0, 0.0, 4) == pytest.approx(12.0)
    # beta = e^-1/2: sqrt(100 + 4/4 + 1 * (10 + 1)) = sqrt(112)
    assert skellam.rounded_l2_norm_bound(10.0, math.exp(-0.5), 4) == pytest.approx(math.sqrt(112))
    assert skellam.rounded_l1_norm_bound(3.0, 100) == pytest.approx(9.0)      # L2^2
    assert skellam.rounded_l1_norm_bound(30.0, 100) == pytest.approx(300.0)   # sqrt(d) L2
    l1, l2 = skellam.replace_one_sensitivities(10.0, 1.0, 4, beta=0.0)
    assert (l1, l2) == (pytest.approx(48.0), pytest.approx(24.0))


def test_quantizer_keeps_bound_and_is_unbiased():
    rng = np.random.default_rng(1)          # test seed: not private
    x = rng.normal(size=300)
    x /= np.linalg.norm(x)
    bound = skellam.rounded_l2_norm_bound(50.0, skellam.BETA, 300)
    draws = np.stack([skellam.quantize(x, 50.0, 1.0, rng) for _ in range(400)])
    assert draws.dtype == np.int64
    assert np.all(np.linalg.norm(draws, axis=1) <= bound)
    assert np.allclose(draws.mean(0), 50.0 * x, atol=0.2)
    big = skellam.quantize(10 * x, 50.0, 1.0, rng)        # clipped to norm 1 first
    assert np.linalg.norm(big) <= bound


def test_event_round_trips_through_ledger_and_accountant():
    event = skellam.release_event(mu=4e6, scale=1000.0, clip=1.0, dim=50)
    assert event.to_dict() == privacy.event_to_dict(event)
    assert privacy.event_from_dict(event.to_dict()) == event
    ledger = Ledger("replace_one", 1e-5)
    ledger.record(1, event)
    ledger.record(2, event)
    again = Ledger.loads(ledger.dumps())
    assert again.epsilon("rdp") == pytest.approx(skellam.epsilon([event, event], 1e-5), rel=1e-3)
    assert again.epsilon("pld") is None      # PLD has no Skellam: the claim is RDP


def test_a_ledger_written_before_the_fedrec_namespace_still_loads():
    """Ledgers written before issue #20 name the class's module ``shared.skellam``: it
    reads as ``fedrec.shared.skellam`` (a wheel installs no module named ``shared``)."""
    event = skellam.release_event(mu=4e6, scale=1000.0, clip=1.0, dim=50)
    assert event.to_dict()["module_name"] == "fedrec.shared.skellam"
    old = {**event.to_dict(), "module_name": "shared.skellam"}
    assert privacy.event_from_dict(old) == event
    nested = privacy.event_to_dict(dpe.SelfComposedDpEvent(event, 3))
    nested["event"]["module_name"] = "shared.skellam"
    assert privacy.event_from_dict(nested) == dpe.SelfComposedDpEvent(event, 3)


def test_calibrate_meets_target():
    sens = [skellam.replace_one_sensitivities(1000.0, 1.0, d)[1] for d in (100, 4950)]
    shares = [0.2, 0.8]

    def events(mus):
        return [skellam.release_event(m, 1000.0, 1.0, d) for m, d in zip(mus, (100, 4950))]

    z = skellam.calibrate(8.0, 1e-5, sens, shares, events)
    mus = [(d * z) ** 2 / f for d, f in zip(sens, shares)]
    assert skellam.epsilon(events(mus), 1e-5) <= 8.0
    assert skellam.epsilon(events([m * 0.99 for m in mus]), 1e-5) > 8.0 - 0.05


def test_bits_and_modular_sum():
    # n R + t, two's complement: 10 devices, R = 100, mu tiny -> t small
    bits = skellam.bits_needed(10, 100.0, 1.0, 1)
    bound = 1000 + math.ceil(skellam.noise_tail(1.0, 1))
    assert 2 ** (bits - 2) <= bound < 2 ** (bits - 1)
    values = np.array([-5, 3, 2 ** 10 - 1, -(2 ** 10)])
    assert np.array_equal(skellam.unwrap(skellam.wrap(values, 11), 11), values)


def test_noise_share_moments():
    rng = np.random.default_rng(3)
    draws = skellam.noise_share(200_000, 9.0, rng)
    assert abs(draws.mean()) < 0.05 and draws.var() == pytest.approx(9.0, rel=0.02)
