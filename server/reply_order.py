"""A run-independent order of replies, for aggregation that repeats to the last bit.

Replies arrive in whatever order clients finish: on a local Ray in whatever order its
workers do, on a Ray cluster in whatever order its nodes do. Flower's aggregation sums
floats in reply order, and float addition is not associative, so the same updates in
another order give another last bit; the clients' local Adam steps then amplify it over
rounds. Sorting replies by their own content before Flower aggregates them makes a run's
numbers independent of scheduling: a run on a cluster equals the same run on one machine.
"""

from __future__ import annotations

import hashlib

from flwr.app import Message

from fedrec.shared.protocol import CLIENT_SECONDS, METRICS, NUM_EXAMPLES, TRAIN_LOSS


def train_order(msg: Message) -> tuple:
    """Sort key of training replies: weight, loss, then a digest of the arrays (ties
    happen: an audit run's canaries all report loss 0 and the same weight); failures
    last. Equal keys are equal replies, so their order cannot change a sum."""
    if msg.has_error() or METRICS not in msg.content:
        return (1, 0.0, 0.0, "")
    m = msg.content[METRICS]
    return (0, float(m.get(NUM_EXAMPLES, 0)), float(m.get(TRAIN_LOSS, 0.0)),
            arrays_digest(msg))


def arrays_digest(msg: Message) -> str:
    """SHA-256 over a reply's arrays (names, dtypes, shapes, bytes); "" without any."""
    digest = hashlib.sha256()
    for name, record in msg.content.array_records.items():
        for key in record.keys():
            array = record[key]
            digest.update(repr((name, key, array.dtype, array.shape)).encode())
            digest.update(array.data)
    return digest.hexdigest() if msg.content.array_records else ""


def eval_order(msg: Message) -> tuple:
    """A run-independent order for the evaluation average (Flower's weighted mean sums
    in reply order): by every metric but the timing one; ties are equal records."""
    if msg.has_error() or METRICS not in msg.content:
        return (1, ())
    return (0, tuple(sorted((k, v) for k, v in msg.content[METRICS].items()
                            if k != CLIENT_SECONDS)))
