"""The Flower ClientApp of a statistics-release run: one user's device.

Two query actions, both answered from the device's own data
(``fedrec.client.releases``): ``query.contribute`` returns its contribution to the statistic the
server names (popularity vector, or head positions for the co-occurrence), and
``query.recommend`` takes the release, ranks the device's held-out item on the device and
returns its metrics (a simulation's measurement: a deployment would not report them).

With distributed noise in the Flower engine the contributions travel through SecAgg+
instead: Flower's ``secaggplus_mod`` runs the protocol's train messages and calls the
train handler for the fit stage, which answers with the device's centered noisy share
(``fedrec.client.release_secagg``).
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp

from fedrec.client import release_secagg
from fedrec.client import releases as device
from fedrec.shared import protocol_releases as wire
from fedrec.shared.content import ItemContent
from fedrec.shared.federated_data import ClientData, load_federation
from fedrec.shared.protocol import NODE_PARTITION_ID
from fedrec.shared.release_config import ReleaseConfig
from fedrec.shared.secagg_prg import install as install_full_seed_masks

install_full_seed_masks()       # SecAgg+ masks keyed by the whole seed (fedrec.shared.secagg_prg)
app = ClientApp()


def device_data(context: Context) -> tuple[ReleaseConfig, ClientData, ItemContent]:
    """This device's config, data (``partition-id`` picks the user: the simulation's, or
    a deployment SuperNode's node config) and the catalogue's public metadata."""
    cfg, data, fed = _device(context)
    return cfg, data, ItemContent.of(fed.inter)


def _device(context: Context):
    """(config, this device's data, the federation) of ``partition-id``'s user."""
    cfg = ReleaseConfig.from_mapping(dict(context.run_config))
    if NODE_PARTITION_ID not in context.node_config:
        raise RuntimeError(f"this ClientApp needs node_config['{NODE_PARTITION_ID}'] (simulation; "
                           f"a deployment's SuperNode: --node-config \"{NODE_PARTITION_ID}=<u>\")")
    fed = load_federation(cfg.dataset, cfg.seed, cfg.synthetic_users, cfg.synthetic_items)
    data = fed.client(int(context.node_config[NODE_PARTITION_ID]))
    data = data.for_validation() if cfg.holdout == "validation" else data
    return cfg, data, fed


@app.train(mods=[secaggplus_mod])
def secagg_share(msg: Message, context: Context) -> Message:
    """The fit stage of a SecAgg+ release: this device's centered noisy share."""
    cfg, data, fed = _device(context)
    return release_secagg.answer(msg, context, cfg, data,
                                 int(context.node_config[NODE_PARTITION_ID]), fed.n_clients)


@app.query(wire.CONTRIBUTE_ACTION)
def contribute(msg: Message, context: Context) -> Message:
    _, data, _ = device_data(context)
    statistic, request = wire.contribute_request(msg.content)
    vector = device.contribution(statistic, request, data)
    return Message(wire.contribution_content(vector), reply_to=msg)


@app.query(wire.RECOMMEND_ACTION)
def recommend(msg: Message, context: Context) -> Message:
    _, data, content = device_data(context)
    released, settings = wire.recommend_request(msg.content)
    metrics = device.evaluate(data, released, settings, content) if data.evaluable else {}
    return Message(wire.evaluation_content(metrics, data.evaluable), reply_to=msg)
