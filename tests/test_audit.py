"""`fedrec audit`: a correct run passes; runs broken on purpose fail; unusable ones exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dp_accounting import dp_event as dpe

from fedrec.server.dp import ServerPrivacy, accounting_record, declared_privacy
from fedrec.shared import privacy, protocol
from fedrec.shared.config import RunConfig
from fedrec.shared.ledger import Ledger
from fedrec.shared.protocol import LocalSettings
from fedrec.simulations.audit import audit_accounting, load_run
from fedrec.simulations.cli import main as fedrec

N, M, ROUNDS = 50, 3, 4
EXAMPLES = {0: 40, 1: 12, 2: 100}   # client -> training examples


def _write_run(path, cfg: RunConfig, participants=None):
    """A run directory as fedrec writes it, built from the same functions the server uses."""
    path.mkdir(parents=True, exist_ok=True)
    sp = ServerPrivacy(cfg, N, M)
    rows, ledgers = [], {u: Ledger(privacy.EXAMPLE_RELATION, cfg.client_delta) for u in EXAMPLES}
    settings = LocalSettings.from_run_config(cfg)
    for rnd in range(1, ROUNDS + 1):
        row = {"round": rnd, "clients_sampled": M, "clients_replied": M}
        if cfg.server_dp:
            event = sp.planned_event()
            sp.ledger.record(rnd, event)
            row.update({"dp_clip": cfg.clip, "dp_noise_std": cfg.noise_multiplier * cfg.clip / M,
                        "dp_replied": M, "dp_event": privacy.event_to_dict(event)})
        if cfg.client_dp:
            row["participants"] = participants or sorted(EXAMPLES)
            row["client_events"] = []   # what each device reports having run
            for u in row["participants"]:
                event = settings.dp_plan(EXAMPLES[u]).event()
                ledgers[u].record(rnd, event)
                row["client_events"].append({"event": privacy.event_to_dict(event), "clients": [u]})
        rows.append(row)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = {"config": cfg.to_flower(), "privacy": declared_privacy(cfg, N, M),
                "accounting": accounting_record(cfg, sp if cfg.server_dp else None, rows)}
    (path / "manifest.json").write_text(json.dumps(manifest))
    record = {"mode": cfg.dp, "user": sp.summary() if cfg.server_dp else None}
    if cfg.client_dp:
        record["example"] = {"max_client_epsilon": max(led.epsilon() for led in ledgers.values())}
        for u, led in ledgers.items():
            (path / "client_state" / str(u)).mkdir(parents=True, exist_ok=True)
            (path / "client_state" / str(u) / "ledger.json").write_text(led.dumps())
    (path / "privacy.json").write_text(json.dumps(record))
    return path


@pytest.fixture
def cfg(tmp_path):
    return RunConfig(out=str(tmp_path / "run"), dp="both", noise_multiplier=1.5, clip=0.7,
                     client_noise_multiplier=2.0, client_target_epsilon=120.0)


def _failed(result):
    return {c["name"] for c in result["checks"] if not c["passed"]}


@pytest.mark.inprocess
def test_a_correct_run_passes_and_recomputation_matches(cfg, tmp_path):
    run = _write_run(tmp_path / "run", cfg)
    result = audit_accounting(load_run(run))
    assert result["passed"], _failed(result)
    user = result["levels"]["user"]
    assert user["recomputed"]["rdp"] == pytest.approx(user["claimed"], rel=1e-12)
    assert fedrec(["audit", str(run)]) == 0
    assert (run / "audit.json").exists() and "PASS" in (run / "audit.md").read_text()
    assert result["warnings"] == []                                 # secret randomness
    seeded = _write_run(tmp_path / "seeded", cfg.replace(noise_seed=3))
    assert "seeded" in audit_accounting(load_run(seeded))["warnings"][0]


@pytest.mark.inprocess
def test_epsilon_is_recomputed_from_the_manifest_alone(cfg, tmp_path):
    run = _write_run(tmp_path / "run", cfg)
    manifest = json.loads((run / "manifest.json").read_text())
    # an auditor with nothing but manifest.json and dp-accounting
    user = Ledger.from_dict(manifest["accounting"]["user"])
    claim = json.loads((run / "privacy.json").read_text())
    assert user.epsilon("rdp") == pytest.approx(claim["user"]["epsilon"], rel=1e-12)
    example = manifest["accounting"]["example"]
    assert sorted(example["clients"]) == ["0", "1", "2"]
    assert all(len(c) == 1 for c in example["clients"].values())   # one event each, every round
    worst = max(Ledger(example["relation"], example["delta"]).epsilon(
        "rdp", dpe.SelfComposedDpEvent(privacy.event_from_dict(c[0]["event"]), len(c[0]["rounds"])))
        for c in example["clients"].values())
    assert worst == pytest.approx(claim["example"]["max_client_epsilon"], rel=1e-9)
    result = audit_accounting(load_run(run))
    assert {lvl["source"] for lvl in result["levels"].values()} == {"manifest.json"}
    # a manifest that drops a round, or disagrees with a device's ledger, fails
    manifest["accounting"]["user"]["history"].pop()
    manifest["accounting"]["example"]["clients"]["1"][0]["event"]["event"]["sampling_probability"] /= 2
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert {"manifest events match the logged mechanism",
            "manifest events match the device ledgers"} <= _failed(audit_accounting(load_run(run)))


@pytest.mark.inprocess
def test_example_level_is_recomputed_under_the_declared_relation(cfg, tmp_path):
    """The audit recomputes example-level ε under the relation the manifest declares; a
    run that declared add-or-remove (fedrec before issue 19: its devices' n is public)
    fails the relation check, and the audit also gives its ε under replace-one."""
    run = _write_run(tmp_path / "run", cfg)
    example = audit_accounting(load_run(run))["levels"]["example"]
    assert example["relation"] == "replace_one"
    worst = Ledger.loads((run / "client_state" / str(example["client"]) / "ledger.json")
                         .read_text())
    assert example["recomputed"]["rdp"] == pytest.approx(
        Ledger("replace_one", worst.delta, worst.history).epsilon(), rel=1e-12)
    old = _write_run(tmp_path / "old", cfg)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["privacy"]["example"]["relation"] = "add_or_remove_one"
    manifest["accounting"]["example"]["relation"] = "add_or_remove_one"
    (old / "manifest.json").write_text(json.dumps(manifest))
    for path in (old / "client_state").glob("*/ledger.json"):
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "relation": "add_or_remove_one"}))
    result = audit_accounting(load_run(old))
    assert "example-level relation is replace-one (n is public)" in _failed(result)
    levels = result["levels"]["example"]
    assert levels["recomputed"]["rdp"] < levels["recomputed"]["replace_one"]
    assert levels["recomputed"]["replace_one"] == pytest.approx(example["recomputed"]["rdp"])


def test_dp_claimed_with_noise_switched_off_fails(cfg, tmp_path):
    run = _write_run(tmp_path / "run", cfg)
    claim = json.loads((run / "privacy.json").read_text())
    quiet = _write_run(tmp_path / "quiet", cfg.replace(noise_multiplier=0.0))
    (quiet / "manifest.json").write_text((run / "manifest.json").read_text())   # declares z=1.5
    (quiet / "privacy.json").write_text(json.dumps(claim))                      # claims its ε
    result = audit_accounting(load_run(quiet))
    assert {"noise applied as declared", "epsilon claim not below recomputation"} <= _failed(result)
    assert fedrec(["audit", str(quiet)]) == 1


@pytest.mark.inprocess
def test_under_reported_rounds_fail(cfg, tmp_path):
    short = _write_run(tmp_path / "short", cfg)
    rows = (short / "metrics.jsonl").read_text().splitlines()
    (short / "metrics.jsonl").write_text("\n".join(rows[:2]) + "\n")
    claim_two = json.loads((short / "privacy.json").read_text())
    run = _write_run(tmp_path / "run", cfg)
    (run / "privacy.json").write_text(json.dumps(claim_two))  # claims ROUNDS... of a 4-round run
    claim = json.loads((run / "privacy.json").read_text())
    sp = ServerPrivacy(cfg, N, M)
    for rnd in (1, 2):
        sp.ledger.record(rnd, sp.planned_event())
    claim["user"] = sp.summary()                                # ε and rounds of 2 rounds
    (run / "privacy.json").write_text(json.dumps(claim))
    assert {"rounds reported", "epsilon claim not below recomputation"} <= _failed(
        audit_accounting(load_run(run)))


@pytest.mark.inprocess
def test_client_over_budget_or_uncounted_participation_fails(cfg, tmp_path):
    tight = _write_run(tmp_path / "tight", cfg.replace(client_target_epsilon=1.0))
    assert "no client over its budget" in _failed(audit_accounting(load_run(tight)))
    run = _write_run(tmp_path / "run", cfg)
    twice = Ledger.loads((run / "client_state" / "2" / "ledger.json").read_text())
    twice.history += [[1, twice.history[0][1], "k"], [1, twice.history[0][1], "k"]]
    (run / "client_state" / "2" / "ledger.json").write_text(twice.dumps())   # a replay twice
    assert "no release counted twice" in _failed(audit_accounting(load_run(run)))
    (run / "client_state" / "1" / "ledger.json").unlink()      # client 1 took part, never counted
    assert "every participation is in the client's ledger" in _failed(
        audit_accounting(load_run(run)))


def test_a_rejected_update_is_spent_and_the_manifest_must_count_it(cfg, tmp_path):
    run = _write_run(tmp_path / "run", cfg.replace(dp="client"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows[1]["participants"].remove(1)       # round 2: the server rejected client 1's update,
    rows[1]["rejected"] = [1]               # which it had trained (and reported) all the same
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = audit_accounting(load_run(run))
    assert result["passed"], _failed(result)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["accounting"]["example"]["clients"]["1"][0]["rounds"] == [1, 2, 3, 4]
    manifest["accounting"]["example"]["clients"]["1"][0]["rounds"].remove(2)   # only accepted
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert _failed(audit_accounting(load_run(run))) == {"every participation is in the manifest"}


@pytest.mark.inprocess
def test_without_device_ledgers_example_epsilon_comes_from_the_reported_events(cfg, tmp_path):
    """A deployment: the ledgers stay on the devices; the manifest holds what they reported."""
    import shutil

    run = _write_run(tmp_path / "run", cfg)
    shutil.rmtree(run / "client_state")
    result = audit_accounting(load_run(run))
    assert result["passed"], _failed(result)
    example = result["levels"]["example"]
    assert example["source"] == "manifest.json" and example["clients"] == len(EXAMPLES)
    assert example["recomputed"]["rdp"] == pytest.approx(example["claimed"], rel=1e-9)
    assert any("no device ledgers" in w for w in result["warnings"])
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["accounting"]                               # nothing left to recompute from
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert "example-level events recorded" in _failed(audit_accounting(load_run(run)))


def test_device_reported_events_are_grouped_then_composed_per_device():
    from types import SimpleNamespace

    from flwr.app import ConfigRecord, RecordDict

    from fedrec.server.dp import client_accounting, reported_events

    small, large = privacy.dpsgd_event(2.0, 0.5, 4), privacy.dpsgd_event(2.0, 0.25, 8)

    def reply(node, event=None):
        content = RecordDict({} if event is None else {"config": ConfigRecord(
            {protocol.DP_EVENT: privacy.event_json(event)})})
        return SimpleNamespace(content=content, metadata=SimpleNamespace(src_node_id=node))

    groups = reported_events([reply(12, large), reply(10, small), reply(11, small), reply(13)],
                             position=lambda node: node - 10)
    d_small, d_large = privacy.event_to_dict(small), privacy.event_to_dict(large)
    assert sorted((g["clients"], g["event"] == d_small) for g in groups) == [
        ([0, 1], True), ([2], False)]                        # no event from node 13
    rows = [{"round": 1, "client_events": groups},
            {"round": 2, "client_events": [{"event": d_large, "clients": [0]}]},   # data grew
            {"round": 3, "client_events": [{"event": d_small, "clients": [0]}]}]
    assert client_accounting(rows) == {
        "0": [{"event": d_small, "rounds": [1, 3]}, {"event": d_large, "rounds": [2]}],
        "1": [{"event": d_small, "rounds": [1]}],
        "2": [{"event": d_large, "rounds": [1]}]}


def test_unusable_run_directories_exit_2(cfg, tmp_path, capsys):
    assert fedrec(["audit", str(tmp_path / "nowhere")]) == 2
    run = _write_run(tmp_path / "run", cfg)
    (run / "manifest.json").write_text("{not json")
    assert fedrec(["audit", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "manifest.json: not valid JSON" in err[-1]


def _adaptive_run(path, cfg: RunConfig, rounds: int = 3):
    """An adaptive-clipping run recorded through Flower's real wrapper and ServerPrivacy."""
    from flwr.app import Message, MetricRecord, RecordDict
    from flwr.serverapp.strategy import FedAvg

    from fedrec.server.app import round_config
    from fedrec.server.wrappers import wrap_strategy

    class Grid:
        def get_node_ids(self):
            return [1, 2, 3]

    strategy = wrap_strategy(FedAvg(fraction_train=1.0, min_train_nodes=3, min_available_nodes=3),
                             cfg, sampled=3)
    sp = ServerPrivacy(cfg, 3, 3)
    weights = {"w": np.zeros(50, np.float32)}
    rows = []
    for rnd in range(1, rounds + 1):
        arrays = protocol.to_record(weights)
        sent = list(strategy.configure_train(rnd, arrays, round_config(cfg, rnd), Grid()))
        replies = [Message(RecordDict({
            "arrays": protocol.to_record({"w": weights["w"] + 0.3 * (i + 1)}),
            "metrics": MetricRecord({"num-examples": 1})}), reply_to=m)
                   for i, m in enumerate(sent)]
        sp.before_aggregation(strategy, rnd)
        new, _ = strategy.aggregate_train(rnd, replies)
        row = {"round": rnd, "clients_sampled": 3, "clients_replied": 3}
        row.update(sp.after_aggregation(strategy, rnd, 3))
        rows.append(row)
        weights = {"w": new["w"].numpy()}
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps(
        {"config": cfg.to_flower(), "privacy": declared_privacy(cfg, 3, 3)}))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "privacy.json").write_text(json.dumps({"mode": "server", "user": sp.summary()}))
    return path


@pytest.mark.inprocess
def test_adaptive_clipping_runs_are_audited_against_flowers_own_noise_split(tmp_path):
    cfg = RunConfig(out=str(tmp_path), dp="server", dp_clipping="server-adaptive",
                    noise_multiplier=0.5, clip=1.0, clipped_count_stddev=2.0)
    run = _adaptive_run(tmp_path / "ok", cfg)
    result = audit_accounting(load_run(run))
    assert result["passed"], _failed(result)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len({r["dp_clip"] for r in rows}) == 3                 # the clip really adapted
    rows[0]["dp_noise_std"] *= 0.5                                  # half the noise, same claim
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "noise applied as declared" in _failed(audit_accounting(load_run(run)))
