"""Client mods: Flower's ``fixedclipping_mod``, applied only where it applies; and, in a
simulation, the name of the Ray node that ran the client (:func:`simulation_node_mod`).

Flower's mod expects the clipping norm in every train message and divides by the update's
norm. fedrec's ClientApp serves runs with and without client-side clipping, and replies
that take no part in a round (declines) carry no arrays; so this mod composes Flower's
rather than forking it: it runs the inner app first, then hands that reply to
``fixedclipping_mod`` when (and only when) the server asked for clipping and the reply
carries a non-zero update (an all-zero update is within any norm already, and Flower's
``clip_inputs_inplace`` would divide by zero).
"""

from __future__ import annotations

import sys

import numpy as np
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp.mod import fixedclipping_mod
from flwr.common.constant import MessageType
from flwr.common.differential_privacy_constants import KEY_CLIPPING_NORM

from fedrec.shared.runinfo import RAY_NODE_ID, SIMULATION_NODE_KEY


def _update_is_zero(sent: Message, reply: Message) -> bool:
    before = next(iter(sent.content.array_records.values())).to_numpy_ndarrays()
    after = next(iter(reply.content.array_records.values())).to_numpy_ndarrays()
    return all(np.array_equal(a, b) for a, b in zip(before, after))


def optional_fixedclipping_mod(msg: Message, context: Context, call_next) -> Message:
    """``fixedclipping_mod`` for train messages that ask for it (see module docstring)."""
    wants_clip = (msg.metadata.message_type == MessageType.TRAIN
                  and any(KEY_CLIPPING_NORM in c for c in msg.content.config_records.values()))
    reply = call_next(msg, context)
    if (not wants_clip or reply.has_error() or not reply.content.array_records
            or _update_is_zero(msg, reply)):
        return reply
    return fixedclipping_mod(msg, context, lambda _msg, _ctx: reply)


def ray_node_id() -> str | None:
    """Hex id of the Ray node this process runs on, or None outside Ray.

    Only a process where Ray is already imported and initialised has one (a simulation's
    worker); a deployed device never imports Ray, and this function does not either.
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_node_id())


def simulation_node_mod(msg: Message, context: Context, call_next) -> Message:
    """Put the Ray node that ran this client into its reply (``SIMULATION_NODE_KEY``).

    Simulation diagnostics: which machine of a Ray cluster ran each client (the server
    counts replies per node into ``simulation-nodes.json`` and takes the record off).
    A Ray node id names a simulation worker, not a user. Outermost mod, so SecAgg+ and
    clipping never see the record. Replies outside Ray are returned unchanged.
    """
    reply = call_next(msg, context)
    node = ray_node_id()
    if node is not None and not reply.has_error():
        reply.content[SIMULATION_NODE_KEY] = ConfigRecord({RAY_NODE_ID: node})
    return reply
