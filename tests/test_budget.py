"""Issue 19 item 9: the dataset-level budget registry composes every run on the same data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from dp_accounting import dp_event as dpe

from fedrec.shared import privacy
from fedrec.shared.budget import BudgetRegistry, compose, run_entry
from fedrec.shared.config import RunConfig
from fedrec.shared.ledger import Ledger
from fedrec.simulations.cli import main as fedrec

N, M, DELTA = 50, 5, 1e-3


def _user(z: float, rounds: int, delta: float = DELTA) -> dict:
    ledger = Ledger("replace_one", delta)
    for r in range(1, rounds + 1):
        ledger.record(r, dpe.SampledWithoutReplacementDpEvent(N, M, dpe.GaussianDpEvent(z)))
    return ledger.to_dict()


def _example(events: dict[int, tuple[float, float, int, list[int]]]) -> dict:
    """Per device: (σ, q, steps, rounds) of its DP-SGD rounds."""
    return {"relation": "add_or_remove_one", "delta": 1e-5, "clients": {
        str(u): [{"event": privacy.event_to_dict(privacy.dpsgd_event(s, q, k)), "rounds": rounds}]
        for u, (s, q, k, rounds) in events.items()}}


def _entry(path: Path, mode: str, user=None, example=None, fp="f" * 64, seed=-1) -> dict:
    manifest = {"run_id": path.name, "config": {"noise-seed": seed},
                "data": {"name": "synthetic", "fingerprint": fp}, "privacy": {"mode": mode}}
    accounting = None if mode == "none" else {"user": user, "example": example}
    return run_entry(manifest, accounting, 3, path)


@pytest.mark.inprocess
def test_runs_on_the_same_data_compose_and_a_run_without_dp_makes_it_infinite(tmp_path):
    reg = BudgetRegistry(tmp_path / "budget")
    a = _entry(tmp_path / "a", "both", _user(1.0, 3), _example({0: (2.0, 0.5, 4, [1, 2, 3]),
                                                                 1: (2.0, 0.25, 8, [2])}))
    b = _entry(tmp_path / "b", "both", _user(2.0, 5, delta=DELTA / 2),
               _example({0: (1.0, 0.5, 4, [1]), 2: (2.0, 0.5, 4, [1, 2])}))
    other = _entry(tmp_path / "c", "server", _user(1.0, 1), fp="0" * 64)   # other data
    for entry in (a, b, other):
        reg.record(entry)
    by_fp = reg.entries()
    assert sorted(len(v) for v in by_fp.values()) == [1, 2]
    both = compose(by_fp["f" * 64])
    # user level: all 8 rounds of both runs in one composition, at the smaller δ
    def rounds(z, k):
        return dpe.SelfComposedDpEvent(
            dpe.SampledWithoutReplacementDpEvent(N, M, dpe.GaussianDpEvent(z)), k)

    hand = privacy.epsilon(dpe.ComposedDpEvent([rounds(1.0, 3), rounds(2.0, 5)]), DELTA / 2,
                           relation="replace_one")
    assert both["user"]["epsilon"] == pytest.approx(hand, rel=1e-9)
    assert both["user"]["delta"] == DELTA / 2 and both["user"]["releases"] == 8
    alone = compose([a])["user"]["epsilon"]
    assert both["user"]["epsilon"] > alone
    # example level: device 0 ran 3 rounds in a and 1 in b: the worst device
    dev0 = privacy.epsilon(dpe.ComposedDpEvent(
        [dpe.SelfComposedDpEvent(privacy.dpsgd_event(2.0, 0.5, 4), 3),
         privacy.dpsgd_event(1.0, 0.5, 4)]), 1e-5)
    assert both["example"]["epsilon"] == pytest.approx(dev0, rel=1e-9)
    assert both["example"]["devices"] == 3 and both["example"]["device_rounds"] == 4
    # a tuning run without DP on the same data: no ε covers it
    reg.record(_entry(tmp_path / "probe", "none"))
    spent = compose(reg.entries()["f" * 64])
    assert math.isinf(spent["user"]["epsilon"]) and math.isinf(spent["example"]["epsilon"])
    assert str(tmp_path / "probe") + " (dp none)" in spent["user"]["reason"]


def test_a_level_a_run_did_not_protect_is_infinite_and_relations_do_not_mix(tmp_path):
    user_only = _entry(tmp_path / "u", "server", _user(1.0, 2))
    example_only = _entry(tmp_path / "e", "client", None, _example({0: (2.0, 0.5, 4, [1])}))
    spent = compose([user_only, example_only])
    assert math.isinf(spent["user"]["epsilon"]) and "e (dp client)" in spent["user"]["reason"]
    assert math.isinf(spent["example"]["epsilon"]) and "u (dp server)" in spent["example"]["reason"]
    other = _entry(tmp_path / "v", "server", {**_user(1.0, 1), "relation": "add_or_remove_one",
                                              "history": []})
    mixed = compose([user_only, other])["user"]
    assert math.isinf(mixed["epsilon"]) and set(mixed["by_relation"]) == {
        "replace_one", "add_or_remove_one"}


def test_a_rewritten_entry_replaces_the_runs_earlier_one(tmp_path):
    reg = BudgetRegistry(tmp_path)
    reg.record(_entry(tmp_path / "a", "server", _user(1.0, 1)))
    reg.record(_entry(tmp_path / "a", "server", _user(1.0, 2)))        # the next round
    (entries,) = reg.entries().values()
    assert len(entries) == 1 and compose(entries)["user"]["releases"] == 2


def test_fedrec_audit_budget_reports_the_composed_figures(tmp_path):
    import json

    from fedrec.simulations.budget_cmd import notes, summarise

    reg = BudgetRegistry(tmp_path / "budget")
    reg.record(_entry(tmp_path / "a", "server", _user(1.0, 3)))
    reg.record(_entry(tmp_path / "probe", "none"))
    lines = notes(summarise(tmp_path / "budget"))
    assert any("runs without user-level DP" in x and "probe (dp none)" in x for x in lines)
    assert fedrec(["audit", "--budget", str(tmp_path / "budget"), "--out", str(tmp_path)]) == 0
    ((fp, written),) = json.loads((tmp_path / "budget.json").read_text()).items()
    assert fp == "f" * 64 and written["runs"] == 2 and written["user"]["epsilon"] == math.inf


def test_a_folder_that_is_no_registry_is_one_line_and_exit_2(tmp_path, capsys):
    assert fedrec(["audit", "--budget", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip().endswith("no budget registry (not a directory)")


@pytest.mark.inprocess
def test_a_sweep_reports_what_its_runs_spent_together(tmp_path):
    from fedrec.simulations.budget_cmd import spent_by

    cells = [RunConfig(out=str(tmp_path / "runs" / name)) for name in ("a", "b")]
    reg = BudgetRegistry(tmp_path / "runs" / ".fedrec-budget")      # the cells' default
    for cfg, z in zip(cells, (1.0, 2.0)):
        reg.record(_entry(Path(cfg.out), "server", _user(z, 3)))
    reg.record(_entry(tmp_path / "runs" / "earlier", "server", _user(1.0, 3)))  # not the sweep's
    ((own_title, own, _), (all_title, every, _)) = spent_by(cells)
    assert "these 2 runs" in own_title and "every run" in all_title
    assert own.row_count == every.row_count == 1
    sweep_eps = compose([run_entry({"run_id": n, "data": {"fingerprint": "f" * 64},
                                    "privacy": {"mode": "server"}},
                                   {"user": _user(z, 3)}, 3, tmp_path / n)
                         for n, z in (("a", 1.0), ("b", 2.0))])["user"]["epsilon"]
    assert f"{sweep_eps:.4g}" in str(own.columns[3]._cells[0])


@pytest.mark.inprocess
def test_a_statistics_release_run_records_its_ledger_too(tmp_path):
    from fedrec.shared.release_config import ReleaseConfig
    from fedrec.simulations import release_sim

    out = tmp_path / "runs" / "release"
    results = release_sim.run(ReleaseConfig(dataset="synthetic", synthetic_users=60,
                                            synthetic_items=80, head=40, cap=20,
                                            target_epsilon=4.0, out=str(out)))
    (entries,) = BudgetRegistry(tmp_path / "runs" / ".fedrec-budget").entries().values()
    spent = compose(entries)
    ledger = Ledger.loads((out / "ledger.json").read_text())
    assert spent["user"]["releases"] == len(ledger.history) == results["privacy"]["releases"]
    assert spent["user"]["epsilon"] == pytest.approx(ledger.epsilon("rdp"), rel=1e-9)
    assert math.isinf(spent["example"]["epsilon"])     # the server saw each contribution
    assert "statistics release" in spent["example"]["reason"]
