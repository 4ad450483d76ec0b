"""Where a simulation's clients ran: replies per Ray node, per round and message type.

A simulated client's reply names the Ray node that ran it (``fedrec.client.mods.
simulation_node_mod``). :class:`NodeLog` wraps the ServerApp's Grid, takes that record
off every reply (so strategies, SecAgg+ and validation see the replies they always saw)
and counts it into ``RUN/simulation-nodes.json``::

    {"note": ..., "nodes": [node ids, first seen first],
     "rounds": {"1": {"train": {node id: replies}, "evaluate": {...}}, "0": {"query": ...}}}

Round "0" holds the start-up queries. Counts only: which user ran where is not kept (who
took part in a round is server-private, ``fedrec.server.rundir``). Simulation diagnostics, not
a released artefact; a deployment's devices send no such record and the file is never
written. A resumed run adds to the counts (a round re-run after a crash counts again).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flwr.app import Message

from fedrec.shared.protocol import CONFIG, SERVER_ROUND
from fedrec.shared.runinfo import RAY_NODE_ID, SIMULATION_NODE_KEY, write_json_atomic

SIMULATION_NODES = "simulation-nodes.json"
NOTE = ("simulation diagnostics, not released: replies received per Ray node, per round "
        "and message type (round 0: start-up queries); no user ids")


def message_round(messages: list[Message]) -> int:
    """The server round a batch of messages belongs to: the round config's
    ``server-round``, else a numeric ``group_id`` (SecAgg+ stages), else 0."""
    for msg in messages:
        if msg.has_content() and CONFIG in msg.content and SERVER_ROUND in msg.content[CONFIG]:
            return int(msg.content[CONFIG][SERVER_ROUND])
        if msg.metadata.group_id.isdigit():
            return int(msg.metadata.group_id)
    return 0


def take_node(reply: Message) -> str | None:
    """Remove the simulation-node record from ``reply``; return the Ray node id in it."""
    if reply.has_error() or SIMULATION_NODE_KEY not in reply.content:
        return None
    record = reply.content[SIMULATION_NODE_KEY]
    del reply.content[SIMULATION_NODE_KEY]
    return str(record[RAY_NODE_ID]) if RAY_NODE_ID in record else None


class NodeLog:
    """A Grid that counts which Ray node ran each reply (see module docstring).

    Args:
        grid: the Grid to wrap; everything but ``send_and_receive`` passes through.
        path: the JSON file to keep (read first, so a resumed run adds to it).
    """

    def __init__(self, grid, path: str | Path) -> None:
        self._grid = grid
        self.path = Path(path)
        self.record: dict[str, Any] = (json.loads(self.path.read_text()) if self.path.exists()
                                       else {"note": NOTE, "nodes": [], "rounds": {}})

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        rnd = str(message_round(messages))
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        counted = False
        for reply in replies:
            node = take_node(reply)
            if node is None:
                continue
            kind = self.record["rounds"].setdefault(rnd, {}).setdefault(
                reply.metadata.message_type, {})
            kind[node] = kind.get(node, 0) + 1
            if node not in self.record["nodes"]:
                self.record["nodes"].append(node)
            counted = True
        if counted:
            write_json_atomic(self.path, self.record)
        return replies

    def __getattr__(self, name):
        return getattr(self._grid, name)


def read_nodes(run_path: str | Path) -> dict[str, Any] | None:
    """``simulation-nodes.json`` of a run directory (None: not written)."""
    path = Path(run_path) / SIMULATION_NODES
    return json.loads(path.read_text()) if path.exists() else None
