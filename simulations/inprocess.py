"""An in-process stand-in for Flower's Grid: the real ServerApp loop and ClientApp, no Ray.

``fedrec.server.app.run_federation`` drives a strategy through ``get_node_ids`` and
``send_and_receive``; this grid answers them by calling the ClientApp (mods included)
directly, one node per partition id, so whole federations run in a test in seconds.
"""

from __future__ import annotations

import copy

from flwr.app import Context, Error, Message, RecordDict

from fedrec.client.app import app as client_app
from fedrec.shared.config import RunConfig
from fedrec.shared.protocol import NODE_PARTITION_ID


class InProcessGrid:
    """Nodes 1..n with partition ids 0..n-1, each with its own persistent Context."""

    def __init__(self, cfg: RunConfig, n_nodes: int) -> None:
        self.contexts = {node: Context(run_id=1, node_id=node,
                                       node_config={NODE_PARTITION_ID: node - 1},
                                       state=RecordDict(), run_config=cfg.to_flower())
                         for node in range(1, n_nodes + 1)}

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        return [self._call(m) for m in messages]

    def _call(self, message):
        """The ClientApp's reply; an exception becomes an error reply, as in Flower.

        Each node gets its own copy of the content, as over the wire: senders may share
        one content between messages, and receivers may change theirs (``secaggplus_mod``
        pops the stage from its config)."""
        try:
            message.content = copy.deepcopy(message.content)
            return client_app(message, self.contexts[message.metadata.dst_node_id])
        except Exception as err:  # noqa: BLE001 - what a crashing device looks like
            return Message(Error(code=0, reason=str(err)), reply_to=message)


def run_inprocess(cfg: RunConfig) -> dict:
    """Run a whole federation of ``cfg`` in this process; return its results."""
    from fedrec.server.app import run_federation, server_data

    return run_federation(InProcessGrid(cfg, server_data(cfg).n_clients), cfg)
