"""SecAgg+ carries the distributed-noise shares of the statistics releases (issue #22):
Flower's encoding recovers the sum exactly, the device refuses what Flower would clip,
and the server receives no un-noised aggregate (the ServerApp and ClientApp over a grid
in this process, and through Flower's simulation engine)."""

from __future__ import annotations

import base64
import copy
import json
import shutil

import numpy as np
import pytest
from flwr.app import Context, Error, Message, RecordDict
from flwr.common import ndarray_to_bytes
from flwr.common.secure_aggregation.ndarrays_arithmetic import (
    factor_combine,
    factor_extract,
    parameters_addition,
    parameters_mod,
    parameters_multiply,
    parameters_subtraction,
)
from flwr.common.secure_aggregation.quantization import dequantize, quantize
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen

from fedrec.client import release_secagg
from fedrec.client import releases as device
from fedrec.server import distributed
from fedrec.shared import knn, secagg_prg, skellam
from fedrec.shared.errors import ConfigError
from fedrec.shared.release_config import ReleaseConfig
from fedrec.simulations import audit_releases, release_sim

N = 8
SMALL = dict(dataset="synthetic", synthetic_users=N, synthetic_items=30, head=10, cap=8,
             noise="distributed", noise_seed=5)


# ----- the encoding (fast) -----

def test_secagg_ranges_hand_computed_and_refusals():
    assert skellam.secagg_ranges(4, 3) == (16, 8, 64)          # 3 * 17 = 51 < 64
    assert skellam.secagg_ranges(4, 15) == (16, 8, 256)        # 15 * 17 = 255 < 256
    assert skellam.secagg_ranges(20, 1000) == (2 ** 20, 2 ** 19, 2 ** 30)
    with pytest.raises(ValueError, match="at most 30 bits"):
        skellam.secagg_ranges(31, 3)
    with pytest.raises(ValueError, match="exactly"):
        skellam.secagg_ranges(30, 2 ** 20)


def _flower_round(shares: list[np.ndarray], bits: int, rng) -> np.ndarray:
    """Flower 1.23's SecAgg+ arithmetic on ``shares`` with fedrec's ranges: the device's
    ``_collect_masked_vectors`` (weight, quantize, factor, masks mod M) and the server's
    ``unmask_stage`` (sum, unmask, dequantize, offset, divide by the factor), each line
    Flower's; the masks here are private only (pairwise ones cancel the same way)."""
    n = len(shares)
    q, c, m = skellam.secagg_ranges(bits, n)
    q_ratio = round(1 / 1.0 * q)        # num_examples / max_weight = 1
    masked, seeds = None, []
    for x in shares:
        params = parameters_multiply([x.astype(np.float64)], q_ratio / q)
        quantized = factor_combine(q_ratio, quantize(params, float(c), q))
        seed = rng.bytes(32)
        seeds.append(seed)
        mask = pseudo_rand_gen(seed, m, [a.shape for a in quantized])
        vec = parameters_mod(parameters_addition(quantized, mask), m)
        masked = vec if masked is None else parameters_addition(masked, vec)
    masked = parameters_mod(masked, m)
    for seed in seeds:
        masked = parameters_subtraction(masked, pseudo_rand_gen(seed, m, [a.shape for a in masked]))
    total_ratio, recon = factor_extract(parameters_mod(masked, m))
    vec = dequantize(recon, float(c), q)[0]
    vec += -(n - 1) * float(c)
    vec *= q / total_ratio
    return distributed.decode_average(vec, n)


@pytest.mark.parametrize("bits, n", [(4, 3), (12, 7), (30, 5)])
def test_flower_encoding_recovers_integer_sums_exactly(bits, n):
    """Random integer shares (negatives, and the extremes |x| = c) through Flower's own
    quantize / dequantize and masks: the decoded sum is exact."""
    rng = np.random.default_rng(bits * 100 + n)
    _, c, _ = skellam.secagg_ranges(bits, n)
    shares = [rng.integers(-c, c + 1, size=40) for _ in range(n)]
    shares[0][:4] = [c, -c, c, -c]
    shares[1][:4] = [c, -c, -c, c]
    np.testing.assert_array_equal(_flower_round(shares, bits, rng), np.sum(shares, axis=0))
    extreme = [np.full(3, c)] * n
    np.testing.assert_array_equal(_flower_round(extreme, bits, rng), np.full(3, n * c))
    np.testing.assert_array_equal(_flower_round([-e for e in extreme], bits, rng),
                                  np.full(3, -n * c))


def test_decode_is_exact_at_the_largest_allowed_sum():
    """Flower's float arithmetic after unmasking, at n 2^bits just under 2^50: the
    integer sum (extremes included) comes back exactly."""
    bits, n = 30, 2 ** 20 - 1
    q, c, m = skellam.secagg_ranges(bits, n)
    sums = np.array([n * c, -n * c, 0, 1, -1, n * c - 1, 12345678901])
    recon = np.mod(sums + n * c, m).astype(np.int64)      # what unmasking leaves
    vec = dequantize([recon], float(c), q)[0]
    vec += -(n - 1) * float(c)
    vec *= q / np.int64(n * q)
    np.testing.assert_array_equal(distributed.decode_average(vec, n), sums)


def test_device_refuses_a_share_flower_would_clip_or_misread():
    bits, n, t = 6, 4, 3
    q, c, m = skellam.secagg_ranges(bits, n)
    setup = {"target_range": q, "clipping_range": float(c), "mod_range": m,
             "max_weight": 1.0, "threshold": t}
    release_secagg.check_share(np.array([c, -c, 0]), bits, n, t, setup)   # the extremes pass
    with pytest.raises(release_secagg.ShareRefused, match="beyond the SecAgg"):
        release_secagg.check_share(np.array([0, c + 1]), bits, n, t, setup)
    with pytest.raises(release_secagg.ShareRefused, match="beyond the SecAgg"):
        release_secagg.check_share(np.array([-c - 1]), bits, n, t, None)
    for key, value in [("clipping_range", 8.0), ("mod_range", 2 * m), ("threshold", 2)]:
        with pytest.raises(release_secagg.ShareRefused, match="setup"):
            release_secagg.check_share(np.array([0]), bits, n, t, {**setup, key: value})


def test_plans_secagg_cannot_carry_are_one_clear_error():
    r = distributed.SkellamRelease(10, 4096.0, 1e6, 5, bits=20, threshold=1)
    with pytest.raises(ConfigError, match="t >= 2"):
        distributed.check_secagg({"popularity": r})
    r = distributed.SkellamRelease(10, 4096.0, 1e6, 5, bits=31)
    with pytest.raises(ConfigError, match="popularity release: SecAgg\\+ carries at most 30"):
        distributed.check_secagg({"popularity": r})
    distributed.check_secagg({"popularity": distributed.SkellamRelease(10, 1.0, 1.0, 5, 30)})


def test_an_unmasked_sum_is_reduced_and_centered_like_the_modular_sum():
    r = distributed.SkellamRelease(3, 4.0, 1.0, 5, bits=4)
    total, s = distributed.modular_total(distributed.UnmaskedSum(np.array([7, -8, 9]), 4), r)
    np.testing.assert_array_equal(total, np.array([7, -8, -7]) / 4.0)
    assert s == 4
    assert distributed.modular_total(distributed.UnmaskedSum(None, 2), r) == (None, 2)
    with pytest.raises(distributed.TooFewSurvivors, match="SecAgg\\+ halted"):
        distributed.check_survivors("popularity", 5, r, unmasked=False)


def test_full_seed_masks_differ_where_flowers_32_bit_fold_collides():
    """Two keys equal in Flower's 32-bit XOR fold give Flower the same masks; the
    full-seed generator (SHAKE-256 of the whole key) gives different ones, uniform on
    [0, M) (M - 1 included), with Flower's shapes."""
    rng = np.random.default_rng(7)
    a = bytearray(rng.bytes(32))
    b = bytearray(a)
    for i in range(4):                 # flip the same bits in two words: same fold
        b[i] ^= 0x5A
        b[4 + i] ^= 0x5A
    shapes = [(1,), (3, 5), ()]
    for x, y in zip(pseudo_rand_gen(bytes(a), 2 ** 20, shapes),
                    pseudo_rand_gen(bytes(b), 2 ** 20, shapes)):
        np.testing.assert_array_equal(x, y)                  # Flower: 32 bits of seed
    ours_a = secagg_prg.full_seed_rand_gen(bytes(a), 2 ** 20, shapes)
    ours_b = secagg_prg.full_seed_rand_gen(bytes(b), 2 ** 20, shapes)
    assert [x.shape for x in ours_a] == [(1,), (3, 5), ()]
    assert all(x.dtype == np.int64 for x in ours_a)
    assert not np.array_equal(ours_a[1], ours_b[1])
    again = secagg_prg.full_seed_rand_gen(bytes(a), 2 ** 20, shapes)
    assert all(np.array_equal(x, y) for x, y in zip(ours_a, again))   # both sides agree
    small = secagg_prg.full_seed_rand_gen(bytes(a), 4, [(4000,)])[0]
    assert set(np.unique(small)) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="power of two"):
        secagg_prg.full_seed_rand_gen(bytes(a), 6, [(2,)])


# ----- the apps over a grid in this process (no engine) -----

class _Grid:
    """Hands each message (a copy: what transport would deliver) to the ClientApp in
    this process; a device that raises answers with an error, as Flower's engine does.
    ``fail_at``: {node: SecAgg+ stage} where that node stops answering."""

    def __init__(self, cfg: ReleaseConfig, fail_at: dict[int, str] | None = None) -> None:
        from fedrec.client.release_app import app
        self.app, self.fail_at, self.failed = app, fail_at or {}, []
        self.contexts = {k: Context(run_id=1, node_id=k, node_config={"partition-id": k - 1},
                                    state=RecordDict(), run_config=cfg.to_dict())
                         for k in range(1, cfg.synthetic_users + 1)}

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        out = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            configs = msg.content.config_records.get(RECORD_KEY_CONFIGS, {})
            try:
                if node in self.fail_at and self.fail_at[node] == configs.get(Key.STAGE):
                    raise RuntimeError("device gone")
                out.append(self.app(copy.deepcopy(msg), self.contexts[node]))
            except Exception as err:       # noqa: BLE001 - a failed device, as Flower reports it
                self.failed.append((node, configs.get(Key.STAGE), str(err)))
                out.append(Message(Error(code=0, reason=str(err)), reply_to=msg))
        return out


def _run_on_grid(cfg: ReleaseConfig, fail_at=None) -> list:
    """Run the ServerApp's main over :class:`_Grid`; the (node, stage, reason) failures."""
    from fedrec.server import release_app
    grid = _Grid(cfg, fail_at)
    try:
        release_app.main(grid, Context(run_id=1, node_id=0, node_config={},
                                       state=RecordDict(), run_config=cfg.to_dict()))
    finally:
        _run_on_grid.failed = grid.failed
    return grid.failed


def _device_shares(cfg: ReleaseConfig, tmp, monkeypatch) -> tuple[dict, dict]:
    """Every device's plain contribution and centered noisy share per release,
    recomputed from the same test seed: the in-process engine (same dropouts) gives each
    release's request, then every device's share is drawn from its own stream."""
    requests, original = {}, device.centered_share

    def spy(statistic, request, data, rng):
        requests.setdefault(statistic, request)
        return original(statistic, request, data, rng)

    monkeypatch.setattr(device, "centered_share", spy)
    results = release_sim.run(cfg.replace(out=str(tmp), secagg_transcript=False))
    monkeypatch.undo()
    _, clients = release_sim.devices(cfg)
    n, seen = len(clients), {}
    for k, (statistic, request) in enumerate(requests.items(), start=1):
        seen[statistic] = [
            (device.dense_contribution(statistic, request, c),
             original(statistic, request, c,
                      device.noise_generator(cfg.noise_seed, device.share_stream(k, n, u))),
             int(request["noise-bits"])) for u, c in enumerate(clients)]
    return seen, results


def _needles(seen: dict) -> list[bytes]:
    """Byte encodings of every device's plain contribution and noisy share (float64,
    float32, int64, int32; centered, shifted by c as Flower quantizes it, and reduced
    modulo 2^bits as the in-process upload), and of the un-noised sums."""
    out = []
    for devices in seen.values():
        for plain, x, bits in devices:
            c = 2 ** (bits - 1)
            for v in (plain, x, x + c, skellam.wrap(x, bits)):
                out += [np.asarray(v).astype(d).tobytes()
                        for d in (np.float64, np.float32, np.int64, np.int32)]
        total = np.sum([plain for plain, _, _ in devices], axis=0)
        out += [total.astype(d).tobytes() for d in (np.float64, np.float32)]
    return out


def _transcript(path):
    entries = [json.loads(line) for line in (path / "secagg-transcript.jsonl").open()]
    payloads = [base64.b64decode(p) for e in entries if "payloads" in e for p in e["payloads"]]
    return payloads, {e["unmasked"]: e for e in entries if "unmasked" in e}


def _assert_no_unnoised_aggregate(run, seen, survivors_of):
    """(a) no payload the server received holds a device's contribution or share, or
    the un-noised sum; (b) each unmasked sum is exactly the sum of the survivors' shares."""
    payloads, unmasked = _transcript(run)
    plain, x, _ = seen["popularity"][0]              # the needles would be found
    assert _needles({"p": [(plain, x, 8)]})[6] in ndarray_to_bytes(x)   # x as int64
    assert payloads and set(unmasked) == set(seen) == {"popularity", "cooccurrence"}
    for needle in _needles(seen):
        assert not any(needle in p for p in payloads)
    for statistic, entry in unmasked.items():
        keep = list(survivors_of(statistic))
        assert entry["survivors"] == len(keep)
        np.testing.assert_array_equal(np.array(entry["total"]),
                                      np.sum([seen[statistic][u][1] for u in keep], axis=0))


@pytest.mark.inprocess
def test_the_server_holds_no_unnoised_aggregate_on_a_grid(tmp_path, monkeypatch):
    cfg = ReleaseConfig(**SMALL, secagg_transcript=True, out=str(tmp_path / "grid"))
    _run_on_grid(cfg)
    seen, local = _device_shares(cfg, tmp_path / "local", monkeypatch)
    _assert_no_unnoised_aggregate(tmp_path / "grid", seen, lambda _s: range(N))
    a, _ = knn.load_released(tmp_path / "grid" / "release.npz")
    b, _ = knn.load_released(tmp_path / "local" / "release.npz")
    np.testing.assert_array_equal(a.popularity, b.popularity)   # same shares, same sums
    np.testing.assert_array_equal(a.similarity, b.similarity)
    report = audit_releases.audit(tmp_path / "grid")
    assert report["passed"], report
    assert any(c["name"].startswith("SecAgg+ setup") for c in report["checks"])
    privacy = json.loads((tmp_path / "grid" / "privacy.json").read_text())["user"]
    assert "honest-but-curious server" in privacy["adversary"]
    manifest = json.loads((tmp_path / "grid" / "manifest.json").read_text())
    assert manifest["privacy"]["transport"] == "secagg+"
    assert manifest["privacy"]["releases"]["popularity"]["secagg"]["threshold"] == N
    assert manifest["privacy"]["releases"]["popularity"]["secagg"]["mask_generator"] == \
        "shake-256" and secagg_prg.installed()     # and both sides unmasked with it


@pytest.mark.inprocess
def test_dropouts_before_and_after_the_masked_upload(tmp_path, monkeypatch):
    """Min-survivors 0.75 (t = 6 of 8): one simulated failure at the masked-vector stage
    (--release-dropout) leaves s = n - 1 in each release; a device that also vanishes
    after uploading its masked share (at unmask) is still in the sum (its mask seed is
    rebuilt from the others' shares): s stays n - 1. Released, recorded, audited."""
    cfg = ReleaseConfig(**SMALL, secagg_transcript=True, min_survivors=0.75,
                        release_dropout=0.125, out=str(tmp_path / "grid"))
    gone = {k: device.simulated_dropouts(0.125, N, cfg.seed, k) for k in (1, 2)}
    assert all(len(g) == 1 for g in gone.values())
    late = next(u for u in range(N) if u not in gone[1] | gone[2])
    failed = _run_on_grid(cfg, fail_at={late + 1: Stage.UNMASK})
    stages = sorted((node - 1, stage) for node, stage, _ in failed)
    assert stages == sorted([(late, Stage.UNMASK)] * 2 + [
        (u, Stage.COLLECT_MASKED_VECTORS) for g in gone.values() for u in g])
    seen, _ = _device_shares(cfg, tmp_path / "local", monkeypatch)
    index = {"popularity": 1, "cooccurrence": 2}
    _assert_no_unnoised_aggregate(
        tmp_path / "grid", seen, lambda s: [u for u in range(N) if u not in gone[index[s]]])
    records = json.loads((tmp_path / "grid" / "privacy.json").read_text())["user"]
    for rec in records["distributed"]["releases"].values():
        assert (rec["survivors"], rec["threshold"], rec["devices"]) == (N - 1, 6, N)
    assert audit_releases.audit(tmp_path / "grid")["passed"]


@pytest.mark.inprocess
def test_dropouts_before_the_key_shares_leave_the_survivors_sum(tmp_path, monkeypatch):
    """t = 6 of 8: device 2 vanishes at SecAgg+'s setup, device 5 at share keys (before
    its key shares reach anyone). Flower 1.23's workflow alone halts here (it tries to
    rebuild their keys from shares nobody holds); DropoutTolerantSecAggPlus forgets them:
    the release is made with s = 6, the sum of the other six shares, and audited."""
    cfg = ReleaseConfig(**{**SMALL, "pipeline": "popularity"}, secagg_transcript=True,
                        min_survivors=0.75, out=str(tmp_path / "grid"))
    failed = _run_on_grid(cfg, fail_at={2: Stage.SETUP, 5: Stage.SHARE_KEYS})
    assert sorted((n, s) for n, s, _ in failed) == [(2, Stage.SETUP), (5, Stage.SHARE_KEYS)]
    seen, _ = _device_shares(cfg, tmp_path / "local", monkeypatch)
    payloads, unmasked = _transcript(tmp_path / "grid")
    assert payloads and set(unmasked) == {"popularity"}
    assert not any(needle in p for needle in _needles(seen) for p in payloads)
    assert unmasked["popularity"]["survivors"] == N - 2
    np.testing.assert_array_equal(
        np.array(unmasked["popularity"]["total"]),
        np.sum([seen["popularity"][u][1] for u in range(N) if u not in (1, 4)], axis=0))
    records = json.loads((tmp_path / "grid" / "privacy.json").read_text())["user"]
    rec = records["distributed"]["releases"]["popularity"]
    assert (rec["survivors"], rec["threshold"], rec["devices"]) == (N - 2, 6, N)
    assert audit_releases.audit(tmp_path / "grid")["passed"]


@pytest.mark.inprocess
def test_secagg_halting_makes_no_release_and_keeps_the_event(tmp_path):
    """Three devices vanish before the masked upload with t = 6 of 8: SecAgg+ halts, the
    popularity release is not made, its write-ahead event stays in the ledger."""
    cfg = ReleaseConfig(**SMALL, min_survivors=0.75, out=str(tmp_path / "grid"))
    with pytest.raises(distributed.TooFewSurvivors, match="popularity release not made"):
        _run_on_grid(cfg, fail_at={1: Stage.COLLECT_MASKED_VECTORS,
                                   2: Stage.COLLECT_MASKED_VECTORS,
                                   3: Stage.COLLECT_MASKED_VECTORS})
    ledger = json.loads((tmp_path / "grid" / "ledger.json").read_text())
    assert len(ledger["history"]) == 1
    assert not (tmp_path / "grid" / "release.npz").exists()


@pytest.mark.inprocess
def test_audit_fails_on_a_tampered_secagg_record(tmp_path):
    cfg = ReleaseConfig(**SMALL, out=str(tmp_path / "grid"))
    _run_on_grid(cfg)
    for key, value in [("threshold", N - 1), ("modulus_range", 2 ** 62),
                       ("mask_generator", "flower-mt19937")]:
        bad = tmp_path / f"bad-{key}"
        shutil.copytree(tmp_path / "grid", bad)
        manifest = json.loads((bad / "manifest.json").read_text())
        manifest["privacy"]["releases"]["popularity"]["secagg"][key] = value
        (bad / "manifest.json").write_text(json.dumps(manifest))
        report = audit_releases.audit(bad)
        failed = [c["name"] for c in report["checks"] if not c["passed"]]
        assert not report["passed"] and any(n.startswith("SecAgg+ setup") for n in failed)
    # the strict claim: δ_acc + (1 + e^E) p <= δ with p recomputed; a record claiming a
    # δ_acc above δ (ε at a larger δ: a smaller ε) fails
    bad = tmp_path / "bad-delta-acc"
    shutil.copytree(tmp_path / "grid", bad)
    privacy = json.loads((bad / "privacy.json").read_text())
    assert privacy["user"]["range_failure_probability"] == 0.0      # underflows at 2^bits
    privacy["user"]["delta_accounted"] = 2 * privacy["user"]["delta"]
    (bad / "privacy.json").write_text(json.dumps(privacy))
    failed = [c["name"] for c in audit_releases.audit(bad)["checks"] if not c["passed"]]
    assert audit_releases.RANGE_CHECK in failed


# ----- Flower's simulation engine -----

@pytest.mark.slow
def test_through_flowers_engine_the_server_holds_no_unnoised_aggregate(tmp_path, monkeypatch):
    """The issue's test: a distributed-noise knn run through flower-simulation (6
    SuperNodes), every payload the server's grid received recorded: none holds a
    device's contribution or share, the unmasked sums are the sums of the shares, the
    release equals the in-process engine's, and the audit passes."""
    cfg = ReleaseConfig(**{**SMALL, "synthetic_users": 6}, secagg_transcript=True,
                        out=str(tmp_path / "flower"))
    results = release_sim.run_flower(cfg)
    assert results["engine"] == "flower"
    seen, _ = _device_shares(cfg, tmp_path / "local", monkeypatch)
    _assert_no_unnoised_aggregate(tmp_path / "flower", seen, lambda _s: range(6))
    a, _ = knn.load_released(tmp_path / "flower" / "release.npz")
    b, _ = knn.load_released(tmp_path / "local" / "release.npz")
    np.testing.assert_array_equal(a.similarity, b.similarity)
    assert audit_releases.audit(tmp_path / "flower")["passed"]


@pytest.mark.slow
def test_through_flowers_engine_a_failed_device_leaves_n_minus_one(tmp_path, monkeypatch):
    """One device per release fails (raises) before its masked upload, t = 5 of 6: the
    releases complete with s = 5 recorded and the audit passes."""
    cfg = ReleaseConfig(**{**SMALL, "synthetic_users": 6}, secagg_transcript=True,
                        min_survivors=0.8, release_dropout=0.2, out=str(tmp_path / "flower"))
    release_sim.run_flower(cfg)
    gone = {k: device.simulated_dropouts(0.2, 6, cfg.seed, k) for k in (1, 2)}
    seen, _ = _device_shares(cfg, tmp_path / "local", monkeypatch)
    index = {"popularity": 1, "cooccurrence": 2}
    _assert_no_unnoised_aggregate(
        tmp_path / "flower", seen, lambda s: [u for u in range(6) if u not in gone[index[s]]])
    records = json.loads((tmp_path / "flower" / "privacy.json").read_text())["user"]
    assert all(r["survivors"] == 5 and r["threshold"] == 5
               for r in records["distributed"]["releases"].values())
    assert audit_releases.audit(tmp_path / "flower")["passed"]
