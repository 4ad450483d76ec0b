"""Issue 19 items 2 and 3: the released run files hold no participation (it is
server-private, and privacy.json says against whom the user-level ε holds and what a
party holding the participation log gets); the write-ahead log counts every release,
including one a crash cut short."""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dp_accounting import dp_event as dpe

from fedrec.server.rundir import RunDir
from fedrec.shared import privacy
from fedrec.shared.config import RunConfig
from fedrec.simulations.cli import main as fedrec
from fedrec.simulations.inprocess import InProcessGrid, run_inprocess

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(dataset="synthetic", synthetic_users=8, synthetic_items=40, gmf_dim=4, mlp_dim=4,
            content_dim=4, reconstruction_steps=1, clients_per_round=4)
USER_DP = dict(dp="server", noise_multiplier=1.0, clip=0.5)
#: Who took part: never in a released file (fedrec.server.rundir.PRIVATE_FIELDS).
WHO = ("participants", "declined", "rejected", "client_events", "declined_reasons")


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory) -> RunDir:
    out = tmp_path_factory.mktemp("priv") / "run"
    run_inprocess(RunConfig(out=str(out), rounds=2, eval_every=100, dp="both", noise_multiplier=1.0,
                            clip=0.5, client_noise_multiplier=1.0, **TINY))
    return RunDir(out)


def _released(run: RunDir) -> dict[str, str]:
    """Text of every released file (checkpoints: their array names and the ledger)."""
    out = {p.name: p.read_text() for p in (run.metrics_path, run.manifest_path,
                                           run.results_path, run.path / "privacy.json")}
    for ckpt in run.checkpoints.glob("round-*.npz"):
        with np.load(ckpt) as data:
            out[ckpt.name] = " ".join(data.files) + " ".join(
                str(data[k]) for k in data.files if data[k].dtype.kind == "U")
    return out


@pytest.mark.inprocess
def test_released_files_hold_no_participation(dp_run):
    from fedrec.simulations.simulate_cmd import add_ledger_summary

    add_ledger_summary(dp_run, RunConfig.from_mapping(dp_run.manifest()["config"]))
    example = json.loads((dp_run.path / "privacy.json").read_text())["example"]
    assert "max_client" not in example and example["clients_with_ledger"] > 0
    rows = dp_run.read_metrics()
    assert [r["round"] for r in rows] == [1, 2]
    assert not [k for r in rows for k in WHO if k in r]
    for name, text in _released(dp_run).items():
        assert "participants" not in text and "client_events" not in text, name
    manifest = dp_run.manifest()
    assert "clients" not in manifest["accounting"]["example"]     # per device: private
    assert manifest["server_private"]["participation"] == "server-private/participation.jsonl"
    # the server keeps it, readable by nobody else
    folder = dp_run.path / "server-private"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {
        "participation.jsonl": 0o600, "client-accounting.json": 0o600}
    releases = dp_run.read_releases()
    assert [(r["round"], r["release"], len(r["participants"])) for r in releases] == [
        (1, 1, 4), (2, 2, 4)]
    spent = {int(u) for u in dp_run.read_client_accounting()["clients"]}
    assert spent == {p for r in releases for p in r["participants"]}


@pytest.mark.inprocess
def test_privacy_json_states_the_adversary_and_the_unamplified_epsilon(dp_run):
    user = json.loads((dp_run.path / "privacy.json").read_text())["user"]
    assert "released models" in user["adversary"]
    assert "server-private/participation.jsonl" in user["adversary"]
    known = user["participation_known"]
    counts = {}
    for r in dp_run.read_releases():
        for p in r["participants"]:
            counts[p] = counts.get(p, 0) + 1
    k = max(counts.values())
    # k rounds of the unsampled Gaussian(z/2 = 0.5) are one Gaussian(0.5 / sqrt(k)) in RDP
    hand = privacy.epsilon(dpe.GaussianDpEvent(0.5 / math.sqrt(k)), user["delta"],
                           relation="replace_one")
    assert known["most_sampled_rounds"] == known["rounds_of_that_user"] == k
    assert known["epsilon"] == pytest.approx(hand, rel=1e-9)
    assert known["epsilon"] > user["epsilon"]              # sampling amplification is gone


@pytest.mark.inprocess
def test_the_audit_reads_participation_from_the_private_log(dp_run, tmp_path):
    assert fedrec(["audit", str(dp_run.path), "--out", str(tmp_path)]) == 0
    audit = json.loads((tmp_path / "audit.json").read_text())
    names = {c["name"] for c in audit["checks"]}
    assert {"every participation is in the manifest", "metrics match the write-ahead log",
            "epsilon with the participation log known not under-reported"} <= names
    copy = tmp_path / "released-only"
    shutil.copytree(dp_run.path, copy)
    shutil.rmtree(copy / "server-private")          # an auditor given the released files
    assert fedrec(["audit", str(copy)]) == 1
    failed = {c["name"] for c in json.loads((copy / "audit.json").read_text())["checks"]
              if not c["passed"]}
    assert "server-private participation log present" in failed


def test_participation_known_epsilon_by_hand():
    from fedrec.server.private_log import participation_known

    def release(rnd, z, **who):
        event = dpe.SampledWithoutReplacementDpEvent(10, 2, dpe.GaussianDpEvent(z))
        return {"round": rnd, "dp_event": privacy.event_to_dict(event), **who}

    releases = [release(1, 1.0, participants=[0, 1]),
                release(2, 2.0, participants=[0], declined=[3]),
                release(3, 0.5, participants=[9])]          # position 9: a canary client
    got = participation_known(releases, 1e-5, users=9)
    # user 0: Gaussian(1) then Gaussian(2): RDP adds, 1/σ² = 1 + 1/4
    hand = privacy.epsilon(dpe.GaussianDpEvent(1 / math.sqrt(1.25)), 1e-5, relation="replace_one")
    assert got["epsilon"] == pytest.approx(hand, rel=1e-9)
    assert got["rounds_of_that_user"] == 2 and got["most_sampled_rounds"] == 2


class CrashAtEvaluation(InProcessGrid):
    """Dies while round ``round_``'s aggregate is being evaluated: after it left."""

    def __init__(self, cfg: RunConfig, n_nodes: int, round_: int) -> None:
        super().__init__(cfg, n_nodes)
        self.evaluations, self.round = 0, round_

    def send_and_receive(self, messages, *, timeout=None):
        if messages and messages[0].metadata.message_type == "evaluate":
            self.evaluations += 1
            if self.evaluations == self.round:
                raise RuntimeError("server crashed during evaluation")
        return super().send_and_receive(messages, timeout=timeout)


def _check_every_release_counted(run: RunDir) -> None:
    """3 rounds, round 2 released twice: 4 events, in the ledger, manifest and claim."""
    assert [r["round"] for r in run.read_metrics()] == [1, 2, 3]
    history = run.manifest()["accounting"]["user"]["history"]
    assert [h[0] for h in history] == [1, 2, 2, 3]
    user = json.loads((run.path / "privacy.json").read_text())["user"]
    assert (user["rounds"], user["releases"]) == (3, 4)
    releases = run.read_releases()
    assert [(r["round"], r["release"]) for r in releases] == [(1, 1), (2, 2), (2, 3), (3, 4)]
    events = [privacy.event_from_dict(r["dp_event"]) for r in releases]
    hand = privacy.epsilon(dpe.ComposedDpEvent(events), user["delta"], relation="replace_one")
    assert user["epsilon"] == pytest.approx(hand, rel=1e-9)
    assert fedrec(["audit", str(run.path)]) == 0


@pytest.mark.inprocess
def test_a_release_before_a_crash_is_counted_after_resume(tmp_path):
    from fedrec.server.app import run_federation

    cfg = RunConfig(out=str(tmp_path / "run"), rounds=3, eval_every=1, **USER_DP, **TINY)
    with pytest.raises(RuntimeError, match="crashed during evaluation"):
        run_federation(CrashAtEvaluation(cfg, 8, round_=2), cfg)
    run_inprocess(cfg.replace(resume=True))
    _check_every_release_counted(RunDir(cfg.out))


@pytest.mark.slow
def test_a_killed_server_process_resumes_with_every_release_counted(tmp_path):
    """The real thing: the server process dies (os._exit) right after round 2's aggregate
    was released and before its checkpoint and metrics line."""
    out = tmp_path / "run"
    cfg = RunConfig(out=str(out), rounds=3, eval_every=1, **USER_DP, **TINY)
    script = ("import sys, json; from fedrec.shared.config import RunConfig; "
              "from fedrec.simulations.inprocess import run_inprocess; "
              "run_inprocess(RunConfig.from_mapping(json.loads(sys.argv[1])))")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    first = subprocess.run([sys.executable, "-c", script, json.dumps(cfg.to_flower())],
                           env={**env, "FEDREC_TEST_CRASH_AFTER_AGGREGATE": "2"}, cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 75, first.stderr[-2000:]
    assert [r["round"] for r in RunDir(out).read_metrics()] == [1]
    again = subprocess.run([sys.executable, "-c", script,
                            json.dumps(cfg.replace(resume=True).to_flower())],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    _check_every_release_counted(RunDir(out))


@pytest.mark.inprocess
def test_every_run_on_the_data_lands_in_the_budget_registry(dp_run, tmp_path):
    from fedrec.shared.budget import BudgetRegistry, compose

    registry = BudgetRegistry(dp_run.path.parent / ".fedrec-budget")
    (entries,) = registry.entries().values()
    (entry,) = [e for e in entries if e["run"] == str(dp_run.path.resolve())]
    assert entry["fingerprint"] == dp_run.manifest()["data"]["fingerprint"]
    claim = json.loads((dp_run.path / "privacy.json").read_text())
    alone = compose([entry])
    assert alone["user"]["epsilon"] == pytest.approx(claim["user"]["epsilon"], rel=1e-9)
    assert alone["example"]["epsilon"] == pytest.approx(
        claim["example"]["max_client_epsilon"], rel=1e-9)
    # a run without DP on the same data: nothing covers what it released
    run_inprocess(RunConfig(out=str(dp_run.path.parent / "no-dp"), rounds=1, eval_every=100,
                            **TINY))
    (entries,) = registry.entries().values()
    both = compose(entries)
    assert math.isinf(both["user"]["epsilon"]) and math.isinf(both["example"]["epsilon"])
    assert "no-dp (dp none)" in both["user"]["reason"]
