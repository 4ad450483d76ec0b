"""End to end through Flower's simulation engine (Ray): `fedrec simulate` and `flwr run .`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedrec.server.rundir import RunDir

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
# 5 of 12 clients per round: the resume test then also proves that sampling is seeded
# (C(12, 5) = 792 draws a round); a small federation keeps the three resume tests short
USERS, PER_ROUND = 12, 5
SMALL = ["--dataset", "synthetic", "--synthetic-users", str(USERS), "--seed", "1",
         "--clients-per-round", str(PER_ROUND), "--no-reference"]


def _env() -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
                TF_CPP_MIN_LOG_LEVEL="3")


def _fedrec(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "fedrec.simulations.cli", "simulate", *args],
                          capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> RunDir:
    out = tmp_path_factory.mktemp("sim") / "full"
    _fedrec(*SMALL, "--rounds", "3", "--out", str(out))
    return RunDir(out)


def test_simulate_writes_a_complete_run_directory(uninterrupted):
    rows = uninterrupted.read_metrics()
    assert [r["round"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["clients_sampled"] == PER_ROUND == r["clients_replied"]
        assert r["clients_failed"] == 0 and r["eval_clients"] == USERS
        assert r["bytes_up"] > 0 and r["bytes_down"] > r["bytes_up"]
        assert 0 <= r["ndcg@10"] <= r["hr@10"] <= 1
        assert r["client_compute_seconds"] > 0 and r["wall_seconds"] > 0
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    manifest = uninterrupted.manifest()
    assert manifest["config"]["rounds"] == 3 and manifest["data"]["clients"] == USERS
    assert len(manifest["data"]["fingerprint"]) == 64 and manifest["versions"]["flwr"].startswith("1.23")
    results = json.loads(uninterrupted.results_path.read_text())
    assert results["metrics"]["hr@10"] == rows[-1]["hr@10"] and results["privacy"] is None
    assert results["clients_per_round"] == PER_ROUND
    res = results["resources"]   # what the run used, measured by `fedrec simulate`
    assert res["simulation_nodes"] == USERS and res["peak_memory_mb"] > 200
    assert res["seconds_per_round"] == pytest.approx(np.mean([r["wall_seconds"] for r in rows]))
    assert sorted(p.name for p in uninterrupted.checkpoints.glob("round-*.npz")) == [
        "round-1.npz", "round-2.npz", "round-3.npz"]


def test_resume_gives_the_same_results_as_an_uninterrupted_run(uninterrupted, tmp_path):
    out = tmp_path / "resumed"
    _fedrec(*SMALL, "--rounds", "2", "--out", str(out))
    _fedrec("--resume", str(out), "--rounds", "3", "--no-reference")
    resumed = RunDir(out)
    a, b = uninterrupted.read_metrics(), resumed.read_metrics()
    assert [r["round"] for r in b] == [1, 2, 3]
    for ra, rb in zip(a, b):
        for key in ("train_loss", "hr@10", "ndcg@10", "full_hr@10"):
            assert rb[key] == pytest.approx(ra[key], abs=1e-5), (ra["round"], key)
    wa, _ = uninterrupted.load_checkpoint(3)
    wb, _ = resumed.load_checkpoint(3)
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], atol=1e-5)


def test_flwr_run_dot_runs_the_app(tmp_path):
    out = tmp_path / "flwr"
    proc = subprocess.run(["flwr", "run", ".", "--run-config", f"out='{out}' rounds=2"],
                          capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = RunDir(out).read_metrics()
    assert [r["round"] for r in rows] == [1, 2] and rows[-1]["clients_replied"] == 20


# a noise seed makes DP runs reproducible (and not private against whoever holds it)
DP = ["--dp", "both", "--noise-multiplier", "0.8", "--clip", "0.5",
      "--client-noise-multiplier", "1.2", "--noise-seed", "0"]


def _user_epsilon_from_log(run: RunDir) -> float:
    """What an auditor does: compose the per-round events logged in metrics.jsonl."""
    from fedrec.shared import privacy
    from fedrec.shared.ledger import Ledger

    ledger = Ledger("replace_one", run.manifest()["privacy"]["user"]["delta"])
    for row in run.read_metrics():
        ledger.record(row["round"], privacy.event_from_dict(row["dp_event"]))
    return ledger.epsilon("rdp")


def _client_ledgers(run: RunDir) -> dict[str, list[int]]:
    from fedrec.shared.ledger import Ledger

    return {p.parent.name: Ledger.loads(p.read_text()).rounds
            for p in sorted((run.path / "client_state").glob("*/ledger.json"))}


def test_dp_run_resumes_without_counting_epsilon_twice(tmp_path):
    full, part = RunDir(tmp_path / "full"), RunDir(tmp_path / "part")
    _fedrec(*SMALL, *DP, "--rounds", "3", "--out", str(full.path))
    _fedrec(*SMALL, *DP, "--rounds", "2", "--out", str(part.path))
    _fedrec("--resume", str(part.path), "--rounds", "3", "--no-reference")
    for run in (full, part):
        privacy = json.loads((run.path / "privacy.json").read_text())
        assert privacy["user"]["rounds"] == 3
        assert privacy["user"]["epsilon"] == pytest.approx(_user_epsilon_from_log(run), rel=1e-12)
        rows = run.read_metrics()
        assert all(r["dp_noise_std"] == pytest.approx(0.8 * 0.5 / PER_ROUND) for r in rows)
        assert privacy["example"]["max_client_epsilon"] == max(r["client_epsilon_max"] for r in rows)
        by = privacy["example"]["epsilon_by_accountant"]   # from the devices' own ledgers
        assert by["rdp"] == pytest.approx(privacy["example"]["max_client_epsilon"], rel=1e-9)
        assert by["pld"] is None        # PLD has no Poisson sampling under replace-one
    a = json.loads((full.path / "privacy.json").read_text())
    b = json.loads((part.path / "privacy.json").read_text())
    assert b["user"]["epsilon"] == pytest.approx(a["user"]["epsilon"], rel=1e-12)
    assert _client_ledgers(part) == _client_ledgers(full)        # same rounds, none twice
    assert all(len(r) == len(set(r)) for r in _client_ledgers(part).values())
    assert all(len(r) > 0 for r in _client_ledgers(part).values())
    ra, rb = full.read_metrics(), part.read_metrics()
    assert [r["hr@10"] for r in rb] == pytest.approx([r["hr@10"] for r in ra], abs=1e-5)
    from fedrec.simulations.cli import main as fedrec
    for run in (full, part):               # an independent auditor agrees with both runs
        assert fedrec(["audit", str(run.path)]) == 0
        audit = json.loads((run.path / "audit.json").read_text())
        assert audit["levels"]["user"]["recomputed"]["rdp"] == pytest.approx(
            audit["levels"]["user"]["claimed"], rel=1e-9)
        assert {lvl["source"] for lvl in audit["levels"].values()} == {"manifest.json"}
        accounting = run.manifest()["accounting"]          # every round once, after a resume too
        assert [h[0] for h in accounting["user"]["history"]] == [1, 2, 3]
        clients = run.read_client_accounting()["clients"]   # reported events: server-private
        assert {u: sorted(r for e in c for r in e["rounds"]) for u, c in clients.items()} == {
            u: sorted(r) for u, r in _client_ledgers(run).items()}


def test_dp_run_stops_before_exceeding_its_target_epsilon(tmp_path):
    from fedrec.shared import privacy

    # one round of z = 0.8 with everyone sampled is Gaussian(0.4); allow 2.5 rounds' worth
    delta = 1 / 20 ** 1.1
    two = privacy.epsilon(privacy.dpe.SelfComposedDpEvent(privacy.dpe.GaussianDpEvent(0.4), 2),
                          delta, relation="replace_one")
    three = privacy.epsilon(privacy.dpe.SelfComposedDpEvent(privacy.dpe.GaussianDpEvent(0.4), 3),
                            delta, relation="replace_one")
    run = RunDir(tmp_path / "target")
    proc = _fedrec("--dataset", "synthetic", "--synthetic-users", "20", "--no-reference",
                   "--dp", "server", "--noise-multiplier", "0.8", "--rounds", "5",
                   "--target-epsilon", str((two + three) / 2), "--out", str(run.path))
    assert "stopped before round 3" in proc.stdout + proc.stderr
    results = json.loads(run.results_path.read_text())
    assert results["rounds"] == 2 and results["stopped"]["round"] == 3
    assert results["privacy"]["epsilon"] == pytest.approx(two, rel=1e-9)


def test_lazy_clients_serve_thousands_of_users_through_a_few_nodes(tmp_path):
    out = tmp_path / "lazy"
    _fedrec("--dataset", "synthetic", "--synthetic-users", "5000", "--synthetic-items", "300",
            "--lazy", "--clients-per-round", "4", "--eval-clients", "6", "--rounds", "2",
            "--dp", "server", "--noise-multiplier", "0.5", "--noise-seed", "0",
            "--no-reference", "--out", str(out))
    run = RunDir(out)
    rows = run.private_rows()
    joined = [p for r in rows for p in r["participants"]]
    assert all(len(set(r["participants"])) == 4 == r["clients_replied"] for r in rows)
    assert all(0 <= p < 5000 for p in joined) and max(joined) >= 6   # users, not nodes
    assert all(r["eval_clients"] == 6 for r in rows)
    results = json.loads(run.results_path.read_text())
    assert results["resources"]["simulation_nodes"] == 6
    events = [entry[1] for entry in run.manifest()["accounting"]["user"]["history"]]
    assert [(e["source_dataset_size"], e["sample_size"]) for e in events] == [(5000, 4)] * 2
    assert "Sampled 4 nodes (out of 5000)" in (out / "simulation.log").read_text()
