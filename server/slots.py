"""Many simulated users on few simulation nodes: the scale path (``lazy-clients``).

Flower's simulation engine polls every node for messages on every pass, and each poll
scans all pending messages, so its cost grows with nodes x messages: at 100,000 nodes
the engine spends its time polling, and asking each node for its position takes hours.
A simulated user, though, needs a node only while it computes. :class:`SlotGrid` lets
the strategy see one *virtual* node per user (ids 1..N, position = id - 1), samples
through Flower's strategy as usual, and sends each message to one of a few real nodes
(*slots*: as many as a round needs), naming the user in the message's config
(``fedrec.shared.protocol.LAZY_USER``). Replies come back under the user's virtual id. The ClientApp then
acts as that user: its data is generated on demand, its embedding and ledger are files
on disk, so nothing about a user lives in a slot between rounds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import ConfigRecord, Message, RecordDict

from fedrec.server.strategy import per_round, wait_for_nodes
from fedrec.shared.protocol import CONFIG, LAZY_USER


class SlotGrid:
    """A Grid of N virtual user nodes served by the real grid's slot nodes.

    Args:
        grid: the ServerApp's Grid (simulation nodes = slots).
        n_users: users (virtual nodes); user ``p`` has node id ``p + 1``.
        slots: real nodes to wait for before the first round; one message per slot at
            a time, so no two users share a node while they compute.
        timeout: seconds to wait for them (a simulation started with too few nodes
            fails with a clear message instead of waiting for ever).
    """

    def __init__(self, grid, n_users: int, slots: int, timeout: float = 600.0) -> None:
        if n_users < 1 or slots < 1:
            raise ValueError(f"need >= 1 users and slots, got {n_users} and {slots}")
        self._grid = grid
        self.n_users = n_users
        try:
            self._slots = wait_for_nodes(grid, slots, "simulation slots", timeout)
        except TimeoutError:
            raise RuntimeError(
                f"lazy-clients needs {slots} simulation nodes (the larger of clients-per-round "
                f"and eval-clients), {len(list(grid.get_node_ids()))} are connected: start the "
                f"simulation with --num-supernodes {slots}") from None

    def position(self, node_id: int) -> int:
        """The user behind a virtual node id (-1 if it is none)."""
        return node_id - 1 if 1 <= node_id <= self.n_users else -1

    def get_node_ids(self) -> list[int]:
        return list(range(1, self.n_users + 1))

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> list[Message]:
        """Send in waves of at most one message per slot; replies under virtual ids."""
        messages = list(messages)
        replies: list[Message] = []
        deadline = None if timeout is None else time.time() + timeout
        for start in range(0, len(messages), len(self._slots)):
            wave = messages[start:start + len(self._slots)]
            users = {}
            out = []
            for slot, msg in zip(self._slots, wave):
                out.append(self._to_slot(msg, slot))
                users[slot] = msg.metadata.dst_node_id
            left = None if deadline is None else max(0.0, deadline - time.time())
            for reply in self._grid.send_and_receive(out, timeout=left):
                src = reply.metadata.src_node_id
                reply.metadata.__dict__["_src_node_id"] = users.get(src, src)
                replies.append(reply)
        return replies

    def _to_slot(self, msg: Message, slot: int) -> Message:
        """A copy of ``msg`` for ``slot`` whose config names the user (strategies share
        one RecordDict among all their messages, so it is not changed in place)."""
        user = self.position(msg.metadata.dst_node_id)
        if user < 0:
            raise ValueError(f"message for unknown node {msg.metadata.dst_node_id}")
        content = RecordDict(dict(msg.content.items()))
        config = dict(content[CONFIG]) if CONFIG in content else {}
        content[CONFIG] = ConfigRecord({**config, LAZY_USER: user})
        return Message(content, dst_node_id=slot, message_type=msg.metadata.message_type,
                       group_id=msg.metadata.group_id)

    def __getattr__(self, name):
        return getattr(self._grid, name)


def slots_needed(cfg, n_users: int) -> int:
    """Simulation nodes a ``lazy-clients`` run needs: the larger of the training and
    evaluation samples, so that every message of a round has a node of its own."""
    return max(per_round(cfg.clients_per_round, n_users), per_round(cfg.eval_clients, n_users))
