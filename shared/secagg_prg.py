"""A full-entropy mask generator for Flower 1.23's SecAgg+ (issue #22, item 5).

Why: Flower's ``pseudo_rand_gen`` (flwr/common/secure_aggregation/secaggplus_utils.py)
folds the 256-bit key into 32 bits (XOR of its 4-byte words) and seeds numpy's MT19937
``RandomState`` with it, so every mask has at most 32 bits of seed entropy; it also draws
``randint(0, M - 1)``, in ``[0, M - 2]``. :func:`full_seed_rand_gen` is the same interface
keyed by the whole seed: SHAKE-256 (hashlib) of a domain tag and the seed, read as
little-endian 64-bit words and reduced modulo ``M`` (a power of two dividing 2^64, so the
masks are uniform on ``[0, M)``, no bias).

:func:`install` replaces the name in the two Flower modules that imported it (the
device's ``secaggplus_mod`` and the server's ``SecAggPlusWorkflow``), for the whole
process. Both sides of a protocol run must use the same generator: every fedrec app that
runs SecAgg+ installs it on import, the statistics release apps
(``fedrec.client.release_app``, ``fedrec.server.release_app``) and DP-FedAvg's
(``fedrec.client.app``, ``fedrec.server.app``), so a server and its devices always agree.
"""

from __future__ import annotations

import hashlib
import importlib
import math

import numpy as np

#: Domain separation of the masks' stream.
TAG = b"fedrec secagg+ mask v1\x00"
NAME = "shake-256"
#: What a manifest records when Flower's own generator is in use.
FLOWER_NAME = "flower-mt19937"


def full_seed_rand_gen(seed: bytes, num_range: int,
                       dimensions_list: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Masks uniform on ``[0, num_range)`` (int64 arrays of the given shapes; a shape ()
    gives a 0-d array), determined by every bit of ``seed``. ``num_range``: a power of
    two <= 2^63."""
    if num_range < 2 or num_range & (num_range - 1) or num_range > 2 ** 63:
        raise ValueError(f"mask range must be a power of two in [2, 2^63], got {num_range}")
    sizes = [math.prod(d) for d in dimensions_list]
    words = np.frombuffer(hashlib.shake_256(TAG + bytes(seed)).digest(8 * sum(sizes)),
                          dtype="<u8")
    words = (words & np.uint64(num_range - 1)).astype(np.int64)
    out, start = [], 0
    for dims, size in zip(dimensions_list, sizes):
        out.append(words[start:start + size].reshape(dims))
        start += size
    return out


#: The Flower modules that import ``pseudo_rand_gen`` by name (the device's mod and the
#: server's workflow). Imported by module path: the package ``...secure_aggregation``
#: exports the *function* ``secaggplus_mod`` under the submodule's name.
MODULES = ("flwr.client.mod.secure_aggregation.secaggplus_mod",
           "flwr.server.workflow.secure_aggregation.secaggplus_workflow")


def install() -> None:
    """Make Flower's SecAgg+ mod and workflow (this process) draw masks with
    :func:`full_seed_rand_gen`."""
    for name in MODULES:
        importlib.import_module(name).pseudo_rand_gen = full_seed_rand_gen


def installed() -> bool:
    """Whether both Flower modules use :func:`full_seed_rand_gen`."""
    return all(importlib.import_module(name).pseudo_rand_gen is full_seed_rand_gen
               for name in MODULES)


def generator_name() -> str:
    """The manifest's ``mask_generator``: :data:`NAME` when installed, else
    :data:`FLOWER_NAME`."""
    return NAME if installed() else FLOWER_NAME
