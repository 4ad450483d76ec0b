"""SecAgg+'s integer arithmetic (issue 19, item 4): the worst-case sum against the
modulus, the refusal of cohorts that can wrap, and the stochastic-rounding error that the
accounting adds to the clip, checked against Flower's own quantization code."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from dp_accounting import dp_event as dpe
from flwr.common.secure_aggregation.quantization import dequantize, quantize
from flwr.server.workflow import SecAggPlusWorkflow

from fedrec.server import secagg_bounds as sb
from fedrec.server.dp import ServerPrivacy, check_settings
from fedrec.shared import privacy
from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError
from fedrec.simulations.cli import main as fedrec

Q, M, R = 2 ** 22, 2 ** 32, 8.0
SECAGG = dict(dp="server", dp_clipping="client-fixed", secagg=True, clip=0.5)


def test_the_bounds_use_flowers_defaults():
    params = inspect.signature(SecAggPlusWorkflow).parameters
    assert params["quantization_range"].default == sb.FLOWER_QUANTIZATION_RANGE == Q
    assert RunConfig().secagg_quantization_range == Q
    assert params["modulus_range"].default == sb.FLOWER_MODULUS_RANGE == M


def test_worst_case_sum_and_largest_cohort_by_hand():
    assert sb.worst_case_sum(1, Q) == 4_194_305                      # Q + 1
    assert sb.worst_case_sum(1023, Q) == 4_290_774_015 < M
    assert sb.worst_case_sum(1024, Q) == 4_294_968_320 >= M
    assert sb.max_clients(Q) == 1023
    assert sb.max_clients(2 ** 20) == 4095                         # (2^32 - 1) // (2^20 + 1)
    assert sb.max_quantization_range(2000) == 2_147_482            # (2^32 - 1) // 2000 - 1
    assert sb.worst_case_sum(2000, 2_147_482) < M <= sb.worst_case_sum(2000, 2_147_483)


def _secagg_average(values: list[float], q: int = Q) -> float:
    """What SecAgg+ hands the strategy when devices send one weight each: Flower's
    ``quantize`` with the weight factor round(1 * q), the sum modulo M (the masks cancel),
    then the unmask stage's dequantize, offset and division by the summed factor."""
    quantized = [int(quantize([np.array([v])], R, q)[0][0]) for v in values]
    total, factor = sum(quantized) % M, (len(values) * q) % M
    mean = dequantize([np.array([total])], R, q)[0][0] - (len(values) - 1) * R
    return mean * q / factor if factor else math.inf


def test_a_sum_past_the_modulus_wraps_by_thousands_of_noise_stds():
    top = R * (1 - 1e-9)
    assert _secagg_average([top] * 1023) == pytest.approx(top, abs=2 * R / Q)
    assert _secagg_average([top] * 1024) == math.inf            # the factor is 2^32 = 0
    wrapped = _secagg_average([top] * 1025)                    # the factor wraps to Q
    std = 1.0 * 0.5 / 1025                                     # z = 1, clip 0.5
    assert abs(wrapped - top) > 1000 * std
    # a smaller Q lets a larger cohort through, exactly
    assert _secagg_average([top] * 1025, q=2 ** 20) == pytest.approx(top, abs=2 * R / 2 ** 20)


def test_cohorts_that_can_wrap_are_refused_in_one_line():
    sb.check_no_wrap(1023, Q)
    with pytest.raises(ConfigError, match="use at most 1023 clients per round") as err:
        sb.check_no_wrap(1024, Q)
    assert "\n" not in str(err.value)
    sb.check_no_wrap(2000, sb.max_quantization_range(2000))
    with pytest.raises(ConfigError, match="can wrap SecAgg"):
        check_settings(RunConfig(**SECAGG, clients_per_round=1025), 2000, [])
    check_settings(RunConfig(**SECAGG, clients_per_round=1023), 2000, [])
    check_settings(RunConfig(**SECAGG, clients_per_round=2000,
                             secagg_quantization_range=2 ** 20), 2000, [])


def test_the_cli_refuses_a_cohort_that_can_wrap_with_one_line(tmp_path, capsys):
    code = fedrec(["simulate", "--dataset", "synthetic", "--synthetic-users", "1030",
                   "--synthetic-items", "40", "--clients-per-round", "1024", "--rounds", "1",
                   "--dp", "server", "--dp-clipping", "client-fixed", "--secagg",
                   "--no-reference", "--out", str(tmp_path / "run")])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2
    assert len(errors) == 1 and "can wrap SecAgg+'s sum" in errors[0]


def test_stochastic_rounding_stays_within_rho():
    rng = np.random.default_rng(0)
    d = 20_000
    x = rng.uniform(-1.0, 1.0, d)
    back = dequantize(quantize([x], R, Q), R, Q)[0]
    step = 2 * R / Q
    assert np.max(np.abs(back - x)) < step                       # less than one level
    assert np.linalg.norm(back - x) <= sb.rounding_l2(d, R, Q)
    assert sb.rounding_l2(10 ** 6, 8.0, 2 ** 22) == pytest.approx(
        1000 * 16 / 2 ** 22 * (1 + 2 ** -20), rel=1e-12)


def test_the_accounting_adds_rho_to_the_clip_with_the_real_numbers():
    # MovieLens-100k's global weights at gmf-dim 64: d = 139,633; R = 8, Q = 2^22
    rho = sb.rounding_l2(139_633, R, Q)
    assert rho == pytest.approx(math.sqrt(139_633) * 16 / 2 ** 22, rel=1e-5)   # 1.43e-3
    clip, z, m, n = 0.5, 1.0, 100, 943
    plain = privacy.user_level_event(n, m, m, z * clip / m, clip)
    rounded = privacy.user_level_event(n, m, m, z * clip / m, clip, rounding_l2=rho)
    assert rounded.event.noise_multiplier == pytest.approx(z / (2 * (1 + rho / clip)))
    eps = [privacy.epsilon(dpe.SelfComposedDpEvent(e, 100), 1e-4, relation="replace_one")
           for e in (plain, rounded)]
    assert eps[1] > eps[0]                        # not negligible by fiat: it is counted
    cfg = RunConfig(**SECAGG, noise_multiplier=z, clients_per_round=m)
    sp = ServerPrivacy(cfg, n, m)
    sp.rounding_l2 = rho
    assert sp.planned_event() == rounded          # the target-ε plan counts it too
