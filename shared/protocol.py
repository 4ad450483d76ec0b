"""The wire protocol of federated training: every key, record and setting that the
server and the devices exchange, spelled once.

``server/`` and ``client/`` both import from here and never from each other, so a key
cannot drift between the side that writes it and the side that reads it. What lives
here: the names of a Message's records, the round config the server sends
(:class:`LocalSettings` and the user-level budget so far), what a device replies (metric
names, a decline, the DpEvent it ran), the device's own node-config keys, and the tags of
every seeded random stream of a round. The statistics releases' queries are in
``fedrec.shared.protocol_releases``.

Every value is what went on the wire before this module existed (same keys, same
types), so runs, checkpoints and deployed devices are unaffected.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, fields

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedrec.shared import privacy

# ----- the records of a Message's content (Flower's names: its strategies read them) -----
ARRAYS, METRICS, CONFIG = "arrays", "metrics", "config"

# ----- node config: a device's own settings, set where it is launched, never by the server --
NODE_PARTITION_ID = "partition-id"   # simulation: the user this node is
NODE_DEVICE_INDEX = "device-index"   # deployment: a stable number (seeds, order)
NODE_STORE_PATH = "store-path"       # deployment: the app's SDK store (fedrec.client.store)
NODE_EVENTS_PATH = "events-path"     # deployment: an events file
NODE_STATE_DIR = "state-dir"         # with events-path: where embedding and ledger live
#: true lets the device run example-level DP on randomness the server seeded (tests,
#: reproducible experiments); a deployed device refuses without it.
NODE_ALLOW_SEEDED = "allow-seeded-noise"

# ----- round config: server -> device -----
SERVER_ROUND = "server-round"
#: The server's user-level (ε, δ) so far (its ledger is public to its devices).
USER_EPSILON, USER_DELTA = "user-epsilon", "user-delta"
#: lazy-clients: the user a simulation slot node acts for in this message (fedrec.server.slots).
LAZY_USER = "partition-id"
#: SecAgg+ fit config: the global arrays' names, comma-separated, in order (legacy
#: parameters are an unnamed list).
ARRAY_NAMES = "fedrec-array-names"
#: dp = distributed, SecAgg+ fit config: what each device encodes (``fedrec.server.ddp``):
#: integer units per unit, the L2 clip of its update, its noise share's variance mu / t
#: (integer units squared), and the bits b of SecAgg+'s range [-2^(b-1), 2^(b-1)].
SKELLAM_PREFIX = "skellam-"
SKELLAM_SCALE, SKELLAM_CLIP = "skellam-scale", "skellam-clip"
SKELLAM_MU_SHARE, SKELLAM_BITS = "skellam-mu-share", "skellam-bits"

# ----- replies: device -> server -----
NUM_EXAMPLES = "num-examples"        # the aggregation weight (Flower's weighted_by_key)
TRAIN_LOSS = "train-loss"
CLIENT_SECONDS = "client-seconds"
CLIENT_EPSILON = "client-epsilon"    # the device's example-level ε so far (its ledger, RDP)
DECLINED, DECLINED_REASON = "declined", "declined-reason"
#: Reply ConfigRecord key under which a device reports the DpEvent its round ran.
DP_EVENT = "dp-event"
POSITION = "position"                # a query's answer: the device's stable position
#: Evaluation metrics, each a user's contribution (averaged with num-examples = 1 each).
EVAL_METRICS = ("hr@10", "ndcg@10", "mrr", "full_hr@10", "full_ndcg@10")
COLD_HR, COLD_USERS = "cold-hr@10", "cold-users"                  # cold-start scenario
NEW_ITEM_HR, NEW_ITEM_USERS = "new-item-hr@10", "new-item-users"  # new-items scenario

# ----- seed streams: the last word of each seeded draw's SeedSequence -----
STREAM_SERVER_NOISE = 2      # (seed, noise-seed, round, tag): server DP noise, seeded runs
STREAM_USER_INIT = 20        # (seed, user, tag): a user's initial embedding
STREAM_LOCAL_TRAIN = 21      # (seed, user, round, tag): negatives and batches of a round
STREAM_SERVE_FIT = 22        # (seed, user, round, tag): the serving fit's negatives
STREAM_DP_NOISE = 22         # (seed, noise-seed, user, round, tag): seeded DP-SGD noise key
STREAM_SCENARIO = 30         # (seed, user, round, tag): dropout
STREAM_STRAGGLER = 31        # (seed, user, tag)
STREAM_LATE_USER = 32        # (seed, user, tag)
STREAM_NEW_ITEMS = 33        # (seed, tag)
STREAM_SKELLAM_ROUNDING = 40  # (seed, noise-seed, user, round, tag): dp distributed, seeded
STREAM_SKELLAM_NOISE = 41     # (seed, noise-seed, user, round, tag): dp distributed, seeded
#: Every stream above with the layout of its SeedSequence: two streams may share a tag
#: only where their layouts differ in length (SeedSequence then hashes other entropy).
STREAMS = {
    "server-noise": (STREAM_SERVER_NOISE, ("seed", "noise-seed", "round")),
    "user-init": (STREAM_USER_INIT, ("seed", "user")),
    "local-train": (STREAM_LOCAL_TRAIN, ("seed", "user", "round")),
    "serve-fit": (STREAM_SERVE_FIT, ("seed", "user", "round")),
    "dp-noise": (STREAM_DP_NOISE, ("seed", "noise-seed", "user", "round")),
    "scenario": (STREAM_SCENARIO, ("seed", "user", "round")),
    "straggler": (STREAM_STRAGGLER, ("seed", "user")),
    "late-user": (STREAM_LATE_USER, ("seed", "user")),
    "new-items": (STREAM_NEW_ITEMS, ("seed",)),
    "skellam-rounding": (STREAM_SKELLAM_ROUNDING, ("seed", "noise-seed", "user", "round")),
    "skellam-noise": (STREAM_SKELLAM_NOISE, ("seed", "noise-seed", "user", "round")),
}
#: Phases of Flower's seeded client sampling, (seed, round, phase) (fedrec.server.strategy).
SAMPLE_TRAIN, SAMPLE_EVALUATE = 0, 1


# ----- arrays -----
def to_record(weights: dict[str, np.ndarray]) -> ArrayRecord:
    """Named arrays -> ArrayRecord (names travel with the arrays, order preserved)."""
    return ArrayRecord(OrderedDict((k, Array.from_numpy_ndarray(v)) for k, v in weights.items()))


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    """ArrayRecord -> named arrays, in the record's order."""
    return {k: record[k].numpy() for k in record.keys()}


# ----- what the server sends -----
@dataclass(frozen=True)
class LocalSettings:
    """One round's local settings, sent by the server in the round's config.

    The defaults live in :class:`fedrec.shared.config.RunConfig` (same field names); this is the
    part of it that travels to clients each round.
    """

    local_epochs: int
    batch_size: int
    learning_rate: float
    negatives: int
    reconstruction_steps: int
    reconstruction_lr: float
    client_dp: bool = False
    client_noise_multiplier: float = 1.0
    client_clip: float = 1.0
    client_target_epsilon: float = 0.0
    client_delta: float = 1e-5
    noise_seed: int = 0
    uniform_weight: bool = False
    local_optimizer: str = "adam"
    local_adam_eps: float = 1e-7
    recency_decay: float = 1.0
    serve_passes: int = 0
    serve_recency_decay: float = 1.0
    serve_average: int = 1

    @classmethod
    def from_run_config(cls, cfg, server_round: int = 1) -> "LocalSettings":
        """The local part of a run config for one round: the learning rate decayed to
        ``server_round``; ``uniform_weight`` is on under user-level DP (DP-FedAvg's
        sensitivity assumes every client's update weighs the same)."""
        derived = {"client_dp": cfg.client_dp, "uniform_weight": cfg.user_dp,
                   "learning_rate": cfg.learning_rate * cfg.lr_decay ** (server_round - 1)}
        return cls(**{f.name: derived[f.name] if f.name in derived else getattr(cfg, f.name)
                      for f in fields(cls)})

    def dp_plan(self, n_rows: int) -> "DpSgdPlan | None":
        """What local DP-SGD will run this round on ``n_rows`` examples (None: no DP)."""
        if not self.client_dp or n_rows == 0:
            return None
        rate = min(1.0, self.batch_size / n_rows)
        # as tensorflow-privacy counts Poisson steps: ceil(epochs / sampling rate)
        return DpSgdPlan(self.client_noise_multiplier, self.client_clip, rate,
                         self.reconstruction_steps, math.ceil(self.local_epochs / rate))

    def to_record(self, server_round: int) -> dict:
        """Hyphenated keys plus ``server-round``, for a Flower ``ConfigRecord``."""
        out = {SERVER_ROUND: server_round}
        out.update({f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)})
        return out

    @classmethod
    def from_record(cls, record) -> "LocalSettings":
        kinds = {"int": int, "float": float, "bool": bool, "str": str}
        return cls(**{f.name: kinds[f.type](record[f.name.replace("_", "-")])
                      for f in fields(cls)})


@dataclass(frozen=True)
class DpSgdPlan:
    """One round of local DP-SGD, fixed before it runs (the mechanism that is accounted).

    Sampling, as trained and as accounted: every step draws a Poisson batch in which each
    of the client's examples (one positive with its sampled negatives) takes part with
    probability ``rate`` = batch-size / examples; ``reconstruction_steps`` such steps fit
    the private user embedding, then ``training_steps`` = ceil(local epochs / rate) (as
    tensorflow-privacy counts Poisson steps) train the global weights. Each step clips
    every example's gradient (over the weights the step updates: the user embedding,
    then the global group) to ``clip`` in L2 (tf-privacy's fast gradient clipping), adds
    Gaussian noise of std ``noise_multiplier * clip`` to the sum and divides by the
    expected batch size. All steps touch the data, so all count.
    """

    noise_multiplier: float
    clip: float
    rate: float
    reconstruction_steps: int
    training_steps: int

    @property
    def steps(self) -> int:
        return self.reconstruction_steps + self.training_steps

    def event(self):
        """The round's DpEvent: ``steps`` x Poisson(rate) o Gaussian(noise multiplier)."""
        return privacy.dpsgd_event(self.noise_multiplier, self.rate, self.steps)


def round_config(settings: LocalSettings, server_round: int,
                 user_budget: tuple[float, float] | None = None) -> ConfigRecord:
    """The config of round ``server_round``: the local settings and, under user-level DP,
    the server's (ε, δ) so far (``user_budget``)."""
    record = ConfigRecord(settings.to_record(server_round))
    if user_budget is not None:
        record[USER_EPSILON], record[USER_DELTA] = float(user_budget[0]), float(user_budget[1])
    return record


def server_round(config) -> int:
    """The round number a round config names."""
    return int(config[SERVER_ROUND])


def user_budget(config) -> tuple[float, float] | None:
    """The server's user-level (ε, δ) as a round config reports it (None: not sent)."""
    if USER_EPSILON not in config:
        return None
    return float(config[USER_EPSILON]), float(config[USER_DELTA])


def with_array_names(config: dict, names: list[str]) -> dict:
    """A SecAgg+ fit config: ``config`` plus the arrays' names in order."""
    return {**config, ARRAY_NAMES: ",".join(names)}


def split_array_names(config: dict) -> tuple[list[str], dict]:
    """Inverse of :func:`with_array_names`: (the names, the rest of the config)."""
    return (str(config[ARRAY_NAMES]).split(","),
            {k: v for k, v in config.items() if k != ARRAY_NAMES})


# ----- what a device replies -----
def decline_content(reason: str, seconds: float, epsilon: float | None = None) -> RecordDict:
    """A reply that takes no part in the round: no arrays, the reason in words, and the
    device's example-level ε when it keeps a ledger."""
    metrics = MetricRecord({DECLINED: 1, NUM_EXAMPLES: 0, CLIENT_SECONDS: seconds})
    if epsilon is not None:
        metrics[CLIENT_EPSILON] = epsilon
    return RecordDict({METRICS: metrics, CONFIG: ConfigRecord({DECLINED_REASON: reason})})


def is_declined(msg: Message) -> bool:
    """Whether a reply declined its round (:func:`decline_content`)."""
    return (not msg.has_error() and METRICS in msg.content
            and int(msg.content[METRICS].get(DECLINED, 0)) == 1)


def declined_reason(content: RecordDict, default: str = "declined") -> str:
    """The reason a declined reply gives (``default`` when it gives none)."""
    return str(content.config_records.get(CONFIG, {}).get(DECLINED_REASON, default))


def with_dp_event(content: dict, event) -> dict:
    """Reply ``content`` plus the DpEvent the device's round ran (canonical JSON)."""
    return {**content, CONFIG: ConfigRecord({DP_EVENT: privacy.event_json(event)})}


def reported_event(content: RecordDict) -> str | None:
    """The DpEvent JSON a reply reports (None: it reports none)."""
    config = content.config_records.get(CONFIG)
    return None if config is None or DP_EVENT not in config else str(config[DP_EVENT])


def position_content(position: int) -> RecordDict:
    """A device's answer to the position query (its partition id or device index)."""
    return RecordDict({METRICS: MetricRecord({POSITION: position})})


def position_of(content: RecordDict) -> int:
    return int(content[METRICS][POSITION])
