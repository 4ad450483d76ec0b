"""Adaptive clipping (issue 19, item 5): the clip moves the right way, stays in a range
fixed before the run, and each round is noised with the clip its updates were clipped
to, so the accounted event is the same whatever the clip (fedrec.server.adaptive)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import DifferentialPrivacyServerSideAdaptiveClipping, FedAvg

from fedrec.server.adaptive import next_clip
from fedrec.server.app import round_config
from fedrec.server.dp import ServerPrivacy
from fedrec.server.strategy import get_state, set_state
from fedrec.server.wrappers import adaptive_range, wrap_strategy
from fedrec.shared import privacy, protocol
from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError

N, M = 8, 4           # M of N sampled: RDP only (PLD would make a full round slow)
ADAPTIVE = dict(dp="server", dp_clipping="server-adaptive", noise_multiplier=0.5, clip=1.0,
                clipped_count_stddev=0.3, noise_seed=0)


class _Grid:
    def get_node_ids(self):
        return list(range(1, N + 1))


def _replies(sent, weights, scale):
    """Each sampled node replies ``weights`` moved by ``scale`` in every coordinate."""
    return [Message(RecordDict({"arrays": protocol.to_record({"w": weights + scale}),
                                "metrics": MetricRecord({"num-examples": 1})}), reply_to=m)
            for m in sent]


def _rounds(cfg, scale, rounds, size=100):
    """Run ``rounds`` aggregations; return each round's privacy fields, the released
    arrays and the strategy."""
    strategy = wrap_strategy(FedAvg(fraction_train=M / N, min_train_nodes=M,
                                    min_available_nodes=N), cfg, sampled=M)
    sp = ServerPrivacy(cfg, N, M)
    weights, lines, released = np.zeros(size, np.float32), [], []
    for rnd in range(1, rounds + 1):
        sent = list(strategy.configure_train(rnd, protocol.to_record({"w": weights}),
                                             round_config(cfg, rnd), _Grid()))
        with sp.aggregating(strategy, rnd):
            new, _ = strategy.aggregate_train(rnd, _replies(sent, weights, scale))
        lines.append(sp.after_aggregation(strategy, rnd, M))
        released.append(protocol.from_record(new)["w"])
    return lines, released, strategy


def test_next_clip_by_hand():
    assert next_clip(1.0, 0.0, 0.5, 0.2, 0.01, 100.0) == pytest.approx(math.exp(0.1))
    assert next_clip(1.0, 1.0, 0.5, 0.2, 0.01, 100.0) == pytest.approx(math.exp(-0.1))
    assert next_clip(2.0, 0.5, 0.5, 0.2, 0.01, 100.0) == pytest.approx(2.0)
    assert next_clip(1.0, 0.0, 0.5, 0.2, 0.5, 1.05) == 1.05                  # clamped high
    assert next_clip(1.0, 5.0, 0.5, 0.2, 0.9, 2.0) == 0.9                    # clamped low


def test_flowers_adaptive_wrapper_shrinks_the_clip_when_every_update_is_clipped():
    """The defect (Flower 1.23) that fedrec.server.adaptive replaces: all clipped, and the clip
    shrinks by exp(-0.1) instead of growing."""
    wrapper = DifferentialPrivacyServerSideAdaptiveClipping(
        FedAvg(), 0.0, M, initial_clipping_norm=1.0, clipped_count_stddev=0.0)
    wrapper._geometric_update(wrapper._noisy_fraction(M, M))                # M of M clipped
    assert wrapper.clipping_norm == pytest.approx(math.exp(-0.1))


@pytest.mark.inprocess
def test_the_clip_grows_when_every_update_is_clipped_and_shrinks_when_none_is(tmp_path):
    cfg = RunConfig(out=str(tmp_path), **ADAPTIVE)
    big, _, _ = _rounds(cfg, 1.0, 3)                  # update norm 10 > every clip
    assert [line["dp_clip"] for line in big] == sorted({line["dp_clip"] for line in big})
    assert big[1]["dp_clip"] == pytest.approx(math.exp(0.1), rel=0.03)     # about +10.5 %
    small, _, _ = _rounds(cfg, 0.001, 3)              # update norm 0.01 < every clip
    assert [line["dp_clip"] for line in small] == sorted(
        {line["dp_clip"] for line in small}, reverse=True)
    assert small[1]["dp_clip"] == pytest.approx(math.exp(-0.1), rel=0.03)


@pytest.mark.inprocess
def test_each_round_is_noised_with_its_own_clip_and_accounted_alike(tmp_path):
    cfg = RunConfig(out=str(tmp_path), **{**ADAPTIVE, "clipped_count_stddev": 2.0})
    lines, released, strategy = _rounds(cfg, 1.0, 3, size=20_000)
    z_update = strategy.noise_multiplier
    for line, new in zip(lines, released):
        assert line["dp_noise_std"] == pytest.approx(z_update * line["dp_clip"] / M)
        # the noise really added: every update is clipped to this round's clip, so the
        # average is clip / sqrt(d) per coordinate, plus noise of that std
        signal = line["dp_clip"] / math.sqrt(new.size)
        assert np.std(new - signal) == pytest.approx(line["dp_noise_std"], rel=0.03)
    # the clip moved, the accounted event did not: it is fixed before the run
    assert len({line["dp_clip"] for line in lines}) == 3
    planned = privacy.event_to_dict(ServerPrivacy(cfg, N, M).planned_event())
    assert all(line["dp_event"] == planned for line in lines)


@pytest.mark.inprocess
def test_the_clip_stays_in_the_range_fixed_before_the_run(tmp_path):
    cfg = RunConfig(out=str(tmp_path), **{**ADAPTIVE, "clip_adapt_range": 1.05})
    up, _, strategy = _rounds(cfg, 1.0, 4)
    assert max(line["dp_clip"] for line in up) <= 1.05 and strategy.clipping_norm == 1.05
    down, _, strategy = _rounds(cfg, 0.001, 4)
    assert strategy.clipping_norm == pytest.approx(1 / 1.05)
    planned = privacy.event_to_dict(ServerPrivacy(cfg, N, M).planned_event())
    assert all(line["dp_event"] == planned for line in up + down)   # lower bound: same event


def test_a_checkpoint_restores_the_adapted_clip(tmp_path):
    cfg = RunConfig(out=str(tmp_path), **ADAPTIVE)
    _, _, strategy = _rounds(cfg, 1.0, 2)
    fresh = wrap_strategy(FedAvg(), cfg, sampled=M)
    set_state(fresh, get_state(strategy))
    assert fresh.clipping_norm == strategy.clipping_norm != 1.0
    assert fresh.strategy.clipping_norm == strategy.clipping_norm        # Flower's wrapper


def test_the_range_is_a_setting_and_a_flag():
    import argparse

    from fedrec.simulations.simulate_args import add_arguments, build_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = build_config(parser.parse_args(["--dp", "server", "--dp-clipping", "server-adaptive",
                                          "--clip", "0.5", "--clip-adapt-range", "4"]))
    assert cfg.clip_adapt_range == 4.0 and RunConfig().clip_adapt_range == 100.0
    assert adaptive_range(cfg) == (0.125, 2.0)
    with pytest.raises(ConfigError, match="clip-adapt-range must be a finite number >= 1"):
        RunConfig(clip_adapt_range=0.5)
