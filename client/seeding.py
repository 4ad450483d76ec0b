"""Whether a device accepts DP randomness the server seeded (its own node config decides).

Its own module so that the ClientApp (``fedrec.client.app``, local DP-SGD) and the SecAgg+
mod (``fedrec.client.secagg``, distributed Skellam noise) ask the same question the same way.
"""

from __future__ import annotations

from fedrec.shared.protocol import NODE_ALLOW_SEEDED, NODE_EVENTS_PATH, NODE_STORE_PATH


def deployed(node_config) -> bool:
    """A deployed device names its own data (an SDK store or an events file)."""
    return NODE_STORE_PATH in node_config or NODE_EVENTS_PATH in node_config


def allows_seeded_noise(node_config) -> bool:
    """Whether this device accepts a round whose DP randomness the server seeded.

    Its own node config decides (``allow-seeded-noise``). Without that key a deployed
    device (``store-path`` or ``events-path``) refuses, and a simulated one (only a
    ``partition-id``) accepts: the simulation's operator runs the devices and holds the
    seed anyway.
    """
    if NODE_ALLOW_SEEDED in node_config:
        value = node_config[NODE_ALLOW_SEEDED]
        return value.strip().lower() in ("true", "1", "yes") if isinstance(value, str) \
            else bool(value)
    return not deployed(node_config)
