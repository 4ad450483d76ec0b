"""Helpers several test files share: a small federation, a device called directly, a
server's view of a training round. Test files import from here, never from each other."""

from __future__ import annotations

import numpy as np
from flwr.app import Context, Message, MetricRecord, RecordDict

from fedrec.client import app as capp
from fedrec.server.app import initial_global_weights, round_config
from fedrec.shared import protocol
from fedrec.shared.config import RunConfig
from fedrec.shared.federated_data import load_federation

#: Users of the small synthetic federation (60 items, dims 8).
N_USERS = 12


def small_config(tmp_path, **changes) -> RunConfig:
    """A run config for the small federation, writing under ``tmp_path``."""
    return RunConfig(synthetic_users=N_USERS, synthetic_items=60, out=str(tmp_path),
                     gmf_dim=8, mlp_dim=8, content_dim=8, **changes)


def small_federation():
    return load_federation("synthetic", 0, N_USERS, 60)


def initial_weights(cfg: RunConfig, fed) -> dict[str, np.ndarray]:
    return initial_global_weights(cfg, fed.inter.n_items, fed.inter.item_features)


def call_client(cfg: RunConfig, weights, user: int, kind: str, rnd: int = 1) -> Message:
    """User ``user``'s ClientApp answering a ``kind`` message of round ``rnd``."""
    msg = Message(RecordDict({"arrays": protocol.to_record(weights),
                              "config": round_config(cfg, rnd)}),
                  dst_node_id=user + 1, message_type=kind)
    ctx = Context(run_id=1, node_id=user + 1, node_config={"partition-id": user},
                  state=RecordDict(), run_config=cfg.to_flower())
    return capp.app(msg, ctx)


def training_replies(weights, updates) -> list[Message]:
    """Replies of nodes 1, 2, ... to a training round: ``weights`` plus each update."""
    out = []
    for i, u in enumerate(updates):
        arrays = protocol.to_record({k: (v + u[k]).astype(np.float32) for k, v in weights.items()})
        content = RecordDict({"arrays": arrays, "metrics": MetricRecord(
            {"num-examples": 1, "train-loss": 0.0})})
        out.append(Message(content, reply_to=Message(RecordDict(), dst_node_id=i + 1,
                                                     message_type="train")))
    return out


class FourNodeGrid:
    """The part of a Grid a strategy's ``configure_train`` asks for: four nodes."""

    def get_node_ids(self):
        return [1, 2, 3, 4]
