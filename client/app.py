"""The Flower ClientApp: one user's device.

Receives the global weights, runs Federated Reconstruction locally (``fedrec.client.local``),
replies with the *global* weight group only. The private user embedding lives in the
client's own storage between rounds (``fedrec.client.state.PrivateStore``: a versioned file per
user under ``client-state-dir``) and is never put into a reply. A file rather than
Flower's in-memory ``context.state``: it survives a restart of the simulation, which is
what makes ``--resume`` give the same results as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import time

import numpy as np
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import MessageType

from fedrec.client.local import KEY_BITS, evaluate_scores, get_local_model
from fedrec.client.mods import optional_fixedclipping_mod, simulation_node_mod
from fedrec.client.scenarios import is_late, new_items, released, scenario
from fedrec.client.secagg import secagg_mod
from fedrec.client.seeding import allows_seeded_noise
from fedrec.client.seeding import deployed as _deployed
from fedrec.client.state import LedgerStore, PrivateStore
from fedrec.client.store import EventStore, StoreEmbedding, StoreLedger
from fedrec.shared import canary
from fedrec.shared.catalogue import device_federation, load_catalogue, load_device
from fedrec.shared.config import RunConfig
from fedrec.shared.federated_data import ClientData, Federation, federation_of
from fedrec.shared.protocol import (
    ARRAYS,
    CLIENT_EPSILON,
    CLIENT_SECONDS,
    COLD_HR,
    COLD_USERS,
    CONFIG,
    EVAL_METRICS,
    LAZY_USER,
    METRICS,
    NEW_ITEM_HR,
    NEW_ITEM_USERS,
    NODE_ALLOW_SEEDED,
    NODE_DEVICE_INDEX,
    NODE_EVENTS_PATH,
    NODE_PARTITION_ID,
    NODE_STATE_DIR,
    NODE_STORE_PATH,
    NUM_EXAMPLES,
    STREAM_DP_NOISE,
    STREAM_LOCAL_TRAIN,
    STREAM_SERVE_FIT,
    TRAIN_LOSS,
    LocalSettings,
    decline_content,
    from_record,
    is_declined,
    position_content,
    server_round,
    to_record,
    user_budget,
    with_dp_event,
)
from fedrec.shared.secagg_prg import install as install_full_seed_masks

install_full_seed_masks()       # SecAgg+ masks keyed by the whole seed (fedrec.shared.secagg_prg)
# SecAgg+ masks what the clipping mod left (fedrec.client.secagg); outside both, a simulated
# client names its Ray node (diagnostics the server takes off the reply)
app = ClientApp(mods=[simulation_node_mod, secagg_mod, optional_fixedclipping_mod])


def _setup(msg: Message, context: Context) -> tuple[RunConfig, Federation, ClientData]:
    """This device's config and data.

    Simulation: ``partition-id`` in the node config picks one user of the run's dataset.
    Deployment, with the shared ``catalogue`` in the run config and ``device-index`` (a
    stable number: seeds and order) in the node config: either ``store-path``, the app's
    SDK store (``fedrec.client.store.EventStore``: events in; embedding, ledger and the newest
    global model kept there), or ``events-path`` (an events file) with an optional
    ``state-dir`` for the embedding and ledger files.
    """
    cfg = RunConfig.from_mapping(dict(context.run_config), source="run config")
    node = context.node_config
    if _deployed(node):
        if not cfg.catalogue:
            raise RuntimeError(f"a deployed device ({NODE_STORE_PATH} or {NODE_EVENTS_PATH}) "
                               "needs 'catalogue' in the run config")
        if NODE_STORE_PATH in node:   # an app's SDK store: events, embedding, ledger, model
            catalogue = load_catalogue(cfg.catalogue)
            with EventStore(str(node[NODE_STORE_PATH])) as store:
                events = store.events()
            events = events[events["item_id"].isin(catalogue.item_ids.astype(str))]
            fed = device_federation(events, catalogue, cfg.seed)
        else:
            if NODE_STATE_DIR in node:
                cfg = cfg.replace(client_state_dir=str(node[NODE_STATE_DIR]))
            fed = load_device(str(node[NODE_EVENTS_PATH]), cfg.catalogue, cfg.seed)
        data = fed.client(0, stream_user=int(node.get(NODE_DEVICE_INDEX, 0)))
        return cfg, fed, held_out(cfg, data)
    config = msg.content[CONFIG] if CONFIG in msg.content else {}
    if LAZY_USER in config:   # lazy-clients: this simulation node acts for the user named
        user = int(config[LAZY_USER])
    elif NODE_PARTITION_ID in node:
        user = int(node[NODE_PARTITION_ID])
    else:
        raise RuntimeError(f"this ClientApp needs node_config['{NODE_PARTITION_ID}'] "
                           f"(simulation) or ['{NODE_EVENTS_PATH}'] (deployment)")
    fed = federation_of(cfg)
    return cfg, fed, held_out(cfg, fed.client(user))


def held_out(cfg: RunConfig, data: ClientData) -> ClientData:
    """The device's data as the run's ``holdout`` asks: as is (the test item held out),
    or its validation view (``ClientData.for_validation``) for choosing settings."""
    return data.for_validation() if cfg.holdout == "validation" else data


def _settings(msg: Message) -> LocalSettings:
    """Local settings come from the round's config sent by the server."""
    return LocalSettings.from_record(msg.content[CONFIG])


def _stores(cfg: RunConfig, context: Context, data: ClientData):
    """Where this device keeps its embedding and ledger: the SDK's SQLite store
    (``store-path``, which also keeps the latest global model) or per-user files."""
    if NODE_STORE_PATH in context.node_config:
        store = EventStore(str(context.node_config[NODE_STORE_PATH]))
        return StoreEmbedding(store), StoreLedger(store), store
    return (PrivateStore(cfg.client_state_root, data.user),
            LedgerStore(cfg.client_state_root, data.user), None)


def _load_local(msg: Message, cfg: RunConfig, fed: Federation, data: ClientData, max_round: int,
                store, private: dict[str, np.ndarray] | None = None):
    """The worker's model holding the server's global weights and this user's embedding
    (``private``, else the stored one of a round <= ``max_round``)."""
    model = get_local_model(cfg.model, fed.item_features)
    model.load(from_record(msg.content[ARRAYS]),
               store.load(max_round) if private is None else private, (cfg.seed, data.user))
    return model


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Tell the server this device's stable position (simulation: its partition id).

    Node ids are random per launch; the server orders nodes by this number before it
    samples, so that a seed picks the same users in every launch and after a resume.
    """
    node = context.node_config
    position = int(node.get(NODE_PARTITION_ID, node.get(NODE_DEVICE_INDEX, -1)))
    return Message(content=position_content(position), reply_to=msg)


def decline(msg: Message, reason: str, start: float, epsilon: float | None = None) -> Message:
    """A reply that takes no part in this round: no arrays, the reason in words."""
    return Message(content=decline_content(reason, time.perf_counter() - start, epsilon),
                   reply_to=msg)


def release_key(msg: Message, settings: LocalSettings, seed: int, data: ClientData,
                private: dict[str, np.ndarray] | None) -> str | None:
    """Digest of everything a seeded DP round's output is a function of (None: secret):
    the seeds and settings, the global weights received, the device's data
    (:func:`data_digest`) and the stored embedding the round starts from (None: the
    user's seeded initial draw, a function of (seed, user)).

    Same key, same output: a replay releases nothing new (``fedrec.shared.ledger``); any other
    input gives another key, so that release is counted.
    """
    if settings.noise_seed < 0:
        return None
    digest = hashlib.sha256(repr((seed, settings.noise_seed, data.user, settings)).encode())
    _update_arrays(digest, from_record(msg.content[ARRAYS]))
    digest.update(data_digest(data).encode())
    digest.update(b"initial" if private is None else b"stored")
    _update_arrays(digest, private or {})
    return digest.hexdigest()


def data_digest(data: ClientData) -> str:
    """SHA-256 of every field of the device's data (arrays by dtype, shape and bytes)."""
    digest = hashlib.sha256()
    for f in dataclasses.fields(data):
        value = getattr(data, f.name)
        digest.update(f.name.encode())
        if isinstance(value, np.ndarray):
            _update_arrays(digest, {"": value})
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def _update_arrays(digest, arrays: dict[str, np.ndarray]) -> None:
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(repr((name, value.dtype.str, value.shape)).encode())
        digest.update(value.tobytes())


def _dp_randomness(settings: LocalSettings, seed: int, user: int, rnd: int):
    """Batch sampling rng and 128-bit noise key of local DP-SGD: OS entropy unless seeded.

    Secret: a Philox generator (its output does not give away its state) and a noise key
    of ``KEY_BITS`` = 128 bits, each from ``secrets``. Public seeds would let the server
    know which examples each Poisson batch took and subtract the noise; they are only for
    reproducible experiments (the device must allow them: :func:`allows_seeded_noise`).
    """
    if settings.noise_seed < 0:
        return (np.random.Generator(np.random.Philox(secrets.randbits(128))),
                secrets.randbits(KEY_BITS))
    rng = np.random.default_rng([seed, user, rnd, STREAM_LOCAL_TRAIN])
    noise = np.random.SeedSequence([seed, settings.noise_seed, user, rnd, STREAM_DP_NOISE])
    words = noise.generate_state(2, np.uint64)
    return rng, (int(words[0]) << 64) | int(words[1])


def canary_index(context: Context) -> int | None:
    """This simulated node's canary number (``fedrec.shared.canary``), or None for a real user.

    With ``canaries`` = k in the run config, partition ids N..N+k-1 (past the N users)
    are canary clients of an audit run.
    """
    node = context.node_config
    if NODE_PARTITION_ID not in node or not int(context.run_config.get("canaries", 0)):
        return None
    cfg = RunConfig.from_mapping(dict(context.run_config), source="run config")
    fed = federation_of(cfg)
    index = int(node[NODE_PARTITION_ID]) - fed.n_clients
    if index >= cfg.canaries:
        raise RuntimeError(f"partition {node[NODE_PARTITION_ID]}: only {fed.n_clients} users "
                           f"and {cfg.canaries} canaries")
    return index if index >= 0 else None


def canary_reply(msg: Message, context: Context, index: int) -> Message:
    """A canary's round: the global weights moved by ``clip`` along its fixed direction.

    Weighted 1 under user-level DP (like every client); otherwise by the mean training
    examples of a real client, so that it weighs what a typical user weighs.
    """
    start = time.perf_counter()
    cfg = RunConfig.from_mapping(dict(context.run_config), source="run config")
    if msg.metadata.message_type != MessageType.TRAIN:   # evaluation: no data, no weight
        return _eval_reply(msg, cfg, None, {}, False, start)
    settings = _settings(msg)
    fed = federation_of(cfg)
    weight = 1 if settings.uniform_weight else max(1, round(float(fed.train_sizes().mean())))
    moved = canary.update(from_record(msg.content[ARRAYS]), cfg.seed, index, cfg.clip)
    # Flower aggregates only replies with the same metric keys; the server leaves
    # canaries out of the train loss it logs (``fedrec.server.app``)
    metrics = MetricRecord({NUM_EXAMPLES: weight, TRAIN_LOSS: 0.0,
                            CLIENT_SECONDS: time.perf_counter() - start})
    if settings.client_dp:   # it spends no example-level budget: it holds no examples
        metrics[CLIENT_EPSILON] = 0.0
    return Message(content=RecordDict({ARRAYS: to_record(moved), METRICS: metrics}),
                   reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Reconstruct the user embedding, train the global weights, reply with those only.

    Under example-level DP every local step is DP-SGD (``LocalModel.train_dp``), the
    round's DpEvent goes into the device's ledger *before* the reply leaves, and a round
    that would push the ledger past ``client-target-epsilon`` is declined.
    """
    if (index := canary_index(context)) is not None:
        return canary_reply(msg, context, index)
    start = time.perf_counter()
    cfg, fed, data = _setup(msg, context)
    settings = _settings(msg)
    rnd = server_round(msg.content[CONFIG])
    data = released(cfg, data, rnd)
    plan = settings.dp_plan(len(data.train_items))
    if (settings.client_dp or settings.uniform_weight) and len(data.train_items) == 0:
        return decline(msg, "no local training data", start)
    if plan and settings.noise_seed >= 0 and not allows_seeded_noise(context.node_config):
        return decline(msg, f"refused: the server seeded this round's DP noise (noise-seed "
                            f"{settings.noise_seed}); this device allows that only with "
                            f"{NODE_ALLOW_SEEDED} = true in its node config", start)
    store, ledgers, sdk = _stores(cfg, context, data)
    try:
        reply = _train(msg, cfg, fed, data, settings, rnd, plan, start, store, ledgers)
        if sdk is not None:
            sdk.save_state(federation=federation_status(sdk, msg, cfg, not is_declined(reply)))
        return reply
    finally:
        if sdk is not None:
            sdk.close()


def federation_status(sdk: EventStore, msg: Message, cfg: RunConfig, trained: bool) -> dict:
    """What the device learns of the federation this round, for the app's store: the
    rounds it trained in, the server's user-level ε as reported in the round config (the
    server's ledger is public to its devices), the participation window and budget."""
    config = msg.content[CONFIG]
    status = sdk.federation()
    rounds = set(status.get("rounds_joined", []))
    if trained:
        rounds.add(server_round(config))
    status.update({"round": server_round(config), "rounds_joined": sorted(rounds),
                   "participation_window": cfg.participation_window,
                   "client_target_epsilon": cfg.client_target_epsilon or None,
                   "client_delta": cfg.client_delta})
    if (budget := user_budget(config)) is not None:
        status.update({"user_epsilon": budget[0], "user_delta": budget[1]})
    return status


def _train(msg, cfg, fed, data, settings, rnd, plan, start, store, ledgers) -> Message:
    if (reason := scenario(cfg, data.user, rnd, store)) is not None:
        return decline(msg, reason, start)
    ledger = ledgers.load(settings.client_delta) if plan else None
    private = store.load(rnd - 1)
    key = release_key(msg, settings, cfg.seed, data, private) if plan else None
    replay = key is not None and ledger.has(rnd, key)
    if plan and settings.client_target_epsilon and not replay:
        exceed, eps = ledger.would_exceed(plan.event(), settings.client_target_epsilon)
        if exceed:
            return decline(msg, f"example-level budget: this round would raise epsilon to "
                                f"{eps:.3f} > {settings.client_target_epsilon:g}", start,
                           ledger.epsilon("rdp"))
    model = _load_local(msg, cfg, fed, data, max_round=rnd - 1, store=store, private=private)
    if plan:
        rng, noise_key = _dp_randomness(settings, cfg.seed, data.user, rnd)
        loss, n = model.train_dp(data, settings, plan, rng, noise_key)
        ledger.record(rnd, plan.event(), key, seeded=settings.noise_seed >= 0)
        ledgers.save(ledger)  # spent before it is released
    else:
        rng = np.random.default_rng([cfg.seed, data.user, rnd, STREAM_LOCAL_TRAIN])
        model.reconstruct(data, settings, rng)
        loss, n = model.train_global(data, settings, rng)
    store.save(rnd, model.private_weights())
    metrics = {NUM_EXAMPLES: 1 if settings.uniform_weight else n,
               TRAIN_LOSS: 0.0 if np.isnan(loss) else loss,
               CLIENT_SECONDS: time.perf_counter() - start}
    if plan:
        metrics[CLIENT_EPSILON] = ledger.epsilon("rdp")
    content = {ARRAYS: to_record(model.global_weights()), METRICS: MetricRecord(metrics)}
    if plan:   # the event this round ran, for the server's manifest
        content = with_dp_event(content, plan.event())
    return Message(content=RecordDict(content), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Fit the served user embedding against the new global model (``serve-passes``:
    refresh the training one, or fit afresh), rank the held-out item.

    The refreshed embedding is stored as this round's *evaluation* state; training keeps
    reading the training state, so results do not depend on ``eval-every``.
    """
    if (index := canary_index(context)) is not None:
        return canary_reply(msg, context, index)
    start = time.perf_counter()
    cfg, fed, data = _setup(msg, context)
    settings = _settings(msg)
    rnd = server_round(msg.content[CONFIG])
    data = released(cfg, data, rnd)
    late = is_late(cfg, data.user)
    if late and rnd < cfg.join_round:   # not installed yet: what a new install shows
        values = evaluate_scores(fed.popularity, data) if data.evaluable else {}
        return _eval_reply(msg, cfg, data, values, late, start)
    store, _, sdk = _stores(cfg, context, data)
    try:
        model = _load_local(msg, cfg, fed, data, max_round=rnd, store=store)
        if sdk is not None:  # the newest global model, for on-device recommendations
            sdk.save_state(global_model=from_record(msg.content[ARRAYS]),
                           federation=federation_status(sdk, msg, cfg, trained=False))
        rng = np.random.default_rng([cfg.seed, data.user, rnd, STREAM_SERVE_FIT])
        model.fit_for_serving(data, settings, (cfg.seed, data.user), rng)
        # the refreshed embedding serves this evaluation; it is kept apart so that
        # training never depends on when evaluation happened
        store.save(rnd, model.private_weights(), kind="eval")
    finally:
        if sdk is not None:
            sdk.close()
    values = model.evaluate(data) if data.evaluable else {}
    return _eval_reply(msg, cfg, data, values, late, start)


def _eval_reply(msg: Message, cfg: RunConfig, data: ClientData | None, values: dict,
                late: bool, start: float) -> Message:
    """Metrics that Flower's weighted average (num-examples = 1 per evaluable user) turns
    into means over users; under the cold-start scenario also ``cold-hr@10`` and
    ``cold-users``, whose ratio is the late users' HR@10."""
    evaluable = data is not None and data.evaluable
    record = {k: values.get(k, 0.0) for k in EVAL_METRICS}
    record[NUM_EXAMPLES] = 1 if evaluable else 0
    if cfg.late_users:
        record[COLD_HR] = values.get("hr@10", 0.0) if late else 0.0
        record[COLD_USERS] = 1.0 if late and evaluable else 0.0
    if cfg.new_items:   # the user's held-out item is one released mid-run
        new = evaluable and data.test_item in new_items(cfg, data.n_items)
        record[NEW_ITEM_HR] = values.get("hr@10", 0.0) if new else 0.0
        record[NEW_ITEM_USERS] = 1.0 if new else 0.0
    record[CLIENT_SECONDS] = time.perf_counter() - start
    return Message(content=RecordDict({METRICS: MetricRecord(record)}), reply_to=msg)

