"""DP-FedAvg with distributed Skellam noise (``--dp distributed --secagg``, issue #22):
devices clip, round and noise their update; Flower's SecAgg+ carries the integers
exactly; the server adds no noise; the ledger, the audit and the survivors record."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from flwr.app import Error, Message
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.ndarrays_arithmetic import (
    factor_combine,
    factor_extract,
    parameters_mod,
)
from flwr.common.secure_aggregation.quantization import dequantize, quantize
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.server.strategy import FedAvg

from fedrec.client import ddp as device
from fedrec.server import ddp
from fedrec.server.distributed import decode_average
from fedrec.server.rundir import RunDir
from fedrec.shared import skellam
from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError
from fedrec.simulations.inprocess import InProcessGrid

BASE = dict(dataset="synthetic", synthetic_users=5, synthetic_items=60, rounds=2,
            dp="distributed", secagg=True, clip=0.5, noise_seed=0, gmf_dim=8, mlp_dim=8,
            content_dim=8, reconstruction_steps=2, target_epsilon=20.0)


def _flower_secagg_mean(vectors: list[np.ndarray], bits: int) -> np.ndarray:
    """What Flower 1.23's SecAgg+ hands the strategy for these device vectors (its own
    quantize, factor and modulus; the dequantize, offset and ratio of ``unmask_stage``)."""
    q, c, m = skellam.secagg_ranges(bits, len(vectors))
    total = None
    for v in vectors:
        part = parameters_mod(factor_combine(q, quantize([v], c, q)), m)   # max_weight 1
        total = part if total is None else [a + b for a, b in zip(total, part)]
    q_total, recon = factor_extract(parameters_mod(total, m))
    (mean,) = dequantize(recon, c, q)
    return (mean - (len(vectors) - 1) * c) * (q / q_total)


def test_flowers_secagg_carries_the_integers_exactly():
    rng = np.random.default_rng(0)
    for bits, n in ((14, 5), (20, 7), (30, 3)):
        q, c, m = skellam.secagg_ranges(bits, n)
        assert q == 2 ** bits and c == q / 2 and m > n * (q + 1) and m & (m - 1) == 0
        vectors = [rng.integers(-c, c, 1000, endpoint=True) for _ in range(n)]
        vectors[0][:2] = (-c, c)                    # the range's ends pass too
        floats = [skellam.to_secagg(v, bits)[0] for v in vectors]
        assert all(skellam.to_secagg(v, bits)[1] == 0 for v in vectors)
        total = decode_average(_flower_secagg_mean(floats, bits), n)
        assert np.array_equal(total, np.sum(vectors, axis=0))
    with pytest.raises(ValueError):
        skellam.secagg_ranges(31, 3)                # Flower quantizes to int32


def test_a_device_clips_rounds_and_noises_its_update():
    rng = np.random.default_rng(1)
    sent = [rng.normal(size=(30, 4)), rng.normal(size=7)]
    new = [a + rng.normal(size=a.shape) for a in sent]          # update norm ~ 11 > clip
    scale, clip, mu_share, d = 4096.0, 0.5, 2.0e5, 127
    r = skellam.rounded_l2_norm_bound(scale * clip, skellam.BETA, d)
    bits = skellam.device_bits(r, mu_share, d)
    config = {"skellam-scale": scale, "skellam-clip": clip, "skellam-mu-share": mu_share,
              "skellam-bits": bits}
    uploads, noises, rounded = [], [], []
    for user in range(4):
        out = device.encode_update(sent, new, config, *device.generators(0, 3, user, 2))
        assert [a.shape for a in out] == [a.shape for a in sent]
        x = np.concatenate([a.ravel() for a in out]).astype(np.int64)
        assert np.array_equal(x, np.concatenate([a.ravel() for a in out]))   # integers
        noise = device.noise_share(config, d, device.generators(0, 3, user, 2)[1])
        rounded.append(x - noise)
        uploads.append(np.concatenate([a.ravel() for a in out]))
        noises.append(noise)
    update = np.concatenate([(b - a).ravel() for a, b in zip(sent, new)])
    clipped = update * scale * clip / np.linalg.norm(update)
    for v in rounded:           # clip then round: within one unit per coordinate, L2 kept
        assert np.max(np.abs(v - clipped)) < 1 and np.linalg.norm(v) <= r
    assert np.std(np.concatenate(noises)) == pytest.approx(math.sqrt(mu_share), rel=0.1)
    total = decode_average(_flower_secagg_mean(uploads, bits), 4)
    assert np.array_equal(total, np.sum(rounded, axis=0) + np.sum(noises, axis=0))


def test_the_settings_are_checked_at_the_edge():
    RunConfig(**BASE)
    with pytest.raises(ConfigError, match="dp = distributed needs secagg"):
        RunConfig(**{**BASE, "secagg": False})
    with pytest.raises(ConfigError, match="needs strategy fedavg"):
        RunConfig(**{**BASE, "strategy": "fedadam"})
    with pytest.raises(ConfigError, match="min-survivors must be in"):
        RunConfig(**{**BASE, "min_survivors": 0.0})
    with pytest.raises(ConfigError, match="target-epsilon .* or noise-multiplier"):
        RunConfig(**{**BASE, "target_epsilon": 0.0, "noise_multiplier": 0.0})
    with pytest.raises(ConfigError, match="more than SecAgg\\+'s 30"):
        ddp.plan_rounds(RunConfig(**{**BASE, "skellam_scale": 2.0 ** 29}), 5, 5, 1000)


def test_mu_is_calibrated_for_the_planned_rounds_without_amplification():
    cfg = RunConfig(**{**BASE, "rounds": 4, "target_epsilon": 8.0, "min_survivors": 0.6})
    plan = ddp.plan_rounds(cfg, 100, 5, 2000)
    assert plan.threshold == 3 and plan.mu_per_device == pytest.approx(plan.mu / 3)
    delta = cfg.user_delta(100)
    eps = skellam.epsilon([plan.event()] * 4, delta)
    assert eps <= 8.0 and eps == pytest.approx(8.0, rel=0.01)   # the plain event, 4 times
    assert plan.event() == skellam.release_event(plan.mu, 4096.0, 0.5, 2000)
    more = ddp.plan_rounds(cfg.replace(rounds=8), 100, 5, 2000)
    assert more.mu > plan.mu
    fixed = ddp.plan_rounds(cfg.replace(target_epsilon=0.0, noise_multiplier=1.5), 100, 5, 2000)
    assert fixed.mu == pytest.approx((1.5 * 4096 * 0.5) ** 2)


def _fit_results(mean: list[np.ndarray], survivors: int):
    params = ndarrays_to_parameters(mean)
    return [(None, FitRes(Status(Code.OK, ""), params, 1, {})) for _ in range(survivors)]


def test_the_server_steps_by_the_sum_over_scale_and_sampled_and_adds_no_noise():
    plan = ddp.RoundPlan(dim=6, scale=100.0, clip=1.0, mu=50.0, sampled=5, threshold=4, bits=12)
    fedavg = FedAvg(fraction_fit=1.0, min_fit_clients=5, min_available_clients=5)
    wrapper = ddp.SkellamSum(fedavg, plan)
    wrapper.current = [np.zeros((2, 2)), np.ones(2)]
    total = np.array([400, -200, 0, 5, 100, 1000])
    mean = [(total[:4] / 4).reshape(2, 2), total[4:] / 4]
    params, _ = wrapper.aggregate_fit(1, _fit_results(mean, 4), [])
    new = parameters_to_ndarrays(params)
    assert np.array_equal(wrapper.total, total) and wrapper.survivors == 4
    assert np.allclose(np.concatenate([a.ravel() for a in new]),
                       np.r_[0, 0, 0, 0, 1, 1] + total / (100.0 * 5))
    params, _ = wrapper.aggregate_fit(1, _fit_results(mean, 3), [])   # s < t: no aggregate
    assert params is None and wrapper.survivors == 3


def _run(tmp_path, name, grid_class=InProcessGrid, **changes):
    from fedrec.server.app import run_federation

    cfg = RunConfig(out=str(tmp_path / name), **{**BASE, **changes})
    run_federation(grid_class(cfg, 5), cfg)
    return RunDir(cfg.out), cfg


def check_noise_of_round(run: RunDir, rnd: int) -> None:
    """The step the server applied in round ``rnd`` is the survivors' clipped rounded
    updates plus their Skellam shares: redraw the shares (seeded streams), and what is
    left is within the clipped sum's norm; the shares have the accounted variance."""
    declared = json.loads((run.path / "manifest.json").read_text())["privacy"]["user"]
    config = {"skellam-mu-share": declared["mu_per_device"]}
    before, _ = run.load_checkpoint(rnd - 1)
    after, _ = run.load_checkpoint(rnd)
    step = np.concatenate([(after[k].astype(np.float64) - before[k]).ravel() for k in before])
    total = np.rint(step * declared["scale"] * declared["clients_per_round"]).astype(np.int64)
    row = next(r for r in run.private_rows() if r["round"] == rnd)
    seed = json.loads((run.path / "manifest.json").read_text())["config"]["seed"]
    noise = sum(device.noise_share(config, total.size, device.generators(0, seed, p, rnd)[1])
                for p in row["participants"])
    s, r = len(row["participants"]), declared["l2_sensitivity"] / 2
    residual = total - noise
    assert 0 < np.linalg.norm(residual) <= s * r        # the clipped, rounded updates
    assert np.linalg.norm(total) > 3 * s * r            # ... under much more noise
    assert np.var(noise) == pytest.approx(declared["mu_per_device"] * s, rel=0.15)


@pytest.mark.inprocess
def test_a_distributed_federation_is_noised_on_the_devices_and_audited(tmp_path):
    from fedrec.simulations.cli import main as fedrec

    run, _ = _run(tmp_path, "ddp")
    rows = run.read_metrics()
    assert [(r["survivors"], r["survivor_threshold"]) for r in rows] == [(5, 5)] * 2
    assert all("dp_noise_std" not in r for r in rows)        # the server added nothing
    check_noise_of_round(run, 2)
    releases = run.read_releases()        # write-ahead: the event, then who took part
    assert [("dp_event" in e, "participants" in e) for e in releases] == [
        (True, False), (False, True)] * 2
    privacy = json.loads((run.path / "privacy.json").read_text())["user"]
    assert privacy["accountant"] == "rdp" and privacy["epsilon"] == pytest.approx(20, rel=0.01)
    assert privacy["epsilon"] <= 20 and privacy["epsilon_by_accountant"]["pld"] is None
    assert privacy["range_failure_probability"] == 2 * 5 * 2.0 ** -64
    assert 0 < privacy["delta_accounted"] <= privacy["delta"]
    assert fedrec(["audit", str(run.path)]) == 0
    # a claim whose range-failure term is understated fails the audit
    text = (run.path / "privacy.json").read_text()
    tampered = json.loads(text)
    tampered["user"]["range_failure_probability"] = 0.0
    (run.path / "privacy.json").write_text(json.dumps(tampered))
    assert fedrec(["audit", str(run.path)]) == 1
    audit = json.loads((run.path / "audit.json").read_text())
    from fedrec.simulations.audit_ddp import RANGE_CHECK

    assert [c["name"] for c in audit["checks"] if not c["passed"]] == [RANGE_CHECK]
    (run.path / "privacy.json").write_text(text)
    # a tampered survivors record or mechanism fails the audit
    lines = [json.loads(x) for x in run.metrics_path.read_text().splitlines()]
    lines[1]["survivors"] = 4
    run.metrics_path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert fedrec(["audit", str(run.path)]) == 1
    audit = json.loads((run.path / "audit.json").read_text())
    assert [c["name"] for c in audit["checks"] if not c["passed"]] == [ddp_survivors()]
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["privacy"]["user"]["secagg"]["mask_generator"] == "shake-256"
    manifest["privacy"]["user"]["secagg"]["mask_generator"] = "flower-mt19937"
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    assert fedrec(["audit", str(run.path)]) == 1
    audit = json.loads((run.path / "audit.json").read_text())
    assert "Skellam mechanism recomputed from the declared settings" in [
        c["name"] for c in audit["checks"] if not c["passed"]]


def ddp_survivors() -> str:
    from fedrec.simulations.audit_ddp import SURVIVORS_CHECK

    return SURVIVORS_CHECK


class DroppingGrid(InProcessGrid):
    """Nodes in ``drop`` fail when asked for their masked vector (they drop out)."""

    drop: tuple[int, ...] = ()

    def _call(self, message):
        config = message.content.config_records.get(RECORD_KEY_CONFIGS)
        if (message.metadata.dst_node_id in self.drop and config is not None
                and config.get(Key.STAGE) == Stage.COLLECT_MASKED_VECTORS):
            return Message(Error(code=0, reason="dropped"), reply_to=message)
        return super()._call(message)


@pytest.mark.inprocess
def test_a_round_with_fewer_survivors_than_t_is_not_aggregated(tmp_path):
    class OneDrops(DroppingGrid):
        drop = (5,)

    class TwoDrop(DroppingGrid):
        drop = (4, 5)

    changes = dict(rounds=1, min_survivors=0.8)               # t = 4 of 5
    ok, _ = _run(tmp_path, "one", OneDrops, **changes)
    (row,) = ok.read_metrics()
    assert (row["survivors"], row["survivor_threshold"], row["clients_replied"]) == (4, 4, 4)
    short, _ = _run(tmp_path, "two", TwoDrop, **changes)
    (row,) = short.read_metrics()
    assert row["survivors"] < 4 and row["clients_replied"] == 0     # SecAgg+ halted: no sum
    first, _ = short.load_checkpoint(1)
    from fedrec.server.app import initial_global_weights, server_data

    cfg = RunConfig(**{**BASE, **changes})
    fed = server_data(cfg)
    start = initial_global_weights(cfg, fed.n_items, fed.item_features)
    assert all(np.array_equal(first[k], start[k]) for k in start)    # the model did not move
    privacy = json.loads((short.path / "privacy.json").read_text())["user"]
    assert privacy["releases"] == 1                 # its write-ahead event stays charged


@pytest.mark.slow
def test_dp_distributed_through_flowers_simulation_engine(tmp_path):
    from fedrec.simulations.cli import main as fedrec

    out = tmp_path / "sim"
    assert fedrec(["simulate", "--dataset", "synthetic", "--synthetic-users", "6",
                   "--synthetic-items", "60", "--rounds", "2", "--dim", "8", "--content-dim", "8",
                   "--dp", "distributed", "--secagg", "--clip", "0.5", "--target-epsilon", "20",
                   "--noise-seed", "0", "--workers", "2", "--no-reference",
                   "--out", str(out)]) == 0
    run = RunDir(out)
    rows = run.read_metrics()
    assert [(r["survivors"], r["secagg_distinct_updates"]) for r in rows] == [(6, 1)] * 2
    check_noise_of_round(run, 2)      # the aggregate = clipped updates + accounted noise
    assert fedrec(["audit", str(out)]) == 0
