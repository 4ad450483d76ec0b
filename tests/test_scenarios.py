"""Scenario switches of a simulated federation: dropout, stragglers, participation windows,
heterogeneity. Whole federations through the real ServerApp loop and ClientApp, in process."""

from __future__ import annotations

import numpy as np
import pytest

from fedrec.shared import protocol
from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError
from fedrec.shared.federated_data import federation_of
from fedrec.simulations.inprocess import run_inprocess

SMALL = dict(synthetic_users=12, synthetic_items=60, gmf_dim=8, mlp_dim=8, content_dim=8,
             eval_every=100)


def _rows(cfg: RunConfig) -> list[dict]:
    """Metrics lines with who took part (server-private) joined in."""
    from fedrec.server.rundir import RunDir

    return RunDir(cfg.out).private_rows()


@pytest.mark.inprocess
def test_dropouts_fail_mid_round_and_the_round_goes_on(tmp_path):
    cfg = RunConfig(out=str(tmp_path / "run"), rounds=3, dropout=0.4, **SMALL)
    results = run_inprocess(cfg)
    rows = _rows(cfg)
    assert results["rounds"] == 3
    failed = [r["clients_failed"] for r in rows]
    assert sum(failed) > 0 and all(f < 12 for f in failed)
    assert all(r["clients_replied"] + r["clients_failed"] == r["clients_sampled"] for r in rows)
    # the same seed fails the same clients: a reproducible scenario
    again = cfg.replace(out=str(tmp_path / "again"))
    run_inprocess(again)
    assert [r["clients_failed"] for r in _rows(again)] == failed


def test_failures_are_fatal_only_below_min_replies(tmp_path):
    cfg = RunConfig(out=str(tmp_path / "run"), rounds=2, dropout=0.4, min_replies=12, **SMALL)
    with pytest.raises(RuntimeError, match=r"round 1: \d+ usable updates < min-replies 12 "
                                           r"\(0 declined, [1-9]\d* failed, 0 rejected\)"):
        run_inprocess(cfg)


@pytest.mark.inprocess
def test_a_participation_window_spaces_each_devices_rounds(tmp_path):
    cfg = RunConfig(out=str(tmp_path / "run"), rounds=6, clients_per_round=6,
                    participation_window=3, dp="server", noise_multiplier=0.5, noise_seed=0,
                    **SMALL)
    run_inprocess(cfg)
    rows = _rows(cfg)
    joined: dict[int, list[int]] = {}
    for r in rows:
        for p in r["participants"]:
            joined.setdefault(p, []).append(r["round"])
    assert joined and all(np.all(np.diff(rounds) >= 3) for rounds in joined.values())
    assert sum(r["clients_declined"] for r in rows) > 0
    reasons = {x for r in rows for x in r.get("declined_reasons", [])}
    assert any(x.startswith("participation window: took part in round") for x in reasons)
    # declines are accounted as what they are: fewer updates averaged that round
    assert all(r["dp_replied"] == r["clients_replied"] for r in rows)


def test_stragglers_answer_late(tmp_path):
    from flwr.app import Message, RecordDict

    from fedrec.server.app import initial_global_weights, round_config
    from fedrec.simulations.inprocess import InProcessGrid

    cfg = RunConfig(out=str(tmp_path / "run"), straggler_fraction=1.0, straggler_delay=0.3,
                    **SMALL)
    fed = federation_of(cfg)
    weights = initial_global_weights(cfg, fed.inter.n_items, fed.inter.item_features)
    msg = Message(RecordDict({"arrays": protocol.to_record(weights),
                              "config": round_config(cfg, 1)}),
                  dst_node_id=1, message_type="train")
    reply = InProcessGrid(cfg, 12).send_and_receive([msg])[0]
    assert reply.content["metrics"]["client-seconds"] >= 0.3


def test_heterogeneity_knobs_reach_the_synthetic_generator():
    iid = federation_of(RunConfig(synthetic_users=200, synthetic_items=100,
                                  synthetic_heterogeneity=0.0, synthetic_activity_skew=0.0))
    skewed = federation_of(RunConfig(synthetic_users=200, synthetic_items=100,
                                     synthetic_heterogeneity=1.0, synthetic_activity_skew=2.0))
    sizes_iid, sizes_skewed = iid.train_sizes(), skewed.train_sizes()
    cv = lambda x: float(np.std(x) / np.mean(x))  # noqa: E731 - coefficient of variation
    assert cv(sizes_skewed) > 1.5 * cv(sizes_iid)
    assert iid.fingerprint != skewed.fingerprint


@pytest.mark.parametrize("changes, message", [
    ({"dropout": 1.5}, "dropout must be in [0, 1]"),
    ({"synthetic_heterogeneity": -0.1}, "synthetic-heterogeneity must be in [0, 1]"),
    ({"participation_window": -1}, "must be >= 0"),
])
def test_bad_scenario_settings_fail_at_the_edge(changes, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RunConfig(**changes)


@pytest.mark.inprocess
def test_cold_start_users_join_late_and_see_popular_items_until_then(tmp_path):
    from fedrec.client.local import evaluate_scores
    from fedrec.client.scenarios import is_late

    cfg = RunConfig(out=str(tmp_path / "run"), rounds=4, late_users=0.5, join_round=3,
                    **{**SMALL, "synthetic_users": 24, "eval_every": 1})
    run_inprocess(cfg)
    rows = _rows(cfg)
    fed = federation_of(cfg)
    late = [u for u in range(fed.n_clients) if is_late(cfg, u) and fed.client(u).evaluable]
    assert 0 < len(late) < fed.n_clients
    fallback = np.mean([evaluate_scores(fed.popularity, fed.client(u))["hr@10"] for u in late])
    for r in rows:
        declined = any(x.startswith("cold start: joins in round 3")
                       for x in r.get("declined_reasons", []))
        assert declined == (r["round"] < 3)
        assert r["clients_declined"] == (len([u for u in range(24) if is_late(cfg, u)])
                                         if r["round"] < 3 else 0)
    assert [r["cold_hr@10"] for r in rows[:2]] == pytest.approx([fallback, fallback])
    assert all(r["cold_hr@10"] is not None for r in rows[2:])
    # before joining a late device stores nothing; once joined it trains and evaluates
    from fedrec.client.state import PrivateStore

    for u in late:
        store = PrivateStore(cfg.client_state_root, u)
        assert store.load(2) is None and store.load(2, kind="eval") is None
        assert store.last_round() >= 3 and store.last_round("eval") == 4


@pytest.mark.inprocess
def test_items_added_mid_run_stay_untrained_until_released(tmp_path):
    from fedrec.client.scenarios import new_items
    from fedrec.server.app import initial_global_weights
    from fedrec.server.rundir import RunDir

    cfg = RunConfig(out=str(tmp_path / "run"), rounds=4, new_items=0.3, items_round=3,
                    local_epochs=2, **{**SMALL, "synthetic_users": 30, "eval_every": 1})
    run_inprocess(cfg)
    fed = federation_of(cfg)
    late = new_items(cfg, fed.n_items)
    assert 0.15 * fed.n_items < len(late) < 0.45 * fed.n_items
    early = np.setdiff1d(np.arange(fed.n_items), late)
    start = initial_global_weights(cfg, fed.n_items, fed.item_features)
    run = RunDir(cfg.out)
    for rnd in range(1, 5):
        weights, _ = run.load_checkpoint(rnd)
        for table in ("item_gmf_embedding/embeddings", "item_mlp_embedding/embeddings"):
            moved = np.abs(weights[table] - start[table]).max(axis=1)
            assert moved[early].max() > 1e-3           # released items train from round 1
            if rnd < 3:   # nobody trains on, or samples as a negative, an unreleased item
                assert moved[late].max() < 1e-6
            else:
                assert moved[late].max() > 1e-3
    # HR@10 of the users whose next item is a new one, every round
    expected = sum(1 for u in range(fed.n_clients)
                   if fed.client(u).evaluable and fed.client(u).test_item in late)
    rows = _rows(cfg)
    assert expected > 0 and all(r["new_item_users"] == expected for r in rows)
    assert all(0.0 <= r["new_item_hr@10"] <= 1.0 for r in rows)


def test_new_item_settings_fail_at_the_edge():
    with pytest.raises(ConfigError, match=r"new-items must be in \[0, 0.5\]"):
        RunConfig(new_items=0.8)
    with pytest.raises(ConfigError, match="items-round must be >= 1"):
        RunConfig(items_round=0)
