"""Reply validation: what a client sends must be a well-formed update before it counts.

A faulty or malicious client can reply with anything. Before aggregation every update is
checked against the arrays the server sent: the same names, shapes and dtypes, only
finite numbers, a non-zero change (an all-zero update carries nothing, and Flower's
clipping divides by the update norm) and, if configured, an L2 norm of the change no
larger than ``max-update-norm``; under user-level DP a weight of exactly 1. A rejected reply is logged and counted; it never reaches
the strategy, so it cannot move the global model.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Message

from fedrec.shared.protocol import ARRAYS, METRICS, NUM_EXAMPLES


def check_update(reply: Message, sent: dict[str, np.ndarray], max_norm: float = 0.0,
                 unit_weight: bool = False) -> str | None:
    """Why ``reply`` is not a usable update of ``sent`` (None: it is).

    ``sent``: the global arrays the server sent, decoded once per round by the caller.

    ``unit_weight``: the reply must weigh exactly 1 (``num-examples``), as user-level DP's
    equal-weight average assumes; a client cannot buy itself more influence.
    """
    if ARRAYS not in reply.content:
        return "no arrays"
    if unit_weight and (METRICS not in reply.content
                        or float(reply.content[METRICS].get(NUM_EXAMPLES, -1)) != 1.0):
        return f"weight ({NUM_EXAMPLES}) is not 1 under user-level DP"
    got = reply.content[ARRAYS]
    if list(got.keys()) != list(sent.keys()):
        return "array names differ from the global model's"
    squared = 0.0
    for name in sent.keys():
        try:
            new = got[name].numpy()
        except Exception as err:  # undecodable bytes from a broken client
            return f"{name}: unreadable ({type(err).__name__})"
        old = sent[name]
        if new.shape != old.shape or new.dtype != old.dtype:
            return f"{name}: {new.dtype}{list(new.shape)}, expected {old.dtype}{list(old.shape)}"
        if not np.isfinite(new).all():
            return f"{name}: NaN or Inf"
        squared += float(np.sum((new.astype(np.float64) - old) ** 2))
    if squared == 0.0:
        return "all-zero update"
    if max_norm and np.sqrt(squared) > max_norm:
        return f"update norm {np.sqrt(squared):.3g} > max-update-norm {max_norm:g}"
    return None
