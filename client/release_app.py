"""The Flower ClientApp of a statistics-release run: one user's device.

Two query actions, both answered from the device's own data
(``client.releases``): ``query.contribute`` returns its contribution to the statistic the
server names (popularity vector, or head positions for the co-occurrence), and
``query.recommend`` takes the release, ranks the device's held-out item on the device and
returns its metrics (a simulation's measurement: a deployment would not report them).
"""

from __future__ import annotations

from flwr.app import (Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord,
                      RecordDict)
from flwr.clientapp import ClientApp

from client import releases as device
from shared import knn
from shared.federated_data import ClientData, load_federation
from shared.release_config import ReleaseConfig

app = ClientApp()


def device_data(context: Context) -> tuple[ReleaseConfig, ClientData]:
    """This simulated device's config and data (``partition-id`` picks the user)."""
    cfg = ReleaseConfig.from_mapping(dict(context.run_config))
    if "partition-id" not in context.node_config:
        raise RuntimeError("this ClientApp needs node_config['partition-id'] (simulation)")
    fed = load_federation(cfg.dataset, cfg.seed, cfg.synthetic_users, cfg.synthetic_items)
    data = fed.client(int(context.node_config["partition-id"]))
    return cfg, data.for_validation() if cfg.holdout == "validation" else data


@app.query("contribute")
def contribute(msg: Message, context: Context) -> Message:
    _, data = device_data(context)
    config = msg.content["config"]
    request = {key: config[key] for key in config.keys() if key != "statistic"}
    if "arrays" in msg.content and "head" in msg.content["arrays"]:
        request["head"] = msg.content["arrays"]["head"].numpy()
    vector = device.contribution(str(config["statistic"]), request, data)
    arrays = ArrayRecord({"contribution": Array.from_numpy_ndarray(vector)})
    return Message(RecordDict({"arrays": arrays}), reply_to=msg)


@app.query("recommend")
def recommend(msg: Message, context: Context) -> Message:
    _, data = device_data(context)
    arrays = msg.content["arrays"]
    sim, ease = arrays["similarity"].numpy(), arrays["ease"].numpy()
    released = knn.Released(arrays["popularity"].numpy(), arrays["head"].numpy(),
                            None if sim.size == 0 else sim, None if ease.size == 0 else ease)
    settings = knn_settings(msg.content["config"])
    metrics = device.evaluate(data, released, settings) if data.evaluable else {}
    return Message(RecordDict({"metrics": MetricRecord({**metrics,
                                                        "evaluated": int(data.evaluable)})}),
                   reply_to=msg)


def knn_settings(config: ConfigRecord) -> knn.KnnSettings:
    return knn.KnnSettings(rank=int(config["rank"]), alpha=float(config["alpha"]),
                           neighbours=int(config["neighbours"]), decay=float(config["decay"]),
                           knn_weight=float(config["knn-weight"]), top_k=int(config["top-k"]),
                           ease_lambda=float(config["ease-lambda"]),
                           ease_weight=float(config["ease-weight"]))
