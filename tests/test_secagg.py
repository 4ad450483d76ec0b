"""Secure aggregation (Flower SecAgg+ with client-side clipping DP): the server only ever
holds the sum. In-process federations run the real ServerApp loop, SecAggPlusWorkflow
and ClientApp (secaggplus_mod included); one run goes through Flower's simulation engine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedrec.server.app import run_federation, server_data
from fedrec.server.rundir import RunDir
from fedrec.server.secagg_bounds import rounding_l2
from fedrec.shared import privacy as privacy_lib
from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError
from fedrec.simulations.cli import main as fedrec
from fedrec.simulations.inprocess import InProcessGrid

BASE = dict(dataset="synthetic", synthetic_users=5, synthetic_items=60, rounds=2, dp="server",
            dp_clipping="client-fixed", clip=0.5, noise_seed=0, gmf_dim=8, mlp_dim=8,
            content_dim=8, reconstruction_steps=2)


class RecordingGrid(InProcessGrid):
    """What crosses the wire from each device, kept for inspection."""

    def __init__(self, cfg: RunConfig, n_nodes: int) -> None:
        super().__init__(cfg, n_nodes)
        self.replies = []

    def send_and_receive(self, messages, *, timeout=None):
        replies = super().send_and_receive(messages, timeout=timeout)
        self.replies += [(m.metadata.message_type, r) for m, r in zip(messages, replies)]
        return replies


def _run(tmp_path, name, **changes) -> tuple[RunDir, RecordingGrid]:
    cfg = RunConfig(out=str(tmp_path / name), **{**BASE, **changes})
    grid = RecordingGrid(cfg, server_data(cfg).n_clients)
    run_federation(grid, cfg)
    return RunDir(cfg.out), grid


@pytest.mark.inprocess
def test_secagg_changes_who_sees_what_not_the_result(tmp_path):
    plain, _ = _run(tmp_path, "plain", noise_multiplier=0.0)
    secure, grid = _run(tmp_path, "secagg", noise_multiplier=0.0, secagg=True)
    a, _ = plain.load_checkpoint(2)
    b, _ = secure.load_checkpoint(2)
    assert set(a) == set(b) and all(a[k].dtype == b[k].dtype for k in a)
    # the same federation, up to SecAgg+'s quantization (2^22 levels over ±8 per weight)
    assert max(float(np.max(np.abs(a[k] - b[k]))) for k in a) < 1e-4
    assert any(float(np.max(np.abs(a[k] - b[k]))) > 0 for k in a)      # it did go through SecAgg+
    rows = secure.read_metrics()
    assert [r["clients_replied"] for r in rows] == [5, 5]
    # the strategy received one vector for all devices (the unmasked average) ...
    assert [r["secagg_distinct_updates"] for r in rows] == [1, 1]
    # ... and no device ever sent its weights in clear: train replies carry no arrays,
    # only the protocol's records (keys, encrypted shares, masked integer vectors)
    train = [r for kind, r in grid.replies if kind == "train" and not r.has_error()]
    assert len(train) == 2 * 4 * 5                                  # 2 rounds x 4 stages x 5
    assert all(sum(len(rec) for rec in r.content.array_records.values()) == 0 for r in train)
    masked = [r for r in train if "masked_params" in r.content["secaggplus_configs"]]
    assert len(masked) == 10


@pytest.mark.inprocess
def test_secagg_with_dp_noise_is_accounted_and_audited(tmp_path):
    run, _ = _run(tmp_path, "dp", noise_multiplier=1.0, secagg=True)
    rows = run.read_metrics()
    assert all(r["dp_noise_std"] == pytest.approx(1.0 * 0.5 / 5) for r in rows)
    # the sensitivity counts SecAgg+'s rounding: clip + sqrt(d) * 2R/Q (issue 19, item 4)
    weights, _ = run.load_checkpoint(1)
    rho = rounding_l2(sum(w.size for w in weights.values()), 8.0, 2 ** 22)
    assert all(r["dp_rounding_l2"] == pytest.approx(rho) for r in rows)
    event = privacy_lib.event_from_dict(rows[0]["dp_event"])
    assert event.noise_multiplier == pytest.approx(1.0 * 0.5 / 5 * 5 / (2 * (0.5 + rho)))
    assert [r["participants"] for r in run.private_rows()] == [[0, 1, 2, 3, 4]] * 2
    privacy = json.loads((run.path / "privacy.json").read_text())
    assert privacy["user"]["rounds"] == 2 and np.isfinite(privacy["user"]["epsilon"])
    assert fedrec(["audit", str(run.path)]) == 0
    audit = json.loads((run.path / "audit.json").read_text())
    assert audit["levels"]["user"]["recomputed"]["rdp"] == pytest.approx(
        privacy["user"]["epsilon"], rel=1e-9)


@pytest.mark.inprocess
def test_a_resumed_secagg_run_records_its_rounds_in_the_restored_ledger(tmp_path):
    cfg = RunConfig(out=str(tmp_path / "resumed"), **{**BASE, "noise_multiplier": 1.0,
                                                       "secagg": True, "rounds": 1})
    run_federation(RecordingGrid(cfg, 5), cfg)
    more = cfg.replace(rounds=2, resume=True)
    run_federation(RecordingGrid(more, 5), more)
    privacy = json.loads((RunDir(cfg.out).path / "privacy.json").read_text())
    assert privacy["user"]["rounds"] == 2                 # round 2 was counted, not lost
    assert fedrec(["audit", cfg.out]) == 0


def test_secagg_settings_are_checked_at_the_edge(tmp_path):
    from fedrec.server.dp import check_settings

    for bad in ({"dp": "none"}, {"dp_clipping": "server-fixed"}, {"dp": "both"}):
        with pytest.raises(ConfigError, match="secagg needs dp = server with dp-clipping"):
            RunConfig(**{**BASE, "secagg": True, **bad})
    with pytest.raises(ConfigError, match="secagg-shares must be 0"):
        RunConfig(**BASE, secagg=True, secagg_shares=2)
    with pytest.raises(ConfigError, match="at least 3 clients per round"):
        check_settings(RunConfig(**BASE, secagg=True, clients_per_round=2), 5, [])


def test_weights_secagg_would_clip_silently_stop_the_run(tmp_path):
    with pytest.raises(RuntimeError, match="SecAgg\\+ would clip weights silently"):
        _run(tmp_path, "tight", noise_multiplier=0.0, secagg=True, secagg_clipping_range=0.6)


@pytest.mark.slow
def test_secagg_through_flowers_simulation_engine(tmp_path):
    out = tmp_path / "sim"
    assert fedrec(["simulate", "--dataset", "synthetic", "--synthetic-users", "6", "--rounds", "2",
                   "--dp", "server", "--dp-clipping", "client-fixed", "--clip", "0.5",
                   "--noise-multiplier", "0.8", "--secagg", "--workers", "2", "--no-reference",
                   "--out", str(out)]) == 0
    rows = RunDir(out).read_metrics()
    assert [(r["clients_replied"], r["secagg_distinct_updates"]) for r in rows] == [(6, 1)] * 2
    assert fedrec(["audit", str(out)]) == 0


@pytest.mark.parametrize("app_module", ["fedrec.client.app", "fedrec.server.app"])
def test_dp_fedavg_apps_install_the_full_seed_mask_generator(app_module):
    """Issue #22 follow-up: DP-FedAvg's ClientApp and ServerApp, on import, make both
    Flower SecAgg+ modules (the device's mod, the server's workflow) draw masks with
    fedrec's full-seed SHAKE-256 generator, not Flower's 32-bit-seeded one. The module
    body runs afresh (not registered in sys.modules) after Flower's generator is put back."""
    import importlib
    import importlib.util

    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen

    from fedrec.shared import secagg_prg

    modules = [importlib.import_module(name) for name in secagg_prg.MODULES]
    before = [m.pseudo_rand_gen for m in modules]
    try:
        for m in modules:
            m.pseudo_rand_gen = pseudo_rand_gen
        assert not secagg_prg.installed()
        spec = importlib.util.find_spec(app_module)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        assert secagg_prg.installed()
        assert all(m.pseudo_rand_gen is secagg_prg.full_seed_rand_gen for m in modules)
    finally:
        for m, gen in zip(modules, before):
            m.pseudo_rand_gen = gen
