"""An in-process stand-in for Flower's Grid: the real ServerApp loop and ClientApp, no Ray.

``server.app.run_federation`` drives a strategy through ``get_node_ids`` and
``send_and_receive``; this grid answers them by calling the ClientApp (mods included)
directly, one node per partition id, so whole federations run in a test in seconds.
"""

from __future__ import annotations

from flwr.app import Context, RecordDict

from client.app import app as client_app
from shared.config import RunConfig


class InProcessGrid:
    """Nodes 1..n with partition ids 0..n-1, each with its own persistent Context."""

    def __init__(self, cfg: RunConfig, n_nodes: int) -> None:
        self.contexts = {node: Context(run_id=1, node_id=node,
                                       node_config={"partition-id": node - 1},
                                       state=RecordDict(), run_config=cfg.to_flower())
                         for node in range(1, n_nodes + 1)}

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        return [client_app(m, self.contexts[m.metadata.dst_node_id]) for m in messages]


def run_inprocess(cfg: RunConfig) -> dict:
    """Run a whole federation of ``cfg`` in this process; return its results."""
    from server.app import run_federation, server_data

    return run_federation(InProcessGrid(cfg, server_data(cfg).n_clients), cfg)
