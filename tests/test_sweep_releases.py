"""Issue #21: `fedrec sweep` cells can name a statistics-release pipeline (popularity, knn).

Release cells take ReleaseConfig settings (validated when the file is read), run in process
into the sweep's run directories, skip when finished, appear in the report and the
trade-off plot, and count in the dataset-level budget the sweep prints."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError
from fedrec.shared.ledger import Ledger
from fedrec.shared.release_config import ReleaseConfig
from fedrec.simulations.cli import main as fedrec
from fedrec.simulations.sweep import load_sweep
from fedrec.simulations.sweep_report import release_series, write_report

RELEASES = """
[sweep]
name = "tiny releases"
seeds = [0, 1]
reference = false

[base]
dataset = "synthetic"
synthetic-users = 30
synthetic-items = 40
head = 20

[grid]
popularity-share = [0.3, 0.6]

[[cells]]
name = "popularity"
pipeline = "popularity"
user-epsilon = 2

[[cells]]
name = "knn"
pipeline = "knn"
user-epsilon = 4
"""

NO_NOISE = """
[[cells]]
name = "knn, no noise"
pipeline = "knn"
target-epsilon = "inf"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_release_cells_build_release_configs_with_their_target_and_seed(tmp_path):
    sweep = load_sweep(_write(tmp_path, RELEASES + NO_NOISE), tmp_path / "out")
    assert len(sweep.cells) == 3 * 2 * 2
    knn = [c for c in sweep.cells if c.label == "knn, popularity-share 0.6"]
    assert [c.seed for c in knn] == [0, 1] and all(c.pipeline == "knn" for c in knn)
    cfg = knn[1].config
    assert isinstance(cfg, ReleaseConfig)
    assert (cfg.target_epsilon, cfg.popularity_share, cfg.head, cfg.seed) == (4.0, 0.6, 20, 1)
    assert (cfg.synthetic_users, cfg.synthetic_items) == (30, 40)
    assert Path(cfg.out) == (tmp_path / "out" / "runs" / "knn-popularity-share-0.6-seed1").resolve()
    (inf,) = {c.config.target_epsilon for c in sweep.cells if c.label.startswith("knn, no noise")}
    assert math.isinf(inf)


def test_inf_parses_as_a_string_or_a_bare_toml_float(tmp_path):
    for spelling in ('"inf"', "inf", '"Infinity"'):
        text = f"[[cells]]\npipeline = 'knn'\nuser-epsilon = {spelling}\n"
        (cell,) = load_sweep(_write(tmp_path, text), tmp_path / "out").cells
        assert math.isinf(cell.config.target_epsilon)


def test_raw_contributions_take_the_no_dp_defaults_as_the_flag_does(tmp_path):
    text = "[[cells]]\npipeline = 'knn'\ncontributions = 'raw'\ntarget-epsilon = 'inf'\nhead = 30\n"
    (cell,) = load_sweep(_write(tmp_path, text), tmp_path / "out").cells
    assert cell.config.knn_top == 200 and cell.config.cap == 0 and cell.config.head == 30


def test_mixed_sweeps_build_both_kinds_of_cells(tmp_path):
    text = ("[base]\ndataset = 'synthetic'\n[[cells]]\nname = 'fedavg'\nrounds = 1\n"
            "[[cells]]\nname = 'knn'\npipeline = 'knn'\nknn-top = 5\n")
    neumf, knn = load_sweep(_write(tmp_path, text), tmp_path / "out").cells
    assert isinstance(neumf.config, RunConfig) and neumf.pipeline == "neumf"
    assert isinstance(knn.config, ReleaseConfig) and knn.config.knn_top == 5


@pytest.mark.parametrize("text, message", [
    ("[[cells]]\npipeline = 'knn'\nrounds = 3\n",
     "cells[0] (pipeline knn): 'rounds' is not a setting of the knn pipeline"),
    ("[base]\nclip = 2.0\n[[cells]]\npipeline = 'popularity'\n",
     "base (pipeline popularity): 'clip' is not a setting of the popularity pipeline"),
    ("[grid]\nlocal-epochs = [1]\n[[cells]]\npipeline = 'knn'\n",
     "grid (pipeline knn): 'local-epochs' is not a setting of the knn pipeline"),
    ("[[cells]]\npipeline = 'knn'\nhead = 'many'\n", "head must be int, got 'many'"),
    ("[[cells]]\npipeline = 'knn'\npopularity-share = 1.5\n", "popularity-share must be in (0, 1)"),
    ("[[cells]]\npipeline = 'knn'\nexample-epsilon = 1\n", "has no example-level mechanism"),
    ("[[cells]]\npipeline = 'knn'\nseed = 1\n", "'seed' is set by the sweep"),
    ("[[cells]]\npipeline = 'svd'\n", "pipeline must be one of neumf, popularity, knn"),
    ("[[cells]]\npipeline = 'knn'\nuser-epsilon = 1\ntarget-epsilon = 2\n",
     "user-epsilon 1 and target-epsilon 2 disagree"),
    ("[[cells]]\npipeline = 'knn'\ncontributions = 'raw'\nuser-epsilon = 1\n",
     "raw contributions have no sensitivity bound"),
])
def test_a_bad_release_cell_is_one_clear_line(tmp_path, capsys, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_sweep(path, tmp_path / "out")
    assert fedrec(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fedrec: error:") and message in err[0]


def _composed_from_ledgers(run_dirs: list[Path]) -> float:
    """User-level RDP ε of every run's ledger.json together (the registry's arithmetic,
    from the run directories rather than the registry)."""
    ledgers = [Ledger.loads((d / "ledger.json").read_text()) for d in run_dirs]
    into = Ledger(ledgers[0].relation, min(led.delta for led in ledgers))
    for led in ledgers:
        into.history += led.history
    return into.epsilon("rdp")


@pytest.mark.inprocess
def test_a_release_sweep_runs_reports_counts_its_budget_and_skips_finished_cells(tmp_path, capsys):
    path, out = _write(tmp_path, RELEASES), tmp_path / "out"
    assert fedrec(["sweep", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    runs = sorted(p.name for p in (out / "runs").iterdir() if not p.name.startswith("."))
    assert runs == sorted(f"{c}-popularity-share-{s}-seed{k}" for c in ("popularity", "knn")
                          for s in ("0.3", "0.6") for k in (0, 1))
    for name in runs:
        assert {"manifest.json", "ledger.json", "release.npz", "privacy.json",
                "results.json"} <= {p.name for p in (out / "runs" / name).iterdir()}

    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 8 and {r["pipeline"] for r in rows} == {"popularity", "knn"}
    for r in rows:
        claim = json.loads((Path(r["run_dir"]) / "privacy.json").read_text())["user"]["epsilon"]
        assert r["epsilon_user"] == claim <= {"popularity": 2.0, "knn": 4.0}[r["pipeline"]]
        assert 0 <= r["hr@10"] <= 1 and r["relation_user"] == "replace_one"
    md = (out / "report.md").read_text()
    assert "| cell | pipeline | seeds | HR@10 | NDCG@10 |" in md
    knn = [r for r in rows if r["cell"] == "knn, popularity-share 0.3"]
    hr = sum(r["hr@10"] for r in knn) / 2
    assert re.search(rf"\| knn, popularity-share 0\.3 \| knn \| 2 \| {hr:.4f} ± [0-9.]+ \|", md)
    assert "popularity cells replace_one" in md
    assert (out / "tradeoff.png").stat().st_size > 0 and "![tradeoff.png](tradeoff.png)" in md
    assert set(release_series([[r] for r in rows])) == {
        "popularity, popularity-share 0.3", "popularity, popularity-share 0.6",
        "knn, popularity-share 0.3", "knn, popularity-share 0.6"}

    # the budget the sweep prints: every release cell's ledger, per dataset (seed)
    assert "privacy these 8 runs spent together" in printed
    for seed in (0, 1):
        eps = _composed_from_ledgers([out / "runs" / n for n in runs if n.endswith(f"seed{seed}")])
        assert f"{eps:.4g}" in printed

    # a re-run skips finished cells; an interrupted one is moved aside and runs afresh
    stamp = (out / "runs" / runs[0] / "results.json").stat().st_mtime_ns
    interrupted = out / "runs" / runs[1]
    (interrupted / "results.json").unlink()
    _write(tmp_path, RELEASES + NO_NOISE)
    assert fedrec(["sweep", str(path), "--out", str(out)]) == 0
    printed, err = capsys.readouterr()
    assert "releases without noise (ε = inf, not private)" in " ".join(printed.split())
    assert "12 runs (5 to do)" in " ".join(err.split())
    assert (out / "runs" / runs[0] / "results.json").stat().st_mtime_ns == stamp
    assert (out / "runs" / f"{runs[1]}.interrupted-1" / "ledger.json").exists()
    assert (interrupted / "results.json").exists()
    registry = list((out / "runs" / ".fedrec-budget").glob("*/*.json"))
    assert len(registry) == 12 + 1            # the interrupted run's spend is still counted
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 12
    assert all(math.isinf(r["epsilon_user"]) for r in rows if r["cell"].startswith("knn, no noise"))
    assert "| knn, no noise, popularity-share 0.3 | knn | 2 |" in (out / "report.md").read_text()


def _fake_neumf(cfg: RunConfig, hr: float) -> None:
    out = Path(cfg.out)
    out.mkdir(parents=True)
    (out / "results.json").write_text(json.dumps({
        "metrics": {"hr@10": hr, "ndcg@10": hr / 2}, "rounds": 1, "wall_seconds": 60.0,
        "privacy": {"user": {"epsilon": 4.0, "delta": 1e-3, "relation": "replace_one"}}}))


def _fake_release(cfg: ReleaseConfig, hr: float, eps: float) -> None:
    out = Path(cfg.out)
    out.mkdir(parents=True)
    user = {"epsilon": eps, "epsilons": {"pld": eps}, "delta": 1e-3, "relation": "replace_one"}
    (out / "privacy.json").write_text(json.dumps({"user": user}))
    (out / "results.json").write_text(json.dumps({
        "metrics": {"hr@10": hr, "ndcg@10": hr / 2}, "privacy": user, "seconds": 3.0}))


def test_a_mixed_report_has_both_pipelines_and_a_no_noise_reference_line(tmp_path):
    from fedrec.simulations.sweep_report import references

    text = ("[sweep]\nreference = false\n[[cells]]\nname = 'fedavg'\ndp = 'server'\n"
            "noise-multiplier = 1.0\n[[cells]]\nname = 'knn'\npipeline = 'knn'\nuser-epsilon = 2\n"
            "[[cells]]\nname = 'knn raw'\npipeline = 'knn'\ntarget-epsilon = 'inf'\n")
    fed, knn, raw = load_sweep(_write(tmp_path, text), tmp_path / "out").cells
    _fake_neumf(fed.config, 0.2)
    _fake_release(knn.config, 0.3, 1.99)
    _fake_release(raw.config, 0.5, math.inf)
    rows = write_report(load_sweep(tmp_path / "sweep.toml", tmp_path / "out"),
                        tmp_path / "out", None, "fedrec sweep X")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| fedavg | neumf | 1 | 0.2000 |" in md and "| knn | knn | 1 | 0.3000 |" in md
    assert re.search(r"\| knn raw \| knn \| 1 \| 0\.5000 \| 0\.2500 \| - \| inf \|", md)
    assert references(rows, None)["hr@10"] == {"knn, ε = inf (not private)": 0.5}
    assert (tmp_path / "out" / "tradeoff.png").exists()


def test_simulate_release_records_into_budget_dir(tmp_path):
    """``fedrec simulate --pipeline ... --budget-dir`` was ignored by release runs."""
    budget = tmp_path / "registry"
    args = ["simulate", "--pipeline", "popularity", "--dataset", "synthetic",
            "--synthetic-users", "30", "--synthetic-items", "40", "--target-epsilon", "2",
            "--budget-dir", str(budget), "--no-reference"]
    assert fedrec(args + ["--out", str(tmp_path / "a")]) == 0
    entries = list(budget.glob("*/*.json"))
    assert len(entries) == 1 and not (tmp_path / ".fedrec-budget").exists()
    assert json.loads(entries[0].read_text())["run"] == str((tmp_path / "a").resolve())


@pytest.mark.slow
def test_a_mixed_sweep_runs_neumf_and_release_cells(tmp_path, capsys):
    """One DP-FedAvg cell (a real flower-simulation, so slow) and one knn cell."""
    text = ("[sweep]\nseeds = [0]\nreference = false\n"
            "[base]\ndataset = 'synthetic'\nsynthetic-users = 12\n"
            "[[cells]]\nname = 'fedavg'\nrounds = 1\nclients-per-round = 6\n"
            "[[cells]]\nname = 'knn'\npipeline = 'knn'\nhead = 20\nuser-epsilon = 4\n")
    out = tmp_path / "out"
    assert fedrec(["sweep", str(_write(tmp_path, text)), "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [(r["cell"], r["pipeline"]) for r in rows] == [("fedavg", "neumf"), ("knn", "knn")]
    assert rows[0]["rounds_run"] == 1 and rows[1]["epsilon_user"] <= 4.0
    assert "privacy these 2 runs spent together" in capsys.readouterr().out
