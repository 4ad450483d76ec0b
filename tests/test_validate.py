"""Malformed or malicious replies are rejected before aggregation and cannot move the model."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

from fedrec.server.app import _one_round
from fedrec.server.strategy import make_strategy
from fedrec.server.validate import check_update
from fedrec.shared.config import RunConfig

SENT = {"a": np.zeros((3, 2), np.float32), "b": np.ones(4, np.float32)}


def _record(arrays: dict) -> ArrayRecord:
    return ArrayRecord(OrderedDict((k, Array.from_numpy_ndarray(v)) for k, v in arrays.items()))


def _reply(arrays: dict, to: Message | None = None) -> Message:
    content = RecordDict({"arrays": _record(arrays),
                          "metrics": MetricRecord({"num-examples": 1, "train-loss": 0.5,
                                                   "client-seconds": 0.1})})
    return Message(content, reply_to=to) if to else Message(content, dst_node_id=1,
                                                            message_type="train")


def _shifted(delta: float, **override) -> dict:
    out = {k: v + delta for k, v in SENT.items()}
    out.update(override)
    return out


@pytest.mark.parametrize("arrays, reason", [
    (_shifted(0.1, a=np.full((3, 2), np.nan, np.float32)), "NaN or Inf"),
    (_shifted(0.1, b=np.full(4, np.inf, np.float32)), "NaN or Inf"),
    (_shifted(0.1, a=np.zeros((2, 3), np.float32)), "expected float32[3, 2]"),
    (_shifted(0.1, a=np.zeros((3, 2), np.float64)), "expected float32"),
    ({"a": SENT["a"] + 1}, "names differ"),
    ({**_shifted(0.1), "extra": np.zeros(1, np.float32)}, "names differ"),
    (dict(SENT), "all-zero update"),
    (_shifted(100.0), "update norm"),
])
def test_bad_updates_are_named(arrays, reason):
    assert reason in check_update(_reply(arrays), SENT, max_norm=10.0)


def test_a_good_update_passes():
    assert check_update(_reply(_shifted(0.1)), SENT, max_norm=10.0) is None


def test_user_level_dp_rejects_a_reply_that_weighs_more_than_one():
    heavy = _reply(_shifted(0.1))
    heavy.content["metrics"]["num-examples"] = 50
    assert check_update(heavy, SENT) is None            # plain FedAvg: a weight
    assert "weight" in check_update(heavy, SENT, unit_weight=True)
    assert check_update(_reply(_shifted(0.1)), SENT, unit_weight=True) is None


class _Grid:
    """Four nodes; node 4 answers with NaN, the others with +1, +2, +3."""

    def get_node_ids(self):
        return [1, 2, 3, 4]

    def send_and_receive(self, messages, timeout=None):
        out = []
        for m in messages:
            node = m.metadata.dst_node_id
            if m.metadata.message_type != "train":
                continue
            bad = node == 4
            arrays = {k: np.full_like(v, np.nan) if bad else v + node for k, v in SENT.items()}
            out.append(_reply(arrays, to=m))
        return out


def test_a_rejected_reply_cannot_change_the_global_model(tmp_path):
    cfg = RunConfig(out=str(tmp_path), rounds=2, eval_every=2)
    strategy = make_strategy(cfg, 4)
    new, line = _one_round(_Grid(), strategy, cfg, 1, _record(SENT), 4)
    assert line["clients_rejected"] == 1 and line["clients_replied"] == 3
    for k, v in SENT.items():   # the average of the three honest updates only
        np.testing.assert_allclose(new[k].numpy(), v + 2.0)
