"""The Flower ServerApp of a statistics-release run.

Asks every device once per statistic (``query.contribute``; with distributed noise
through SecAgg+, ``fedrec.server.release_secagg``), runs the releases
(``fedrec.server.release_run``: bound, account write-ahead, noise, release), then sends the
release to every device (``query.recommend``) and averages the metrics they report.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedrec.server.release_run import DataInfo, run_release
from fedrec.server.release_secagg import TRANSCRIPT, SecAggCollect
from fedrec.server.strategy import wait_for_nodes
from fedrec.shared import knn
from fedrec.shared import protocol_releases as wire
from fedrec.shared.federated_data import load_federation
from fedrec.shared.release_config import ReleaseConfig
from fedrec.shared.secagg_prg import install as install_full_seed_masks

log = logging.getLogger("flwr")
install_full_seed_masks()       # SecAgg+ masks keyed by the whole seed (fedrec.shared.secagg_prg)
app = ServerApp()
#: Seconds to wait for every device's answer to one query.
TIMEOUT = 3600.0


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = ReleaseConfig.from_mapping(dict(context.run_config))
    fed = load_federation(cfg.dataset, cfg.seed, cfg.synthetic_users, cfg.synthetic_items)
    data = DataInfo(fed.name, fed.fingerprint, fed.n_clients, fed.n_items)
    nodes = wait_for_nodes(grid, data.users, "devices")
    collect = flower_collect(grid, nodes)
    if cfg.noise == "distributed":      # the shares travel through SecAgg+
        transcript = Path(cfg.out) / TRANSCRIPT if cfg.secagg_transcript else None
        collect = SecAggCollect(grid, nodes, cfg.survivor_threshold(len(nodes)), TIMEOUT,
                                transcript)
    run_release(cfg, data, collect, flower_evaluate(grid, nodes, cfg), engine="flower")


def _ask(grid: Grid, nodes: list[int], query: str, content: RecordDict) -> list[Message]:
    """One query (a ``fedrec.shared.protocol_releases`` message type) to every node; the replies
    without error (a failed device contributes nothing, which is within the sensitivity:
    a zero vector has norm <= 1)."""
    messages = [Message(content, dst_node_id=node, message_type=query) for node in nodes]
    replies = [r for r in grid.send_and_receive(messages, timeout=TIMEOUT) if not r.has_error()]
    if len(replies) < len(nodes):
        log.warning("%s: %d of %d devices answered", query, len(replies), len(nodes))
    return replies


def flower_collect(grid: Grid, nodes: list[int]):
    def collect(statistic: str, request: dict) -> list[np.ndarray]:
        content = wire.contribute_content(statistic, request)
        return [wire.contribution_of(r.content)
                for r in _ask(grid, nodes, wire.CONTRIBUTE, content)]
    return collect


def flower_evaluate(grid: Grid, nodes: list[int], cfg: ReleaseConfig):
    def evaluate(released: knn.Released) -> tuple[dict[str, float], int]:
        content = wire.recommend_content(released, cfg.knn)
        reports = [wire.evaluation_of(r.content)
                   for r in _ask(grid, nodes, wire.RECOMMEND, content)]
        reports = [m for m in reports if m is not None]
        keys = list(reports[0]) if reports else []
        return {k: float(np.mean([m[k] for m in reports])) for k in keys}, len(reports)
    return evaluate
