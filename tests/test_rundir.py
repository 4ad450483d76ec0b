import json

import numpy as np
import pytest

from fedrec.server.rundir import RunDir
from fedrec.server.strategy import get_state, make_strategy, per_round, set_state
from fedrec.shared.config import RunConfig
from fedrec.simulations.plots import plot_convergence


def test_checkpoint_round_trip_and_last_complete_round(tmp_path):
    run = RunDir(tmp_path / "r")
    run.create({"config": {}}, resume=False)
    w = {"item_gmf_embedding/embeddings": np.arange(6, dtype=np.float32).reshape(3, 2)}
    run.save_checkpoint(1, w, {"m_t:item": np.ones(2)})
    run.append_metrics({"round": 1, "hr@10": 0.5})
    run.save_checkpoint(2, w, {})          # crashed before its metrics line
    assert run.last_complete_round() == 1
    weights, state = run.load_checkpoint(1)
    np.testing.assert_array_equal(weights["item_gmf_embedding/embeddings"], w["item_gmf_embedding/embeddings"])
    assert list(state) == ["m_t:item"]
    with pytest.raises(FileExistsError):
        run.create({"config": {}}, resume=False)


def test_torn_metrics_line_is_ignored_and_truncation_keeps_complete_rounds(tmp_path):
    run = RunDir(tmp_path)
    run.metrics_path.write_text(json.dumps({"round": 1}) + "\n" + json.dumps({"round": 2}) + "\n{\"rou")
    assert [r["round"] for r in run.read_metrics()] == [1, 2]
    run.truncate_metrics(1)
    assert [r["round"] for r in run.read_metrics()] == [1]


def test_strategy_samples_exactly_the_requested_clients_and_restores_state():
    cfg = RunConfig(clients_per_round=7, eval_clients=0, strategy="fedadam")
    strategy = make_strategy(cfg, 943)
    assert int(943 * strategy.fraction_train) <= 7 == strategy.min_train_nodes
    assert per_round(0, 943) == 943 and per_round(2000, 943) == 943
    strategy.m_t = {"a": np.ones(3)}
    strategy.v_t = {"a": np.full(3, 2.0)}
    fresh = make_strategy(cfg, 943)
    set_state(fresh, get_state(strategy))
    np.testing.assert_array_equal(fresh.v_t["a"], [2.0, 2.0, 2.0])
    momentum = make_strategy(cfg.replace(strategy="fedavgm"), 10)
    momentum.momentum_vector = [np.zeros(2), np.ones(1)]
    again = make_strategy(cfg.replace(strategy="fedavgm"), 10)
    set_state(again, get_state(momentum))
    assert [len(v) for v in again.momentum_vector] == [2, 1]


def test_convergence_plot_is_a_png(tmp_path):
    rows = [{"round": 1, "hr@10": 0.3}, {"round": 2, "hr@10": None}, {"round": 3, "hr@10": 0.5}]
    out = plot_convergence(rows, tmp_path / "c.png", "t", {"NeuMF": 0.66})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 1000


def test_mean_curve_averages_only_rounds_every_run_evaluated(tmp_path):
    from fedrec.simulations.plots import curve, mean_curve

    a = curve([{"round": 1, "hr@10": 0.2}, {"round": 2, "hr@10": None}, {"round": 4, "hr@10": 0.6}])
    b = curve([{"round": 1, "hr@10": 0.4}, {"round": 2, "hr@10": 0.5}, {"round": 4, "hr@10": 0.7}])
    assert a == {1: 0.2, 4: 0.6}
    assert mean_curve([a, b]) == pytest.approx({1: 0.3, 4: 0.65})
    assert mean_curve([]) == {}
    out = plot_convergence({"seed 0": [{"round": 1, "hr@10": 0.2}],
                            "seed 1": [{"round": 1, "hr@10": 0.4}]}, tmp_path / "s.png", "t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
