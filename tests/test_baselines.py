import json
import subprocess
import sys

import numpy as np
import pytest

from shared import privacy
from shared.cli import main
from shared.interactions import build_interactions, leave_last_out
from simulations.baselines import itemknn_scorer, popularity_scorer
from tests.conftest import make_dataset


def _split(rows):
    return leave_last_out(build_interactions(make_dataset(rows)))


def test_popularity_counts_training_users_per_item():
    rows = [("a", "x", 1, "view"), ("a", "y", 2, "view"), ("a", "z", 3, "view"),
            ("b", "x", 1, "view"), ("b", "w", 2, "view")]
    split = _split(rows)
    # a: train x (val y, test z); b has 2 items -> all train (x, w)
    np.testing.assert_array_equal(popularity_scorer(split)(np.array([0])), [[2, 0, 0, 1]])


def test_itemknn_scores_by_the_candidates_neighbourhood():
    # items 0,1 always together; item 2 with 0 once
    rows = [("u1", "i0", 1, "view"), ("u1", "i1", 2, "view"),
            ("u2", "i0", 1, "view"), ("u2", "i1", 2, "view"),
            ("u3", "i0", 1, "view"), ("u3", "i2", 2, "view")]
    split = _split(rows)
    scores = itemknn_scorer(split, neighbours=1)(np.array([2]))  # u3 has i0 and i2
    # cos(0,1) = 2/sqrt(3*2) = 0.8165, cos(0,2) = 1/sqrt(3) = 0.5774, cos(1,2) = 0
    # top-1 neighbour of i1 is i0 -> score(i1) = 0.8165; of i2 is i0 -> 0.5774;
    # of i0 is i1 (not the user's) -> 0
    np.testing.assert_allclose(scores[0], [0.0, 0.8165, 0.5774], atol=1e-4)


@pytest.fixture(scope="module")
def events_csv(tmp_path_factory):
    from shared.synthetic import SyntheticConfig, generate

    data = generate(SyntheticConfig(n_users=120, n_items=80, seed=3))
    path = tmp_path_factory.mktemp("data") / "events.csv"
    data.events.to_csv(path, index=False)
    data.items.to_csv(path.with_name("items.csv"), index=False)
    return path


def test_baseline_cli_writes_results_with_the_documented_shape(events_csv, tmp_path):
    out = tmp_path / "r.json"
    assert main(["baseline", "--dataset", str(events_csv), "--model", "popularity,itemknn",
                 "--out", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [r["model"] for r in records] == ["popularity", "itemknn"]
    for r in records:
        assert {"dataset", "model", "seed", "metrics", "privacy", "wall_seconds"} <= r.keys()
        assert r["privacy"] is None
        assert 0.0 <= r["metrics"]["ndcg@10"] <= r["metrics"]["hr@10"] <= 1.0
        assert {"full_hr@10", "coverage@10", "novelty@10"} <= r["metrics"].keys()


def test_neumf_dp_reports_an_epsilon_an_auditor_can_recompute(events_csv, tmp_path):
    out = tmp_path / "dp.json"
    assert main(["baseline", "--dataset", str(events_csv), "--model", "neumf-dp",
                 "--epochs", "2", "--batch-size", "64", "--target-epsilon", "3",
                 "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    p = r["privacy"]
    assert p["level"] == "example" and p["accountant"] == "rdp"
    assert p["epsilon"] == pytest.approx(3.0, abs=0.01)
    event = privacy.event_from_dict(p["dp_event"])
    assert privacy.epsilon(event, p["delta"]) == pytest.approx(p["epsilon"])
    assert event.count == p["steps"] and p["noise_multiplier"] > 0
    assert len(r["history"]) == 2 and "val_hr@10" in r["history"][0]


@pytest.mark.parametrize("argv, needle", [
    (["--model", "nope"], "--model: unknown nope"),
    (["--model", "neumf-dp", "--noise-multiplier", "-1"], "noise multiplier must be >= 0"),
    (["--model", "neumf-dp", "--clip", "0", "--target-epsilon", "1"], "clip must be > 0"),
    (["--dataset", "/no/such/file.csv", "--model", "popularity"], "/no/such/file.csv"),
])
def test_user_errors_are_one_line_and_exit_2(argv, needle, tmp_path, capsys):
    assert main(["baseline", *argv, "--out", str(tmp_path / "x.json")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedrec: error:") and needle in lines[0]
    assert not (tmp_path / "x.json").exists()


def test_the_installed_command_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "shared.cli", "data", "validate",
                           str(tmp_path / "missing.csv")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
