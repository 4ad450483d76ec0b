"""`fedrec sweep`: the file is validated at the edge, cells expand as written, ε targets are
calibrated, the report is built from run directories, and a re-run skips finished cells."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError
from fedrec.simulations.calibrate import user_noise_multiplier
from fedrec.simulations.cli import main as fedrec
from fedrec.simulations.simulate_cmd import backend_config
from fedrec.simulations.sweep import load_sweep, slug
from fedrec.simulations.sweep_report import write_report

ROOT = Path(__file__).resolve().parent.parent

SMALL = """
[sweep]
name = "tiny"
seeds = [3, 4]

[base]
dataset = "synthetic"
synthetic-users = 12
rounds = 1
clients-per-round = 6

[grid]
local-epochs = [1, 2]

[[cells]]
name = "no DP"

[[cells]]
name = "user ε=10"
dp = "server"
user-epsilon = 10
"""


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


@pytest.mark.inprocess
def test_cells_expand_cells_times_grid_times_seeds_with_calibrated_noise(tmp_path):
    sweep = load_sweep(_write(tmp_path, SMALL), tmp_path / "out")
    assert len(sweep.cells) == 2 * 2 * 2
    keys = [c.key for c in sweep.cells]
    assert keys[:2] == ["no-dp-local-epochs-1-seed3", "no-dp-local-epochs-1-seed4"]
    assert len(set(keys)) == len(keys)
    dp = [c for c in sweep.cells if c.config.dp == "server"]
    assert {c.config.local_epochs for c in dp} == {1, 2} and {c.seed for c in dp} == {3, 4}
    cfg = dp[0].config
    assert cfg.noise_multiplier == pytest.approx(
        user_noise_multiplier(cfg.replace(noise_multiplier=1.0), 12, 10.0))
    assert cfg.target_epsilon == pytest.approx(10.01)
    assert Path(cfg.out) == (tmp_path / "out" / "runs" / dp[0].key).resolve()
    assert all(c.config.dp == "none" for c in sweep.cells if c.label.startswith("no DP"))


@pytest.mark.parametrize("text, message", [
    ("[sweep]\nseeds = []\n", "sweep.seeds must be a non-empty list"),
    ("[base]\nrounds = 2\n[extra]\nx = 1\n", "unknown section(s) extra"),
    ("[base]\nround = 2\n", "base: unknown setting 'round'"),
    ("[grid]\nrounds = 3\n", "grid.rounds must be a non-empty list"),
    ("[[cells]]\nseed = 3\n", "'seed' is set by the sweep"),
    ("[base]\nrounds = -1\n", "rounds must be >= 1"),
    ("[[cells]]\nuser-epsilon = 1\n", "user-epsilon needs dp = server or both"),
    ("[[cells]]\nname = 'a'\n[[cells]]\nname = 'a'\n", "two cells share a name"),
    ("[base\n", "invalid TOML"),
])
def test_a_bad_sweep_file_is_one_clear_line(tmp_path, capsys, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_sweep(path, tmp_path / "out")
    assert fedrec(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fedrec: error:")


def test_slugs_are_file_system_safe():
    assert slug("user ε=8, local-epochs 2") == "user-eps8-local-epochs-2"
    assert slug("///") == "cell"


def test_ray_address_goes_to_flowers_backend_config():
    # local: "local" so that RAY_ADDRESS or an earlier `ray start` cannot capture the run
    assert backend_config(3)["init-args"] == {"log-to-driver": False, "address": "local",
                                              "num-cpus": 3}
    remote = backend_config(3, "ray://head:10001")["init-args"]
    assert remote["address"] == "ray://head:10001" and "num-cpus" not in remote


def _fake_run(cell, hr: float, eps: float | None) -> None:
    """A finished run directory as fedrec writes it (only what the report reads)."""
    out = Path(cell.config.out)
    out.mkdir(parents=True)
    privacy = None if eps is None else {"user": {"epsilon": eps, "delta": 1e-3}}
    (out / "results.json").write_text(json.dumps({
        "metrics": {"hr@10": hr, "ndcg@10": hr / 2, "full_hr@10": hr / 3},
        "privacy": privacy, "rounds": 1, "wall_seconds": 60.0}))
    (out / "metrics.jsonl").write_text(json.dumps({"round": 1, "hr@10": hr}) + "\n")


@pytest.mark.inprocess
def test_report_tables_mean_and_spread_over_seeds_and_is_self_contained(tmp_path):
    sweep = load_sweep(_write(tmp_path, SMALL), tmp_path / "out")
    for cell in sweep.cells[:-1]:                        # the last one still to run
        _fake_run(cell, 0.2 + 0.1 * (cell.seed - 3), 10.0 if cell.config.server_dp else None)
    rows = write_report(sweep, tmp_path / "out", {"hr@10": 0.5, "ndcg@10": 0.3}, "fedrec sweep X")
    assert len(rows) == 7
    out = tmp_path / "out"
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {"cell", "seed", "noise-multiplier", "hr@10", "epsilon_user", "user-epsilon"} <= set(header)
    md = (out / "report.md").read_text()
    assert "| no DP, local-epochs 1 | 2 | 0.2500 ± 0.0707 |" in md      # mean ± sd of 0.2, 0.3
    assert "7 runs finished, 1 still to run" in md and "fedrec sweep X" in md
    assert "![tradeoff.png](tradeoff.png)" in md and (out / "tradeoff.png").exists()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "src=\"tradeoff" not in html
    assert json.loads((out / "sweep.json").read_text())["cells"][0]["seed"] == 3


@pytest.mark.slow
def test_sweep_runs_every_cell_then_skips_finished_ones(tmp_path):
    path = _write(tmp_path, SMALL.replace("seeds = [3, 4]", "seeds = [3]\nreference = false")
                  .replace("local-epochs = [1, 2]", "local-epochs = [1]"))
    out = tmp_path / "out"
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    cmd = [sys.executable, "-m", "fedrec.simulations.cli", "sweep", str(path), "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = json.loads((out / "results.json").read_text())
    assert [r["cell"] for r in rows] == ["no DP, local-epochs 1", "user ε=10, local-epochs 1"]
    assert rows[1]["epsilon_user"] <= 10.01 and rows[0]["epsilon_user"] is None
    run = Path(rows[1]["run_dir"])
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    stamp = (run / "results.json").stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert again.returncode == 0 and "(0 to do)" in again.stderr
    assert (run / "results.json").stat().st_mtime_ns == stamp
    RunConfig.from_mapping(json.loads((run / "manifest.json").read_text())["config"])


def test_a_bundled_sweep_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    """The sweeps in simulations/configs ship in the wheel: ``fedrec sweep
    simulations/configs/X.toml`` (as the docs write it) and ``fedrec sweep X.toml`` read the
    bundled file from a folder that holds no checkout; a file that exists wins."""
    from fedrec.simulations.sweep import BUNDLED, resolve_config

    monkeypatch.chdir(tmp_path)
    for given in ("ml100k_tradeoff.toml", "simulations/configs/ml100k_tradeoff.toml"):
        assert resolve_config(given) == BUNDLED / "ml100k_tradeoff.toml"
        assert load_sweep(given, tmp_path / "out").cells
    own = tmp_path / "ml100k_tradeoff.toml"
    own.write_text("[base]\nrounds = 1\n")
    assert resolve_config("ml100k_tradeoff.toml") == Path("ml100k_tradeoff.toml")
    assert resolve_config("nothing.toml") == Path("nothing.toml")
