import json
import subprocess
import sys

import numpy as np
import pytest

from fedrec.shared import privacy
from fedrec.shared.interactions import build_interactions, leave_last_out
from fedrec.simulations.baselines import (
    NeuMFConfig,
    itemknn_scorer,
    popularity_scorer,
    recency_profile,
    select_itemknn,
    training_weights,
)
from fedrec.simulations.cli import main
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


def test_recency_weights_count_the_users_more_recent_training_items():
    rows = [("a", "x", 1, "view"), ("a", "y", 2, "view"), ("a", "z", 3, "view"),
            ("a", "w", 4, "view"), ("a", "v", 5, "view")]
    split = _split(rows)   # train x, y, z (oldest first); val w; test v
    profile = recency_profile(split, 0.5).toarray()[0]
    np.testing.assert_allclose(profile[:3], [0.25, 0.5, 1.0])     # x, y, z
    refit = recency_profile(split.with_validation_in_train(), 0.5).toarray()[0]
    np.testing.assert_allclose(refit[:4], [0.125, 0.25, 0.5, 1.0])  # w is now the latest


def test_time_decayed_itemknn_weights_each_neighbour_by_recency():
    rows = [("u1", "i0", 1, "view"), ("u1", "i1", 2, "view"),
            ("u2", "i0", 1, "view"), ("u2", "i1", 2, "view"),
            ("u3", "i0", 1, "view"), ("u3", "i2", 2, "view")]
    split = _split(rows)
    # u3's profile with decay 0.5: i2 (latest) 1, i0 0.5; neighbourhoods of size 2:
    # score(i1) = 0.5 cos(1,0) + 1 cos(1,2) = 0.5 * 0.8165; score(i0) = cos(0,2) = 0.5774
    scores = itemknn_scorer(split, neighbours=2, decay=0.5)(np.array([2]))
    np.testing.assert_allclose(scores[0], [0.5774, 0.4082, 0.5 * 0.5774], atol=1e-4)
    np.testing.assert_allclose(itemknn_scorer(split, 2, decay=1.0)(np.array([2])),
                               [[0.5774, 0.8165, 0.5774]], atol=1e-4)


def test_neumf_weighs_recent_positives_more_and_never_under_dp():
    rows = [("a", "x", 1, "view"), ("a", "y", 2, "purchase"), ("a", "z", 3, "view"),
            ("a", "w", 4, "view"), ("a", "v", 5, "view"), ("b", "x", 1, "view")]
    split = _split(rows).with_validation_in_train()   # a: x, y, z, w; b: x
    w = training_weights(split, NeuMFConfig(recency_decay=0.5))
    view, purchase = split.train_weights[0], split.train_weights[1]
    assert purchase > view
    np.testing.assert_allclose(w, [0.125 * view, 0.25 * purchase, 0.5 * view, view, view])
    flat = training_weights(split, NeuMFConfig(recency_decay=1.0, use_event_weights=False))
    np.testing.assert_allclose(flat, 1.0)
    with pytest.raises(ValueError, match="recency_decay = 1"):
        NeuMFConfig(dp=True, target_epsilon=1.0, recency_decay=0.9)


def test_itemknn_settings_are_chosen_on_validation_never_on_test(events_csv):
    from fedrec.shared.datasets import load_dataset
    from fedrec.simulations.baseline_cmd import prepare

    data = prepare(load_dataset(str(events_csv)), seed=0)
    chosen, grid = select_itemknn(data.split, data.val_negatives, (5, 20), (1.0, 0.5))
    assert len(grid) == 4 and chosen in [{k: g[k] for k in ("neighbours", "decay")} for g in grid]
    assert max(g["val_hr@10"] for g in grid) == next(
        g["val_hr@10"] for g in grid if g["neighbours"] == chosen["neighbours"]
        and g["decay"] == chosen["decay"])
    data.split.test_items = np.roll(data.split.test_items, 1)   # scramble the test items
    assert select_itemknn(data.split, data.val_negatives, (5, 20), (1.0, 0.5))[0] == chosen


@pytest.fixture(scope="module")
def events_csv(tmp_path_factory):
    from fedrec.shared.synthetic import SyntheticConfig, generate

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


@pytest.mark.inprocess
def test_neumf_dp_reports_an_epsilon_an_auditor_can_recompute(events_csv, tmp_path,
                                                              monkeypatch):
    import fedrec.shared.training

    avoided = []     # under DP a row's negatives avoid its own positive only (issue #19)
    sample = fedrec.shared.training.sample_training_negatives
    monkeypatch.setattr(fedrec.shared.training, "sample_training_negatives",
                        lambda train, users, *a: avoided.append((train, users))
                        or sample(train, users, *a))
    out = tmp_path / "dp.json"
    assert main(["baseline", "--dataset", str(events_csv), "--model", "neumf-dp",
                 "--epochs", "2", "--batch-size", "64", "--target-epsilon", "3",
                 "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    p = r["privacy"]
    assert p["level"] == "example" and p["accountant"] == "rdp"
    assert p["epsilon"] == pytest.approx(3.0, abs=0.01)
    event = privacy.event_from_dict(p["dp_event"])
    assert p["neighbouring_relation"] == privacy.EXAMPLE_RELATION == "replace_one"
    assert privacy.epsilon(event, p["delta"], relation="replace_one") == pytest.approx(p["epsilon"])
    assert event.count == p["steps"] and p["noise_multiplier"] > 0
    assert len(r["history"]) == 2 and "val_hr@10" in r["history"][0]
    assert p["negatives"].startswith("per row") and len(avoided) == 2
    for train, users in avoided:
        np.testing.assert_array_equal(users, np.arange(p["examples"]))
        assert (np.diff(train.indptr) == 1).all()


@pytest.mark.parametrize("argv, needle", [
    (["--model", "nope"], "--model: unknown nope"),
    (["--model", "neumf-dp", "--noise-multiplier", "-1"], "noise multiplier must be >= 0"),
    (["--model", "neumf-dp", "--clip", "0", "--target-epsilon", "1"], "clip must be > 0"),
    (["--dataset", "/no/such/file.csv", "--model", "popularity"], "/no/such/file.csv"),
    (["--model", "neumf-dp", "--recency-decay", "0.9"], "DP-SGD needs recency_decay = 1"),
    (["--model", "itemknn", "--recency-decay", "1.5"], "--recency-decay must be in (0, 1]"),
    (["--model", "itemknn", "--neighbours", "0"], "--neighbours must be >= 1"),
])
def test_user_errors_are_one_line_and_exit_2(argv, needle, tmp_path, capsys):
    assert main(["baseline", *argv, "--out", str(tmp_path / "x.json")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedrec: error:") and needle in lines[0]
    assert not (tmp_path / "x.json").exists()


def test_the_installed_command_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fedrec.simulations.cli", "data", "validate",
                           str(tmp_path / "missing.csv")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.inprocess
def test_popularity_dp_is_user_level_and_close_to_popularity_at_large_epsilon(events_csv, tmp_path):
    out = tmp_path / "pdp.json"
    assert main(["baseline", "--dataset", str(events_csv), "--model", "popularity,popularity-dp",
                 "--user-epsilon", "50", "--out", str(out)]) == 0
    plain, dp = json.loads(out.read_text())
    p = dp["privacy"]
    assert p["level"] == "user" and p["neighbouring_relation"] == "replace_one"
    assert p["epsilon"] <= 50.0 and p["epsilon"] == pytest.approx(50.0, rel=0.02)
    recomputed = privacy.epsilon(privacy.event_from_dict(p["dp_event"]), p["delta"], "pld",
                                 "replace_one")
    assert recomputed == pytest.approx(p["epsilon"])
    # ε = 50: noise std ~0.06 on unit-norm sums, so the ranking is popularity's
    assert dp["metrics"]["hr@10"] == pytest.approx(plain["metrics"]["hr@10"], abs=0.1)
