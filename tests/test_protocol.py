"""The wire protocol (``fedrec.shared.protocol``, ``fedrec.shared.protocol_releases``): the keys on the
wire are the ones devices already speak, and every encoder has its decoder."""

from __future__ import annotations

import numpy as np
from flwr.app import Message, RecordDict

from fedrec.shared import knn, privacy
from fedrec.shared import protocol as p
from fedrec.shared import protocol_releases as wire
from fedrec.shared.config import RunConfig

#: What went on the wire before the protocol module: a deployed device reads these.
SETTINGS_KEYS = {"server-round", "local-epochs", "batch-size", "learning-rate", "negatives",
                 "reconstruction-steps", "reconstruction-lr", "client-dp",
                 "client-noise-multiplier", "client-clip", "client-target-epsilon",
                 "client-delta", "noise-seed", "uniform-weight", "local-optimizer",
                 "local-adam-eps", "recency-decay", "serve-passes", "serve-recency-decay",
                 "serve-average"}


def test_keys_on_the_wire_are_unchanged():
    assert (p.ARRAYS, p.METRICS, p.CONFIG) == ("arrays", "metrics", "config")
    assert (p.USER_EPSILON, p.USER_DELTA, p.LAZY_USER, p.ARRAY_NAMES) == (
        "user-epsilon", "user-delta", "partition-id", "fedrec-array-names")
    assert (p.NUM_EXAMPLES, p.TRAIN_LOSS, p.CLIENT_SECONDS, p.CLIENT_EPSILON, p.DECLINED,
            p.DECLINED_REASON, p.DP_EVENT, p.POSITION) == (
        "num-examples", "train-loss", "client-seconds", "client-epsilon", "declined",
        "declined-reason", "dp-event", "position")
    assert (p.NODE_PARTITION_ID, p.NODE_DEVICE_INDEX, p.NODE_STORE_PATH, p.NODE_EVENTS_PATH,
            p.NODE_STATE_DIR, p.NODE_ALLOW_SEEDED) == (
        "partition-id", "device-index", "store-path", "events-path", "state-dir",
        "allow-seeded-noise")
    assert (wire.CONTRIBUTE, wire.RECOMMEND) == ("query.contribute", "query.recommend")


def test_round_config_carries_the_settings_and_the_user_budget():
    cfg = RunConfig(dp="server", learning_rate=0.1, lr_decay=0.5)
    settings = p.LocalSettings.from_run_config(cfg, 3)
    record = p.round_config(settings, 3, (1.25, 1e-5))
    assert set(record.keys()) == SETTINGS_KEYS | {"user-epsilon", "user-delta"}
    assert p.LocalSettings.from_record(record) == settings
    assert settings.learning_rate == 0.1 * 0.25 and settings.uniform_weight
    assert p.server_round(record) == 3 and p.user_budget(record) == (1.25, 1e-5)
    plain = p.round_config(settings, 3)
    assert set(plain.keys()) == SETTINGS_KEYS and p.user_budget(plain) is None


def test_dp_plan_counts_poisson_steps_as_tensorflow_privacy_does():
    settings = p.LocalSettings(2, 8, 0.1, 1, 3, 0.1, client_dp=True)
    plan = settings.dp_plan(20)       # rate 8/20 = 0.4: ceil(2 / 0.4) = 5 training steps
    assert (plan.rate, plan.reconstruction_steps, plan.training_steps, plan.steps) == (
        0.4, 3, 5, 8)
    assert settings.dp_plan(0) is None
    assert p.LocalSettings(2, 8, 0.1, 1, 3, 0.1).dp_plan(20) is None


def test_arrays_keep_names_and_order():
    weights = {"b": np.arange(3, dtype=np.float32), "a": np.ones((2, 2), np.float64)}
    back = p.from_record(p.to_record(weights))
    assert list(back) == ["b", "a"]
    assert all(np.array_equal(back[k], weights[k]) and back[k].dtype == weights[k].dtype
               for k in weights)


def test_decline_and_reported_event_round_trip():
    declined = Message(p.decline_content("no data", 0.5, epsilon=0.7), dst_node_id=1,
                       message_type="train")
    assert p.is_declined(declined) and p.declined_reason(declined.content) == "no data"
    assert dict(declined.content["metrics"]) == {"declined": 1, "num-examples": 0,
                                                 "client-seconds": 0.5, "client-epsilon": 0.7}
    plan = p.LocalSettings(1, 4, 0.1, 1, 0, 0.1, client_dp=True).dp_plan(8)
    content = RecordDict(p.with_dp_event({"arrays": p.to_record({"w": np.ones(2)})},
                                         plan.event()))
    assert p.reported_event(content) == privacy.event_json(plan.event())
    assert p.reported_event(RecordDict({})) is None
    assert p.position_of(p.position_content(7)) == 7


def test_array_names_travel_through_the_secagg_fit_config():
    config = p.with_array_names({"server-round": 2}, ["dense/kernel", "dense/bias"])
    assert config["fedrec-array-names"] == "dense/kernel,dense/bias"
    assert p.split_array_names(config) == (["dense/kernel", "dense/bias"], {"server-round": 2})


def test_streams_that_share_a_tag_differ_in_layout():
    keys = [(tag, len(layout)) for tag, layout in p.STREAMS.values()]
    assert len(keys) == len(set(keys))
    assert p.STREAMS["dp-noise"][0] == p.STREAMS["serve-fit"][0] == 22   # as before


def test_release_queries_round_trip():
    head = np.array([4, 1, 7])
    statistic, request = wire.contribute_request(
        wire.contribute_content("cooccurrence", wire.cooccurrence_request(head, 2)))
    assert statistic == "cooccurrence" and request["cap"] == 2
    assert np.array_equal(request["head"], head)
    statistic, request = wire.contribute_request(
        wire.contribute_content("popularity", wire.popularity_request(0.9, 0)))
    assert (statistic, request) == ("popularity", {"decay": 0.9, "cap": 0, "bounded": 1})
    _, request = wire.contribute_request(
        wire.contribute_content("popularity", wire.popularity_request(1.0, 0, bounded=False)))
    assert request["bounded"] == 0
    vector = np.array([0.5, 0.25])
    assert np.array_equal(wire.contribution_of(wire.contribution_content(vector)), vector)

    settings = knn.KnnSettings(rank=3, alpha=0.25, neighbours=5, decay=0.8, knn_weight=2.0,
                               top_k=4, ease_lambda=10.0, ease_weight=3.0)
    released = knn.Released(np.arange(5.0), np.array([1, 3]), None)
    back, got = wire.recommend_request(wire.recommend_content(released, settings))
    assert got == settings and back.similarity is None and back.ease is None
    with_ease = knn.Released(np.arange(5.0), np.array([1, 3]), np.eye(2), np.ones((2, 2)))
    back, _ = wire.recommend_request(wire.recommend_content(with_ease, settings))
    assert np.array_equal(back.ease, with_ease.ease)
    assert np.array_equal(back.popularity, released.popularity)
    assert np.array_equal(back.head, released.head)

    assert wire.evaluation_of(wire.evaluation_content({"hr@10": 1.0}, True)) == {"hr@10": 1.0}
    assert wire.evaluation_of(wire.evaluation_content({}, False)) is None
