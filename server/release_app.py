"""The Flower ServerApp of a statistics-release run.

Asks every device once per statistic (``query.contribute``), runs the releases
(``server.release_run``: bound, account write-ahead, noise, release), then sends the
release to every device (``query.recommend``) and averages the metrics they report.
"""

from __future__ import annotations

import logging

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from server.release_run import DataInfo, run_release
from server.strategy import wait_for_nodes
from shared import knn
from shared.federated_data import load_federation
from shared.release_config import ReleaseConfig

log = logging.getLogger("flwr")
app = ServerApp()
#: Seconds to wait for every device's answer to one query.
TIMEOUT = 3600.0


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = ReleaseConfig.from_mapping(dict(context.run_config))
    fed = load_federation(cfg.dataset, cfg.seed, cfg.synthetic_users, cfg.synthetic_items)
    data = DataInfo(fed.name, fed.fingerprint, fed.n_clients, fed.n_items)
    nodes = wait_for_nodes(grid, data.users, "devices")
    run_release(cfg, data, flower_collect(grid, nodes), flower_evaluate(grid, nodes, cfg),
                engine="flower")


def _ask(grid: Grid, nodes: list[int], action: str, config: dict,
         arrays: dict[str, np.ndarray]) -> list[Message]:
    """One query to every node; the replies without error (a failed device contributes
    nothing, which is within the sensitivity: a zero vector has norm <= 1)."""
    messages = [Message(RecordDict({"config": ConfigRecord(config),
                                    "arrays": ArrayRecord({k: Array.from_numpy_ndarray(v)
                                                           for k, v in arrays.items()})}),
                        dst_node_id=node, message_type=f"query.{action}") for node in nodes]
    replies = [r for r in grid.send_and_receive(messages, timeout=TIMEOUT) if not r.has_error()]
    if len(replies) < len(nodes):
        log.warning("%s: %d of %d devices answered", action, len(replies), len(nodes))
    return replies


def flower_collect(grid: Grid, nodes: list[int]):
    def collect(statistic: str, request: dict) -> list[np.ndarray]:
        config = {"statistic": statistic, **{k: v for k, v in request.items() if k != "head"}}
        arrays = {"head": np.asarray(request["head"])} if "head" in request else {}
        return [r.content["arrays"]["contribution"].numpy()
                for r in _ask(grid, nodes, "contribute", config, arrays)]
    return collect


def flower_evaluate(grid: Grid, nodes: list[int], cfg: ReleaseConfig):
    def evaluate(released: knn.Released) -> tuple[dict[str, float], int]:
        s = cfg.knn
        config = {"rank": s.rank, "alpha": s.alpha, "neighbours": s.neighbours,
                  "decay": s.decay, "knn-weight": s.knn_weight, "top-k": s.top_k,
                  "ease-lambda": s.ease_lambda, "ease-weight": s.ease_weight}
        empty = np.zeros((0, 0))
        arrays = {"popularity": released.popularity, "head": released.head,
                  "similarity": empty if released.similarity is None else released.similarity,
                  "ease": empty if released.ease is None else released.ease}
        reports = [r.content["metrics"] for r in _ask(grid, nodes, "recommend", config, arrays)]
        reports = [m for m in reports if int(m["evaluated"])]
        keys = [k for k in reports[0].keys() if k != "evaluated"] if reports else []
        return {k: float(np.mean([float(m[k]) for m in reports])) for k in keys}, len(reports)
    return evaluate
