"""One typed configuration per federated run, validated once at the edge.

The same :class:`RunConfig` is built from the Flower run config (``[tool.flwr.app.config]``
in ``pyproject.toml`` plus ``--run-config`` overrides: hyphenated keys), from a TOML file,
or from ``fedrec simulate`` flags, and written into the run's ``manifest.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fedrec.shared.config_checks import (  # noqa: F401 (re-exported)
    DP_CLIPPING,
    DP_MODES,
    HOLDOUTS,
    LOCAL_OPTIMIZERS,
    STRATEGIES,
    check,
)
from fedrec.shared.config_flower import coerce, flower_key, read_toml  # noqa: F401 (re-exported)
from fedrec.shared.config_meta import setting
from fedrec.shared.errors import ConfigError
from fedrec.shared.model_config import ModelConfig


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a federated run.

    Each field is declared with :func:`fedrec.shared.config_meta.setting`: its help text,
    longer explanation, group, flags and scope live in the field's metadata, which
    generates the ``fedrec simulate`` flags and ``docs/configuration.md``.
    """

    dataset: str = setting("synthetic", "data", "synthetic, movielens-100k or a path",
                           doc="See ``fedrec.shared.datasets``.")
    synthetic_users: int = setting(20, "data", "users of the synthetic generator (one client each)")
    synthetic_items: int = setting(200, "data", "catalogue size of the synthetic generator")
    seed: int = setting(0, "data", "seeds model init, client sampling, negatives and local "
                        "training")
    rounds: int = setting(3, "server/strategy", "federated rounds")
    clients_per_round: int = setting(0, "server/strategy", "clients sampled for training "
                                     "each round (0 = all)")
    eval_clients: int = setting(0, "server/strategy", "clients evaluated per round (0 = all)")
    eval_every: int = setting(1, "server/strategy", "evaluate every N rounds (the last round "
                              "is always evaluated)")
    local_epochs: int = setting(1, "local training", "passes over a client's own "
                                "interactions per round", scope="device")
    batch_size: int = setting(32, "local training", "local training rows per step",
                              scope="device")
    learning_rate: float = setting(
        0.01, "local training", "local learning rate (of round 1)",
        flags=("--learning-rate", "--lr"), scope="device",
        doc="Local (client) step size for the global weights, in round 1.")
    lr_decay: float = setting(
        1.0, "local training", "local learning rate of round r: lr * lr-decay^(r-1)",
        doc="1: constant. Sent by the server with each round's config.")
    local_optimizer: str = setting(
        "adam", "local training", "adam (a fresh Adam per client and round) or sgd",
        choices=LOCAL_OPTIMIZERS, scope="device",
        doc="With plain SGD a client's update is its summed gradient steps, so an item row "
        "a client touched once moves in proportion to that one gradient.")
    local_adam_eps: float = setting(
        1e-7, "local training", "local Adam's stability constant (not a privacy epsilon)",
        scope="device",
        doc="Keras' default 1e-7. A fresh Adam per client moves every coordinate it touches "
        "by about the learning rate however small its gradient, so a rarely seen item row is "
        "pushed as far by one well-ranked negative as by a positive; an eps above such "
        "gradients makes those rows move in proportion to their gradient (like SGD) while "
        "the dense layers, with larger gradients, keep Adam's scaling. (On MovieLens-100k, "
        "1e-3 and 1e-4 learned slower: README.)")
    recency_decay: float = setting(
        1.0, "local training", "weight recency-decay^r on a client's r-th most recent "
        "positive", scope="device",
        doc="In reconstruction and training (r = 0: the newest), as the centralized NeuMF "
        "reference does (1: no recency weighting). Not with client-level DP.")
    negatives: int = setting(4, "local training", "sampled negatives per positive in local "
                             "training", scope="device")
    reconstruction_steps: int = setting(
        10, "local training", "full-batch steps fitting the private user embedding",
        scope="device",
        doc="With the global weights frozen, before each local training (Federated "
        "Reconstruction, Singhal et al. 2021) and before evaluation.")
    reconstruction_lr: float = setting(0.05, "local training", "Adam step size of the "
                                       "reconstruction steps", scope="device")
    serve_passes: int = setting(
        0, "serving", "fit the served (evaluated) user embedding afresh in this many "
        "reconstructions (0: refresh the training embedding)", scope="device",
        doc="How the device fits the user embedding it ranks with (federated evaluation and "
        "the SDK's recommendations; training never reads it). 0: refresh the stored training "
        "embedding with one reconstruction. k > 0: fit a fresh one (the user's seeded initial "
        "draw) with k reconstructions in a row, each ``reconstruction_steps`` steps over "
        "freshly drawn negatives, so the served embedding depends only on the current global "
        "model and the user's events.")
    serve_recency_decay: float = setting(
        1.0, "serving", "weight serve-recency-decay^r on the r-th most recent positive in "
        "that fit", scope="device",
        doc="1: every positive alike. Leave-last-out asks for the user's next item, which the "
        "latest events say most about; a short fit from the initial draw keeps the weighted "
        "fit from over-fitting the last few events (why it needs ``serve_passes`` > 0: "
        "README, \"Serving fit\").")
    serve_average: int = setting(
        1, "serving", "serve the mean embedding of this many such fits", scope="device",
        doc="With ``serve_passes`` > 0, each fit over its own negatives: it averages out what "
        "the sampled negatives put into a short fit (one embedding still, so scoring and the "
        "SDK are unchanged).")
    holdout: str = setting(
        "test", "data", "evaluate on the test item, or on the validation item (for choosing "
        "settings)", choices=HOLDOUTS,
        doc="The item each device ranks in evaluation: ``test`` (its last interaction; it "
        "trains on the rest) or ``validation`` (its second-last; it trains on what precedes "
        "it): choose settings on ``validation``, report ``test``.")
    strategy: str = setting("fedavg", "server/strategy", "server optimiser", choices=STRATEGIES)
    server_learning_rate: float = setting(
        0.0, "server/strategy", "server step size of FedAdam/FedYogi/FedAvgM (0: the "
        "strategy's default)", flags=("--server-learning-rate", "--server-lr"),
        doc="Ignored by FedAvg; 0 picks FedAvgM 1.0, FedAdam/FedYogi 0.01.")
    server_momentum: float = setting(0.9, "server/strategy", "fedavgm's momentum (with --dp "
                                     "server: applied after the noise)")
    gmf_dim: int = setting(16, "model", "GMF embedding size (overrides --dim)",
                           doc="User and item embeddings of the GMF branch "
                           "(``fedrec.shared.model_config.ModelConfig``).")
    mlp_dim: int = setting(16, "model", "MLP embedding size (overrides --dim)",
                           doc="The MLP layers are (2 d, d, max(1, d // 2)).")
    content_dim: int = setting(32, "model", "hidden size of the item content tower (0: no tower)",
                               doc="See ``fedrec.shared.model_config.ModelConfig``.")
    out: str = setting("runs/flwr", "server/strategy", "run directory",
                       doc="Manifest, metrics.jsonl, results.json, checkpoints.")
    client_state_dir: str = setting("", "server/strategy", "where simulated devices keep "
                                    "their private embeddings (default <out>/client_state)")
    resume: bool = setting(
        False, "server/strategy", "continue out from its last complete round", cli=False,
        doc="``fedrec simulate --resume RUN_DIR`` sets it (with out = RUN_DIR and the run's "
        "own manifest config).")
    budget_dir: str = setting(
        "", "server/strategy", "dataset-level budget registry this run records its releases "
        "in (default: .fedrec-budget next to --out; see fedrec audit --budget)",
        doc="Every run on the same data records its releases there "
        "(``fedrec.shared.budget``; ``fedrec audit --budget DIR`` composes them); the default "
        "is shared by the runs under one parent folder, such as a sweep's cells.")
    round_timeout: float = setting(3600.0, "server/strategy", "seconds the server waits for "
                                   "client replies in one round")
    min_replies: int = setting(1, "server/strategy", "fewest successful training replies for "
                               "a round to count")
    max_update_norm: float = setting(
        0.0, "server/strategy", "reject replies whose update has a larger L2 norm (0: no "
        "bound)", doc="The update is the new minus the sent weights; rejected before "
        "aggregation.")
    dp: str = setting(
        "none", "user-level DP", "none, client (example-level DP-SGD), server (user-level "
        "DP-FedAvg), both, or distributed (DP-FedAvg with Skellam noise added on the devices, "
        "needs --secagg)", choices=DP_MODES,
        doc="``server``: user-level DP-FedAvg (Flower's DP strategy wrappers); ``client``: "
        "example-level DP-SGD on every client (tensorflow-privacy); ``both``; "
        "``distributed``: user-level DP-FedAvg whose noise each sampled device adds as a "
        "Skellam share, carried by SecAgg+ so the server only unmasks the noisy sum "
        "(``fedrec.server.ddp``, docs/distributed-dp.md).")
    dp_clipping: str = setting(
        "server-fixed", "user-level DP", "user-level clipping", choices=DP_CLIPPING,
        doc="``server-fixed``, ``server-adaptive`` (Andrew et al. 2019, "
        "``fedrec.server.adaptive`` around Flower's server-side fixed clipping) or "
        "``client-fixed`` (Flower's ``fixedclipping_mod`` on clients).")
    noise_multiplier: float = setting(
        1.0, "user-level DP", "user-level z (std / clip, per average)",
        doc="Flower's definition: std of the average = z * clip / clients-per-round.")
    clip: float = setting(1.0, "user-level DP", "user-level L2 bound on a client update",
                          doc="The initial norm when adaptive.")
    target_epsilon: float = setting(
        0.0, "user-level DP", "user-level budget: stop before exceeding",
        doc="The server stops before a round would exceed it (0: no budget).")
    delta: float = setting(0.0, "user-level DP", "user-level delta (0: 1/N^1.1 for N clients)")
    clip_quantile: float = setting(0.5, "user-level DP", "adaptive clipping target quantile",
                                   doc="The target unclipped quantile.")
    clip_lr: float = setting(0.2, "user-level DP", "adaptive clipping step",
                             doc="Its geometric update step.")
    clipped_count_stddev: float = setting(
        0.0, "user-level DP", "adaptive: count noise std",
        doc="Std of the noise on the clipped count (0: Flower's default, clients-per-round "
        "/ 20).")
    clip_adapt_range: float = setting(
        100.0, "user-level DP", "adaptive: the clip stays in [clip / r, clip * r]",
        doc="A range fixed before the run (>= 1; 1 keeps it fixed).")
    client_noise_multiplier: float = setting(1.0, "example-level DP", "local DP-SGD noise "
                                             "std / client-clip", scope="device")
    client_clip: float = setting(1.0, "example-level DP", "local DP-SGD per-example "
                                 "gradient L2 bound", scope="device")
    client_target_epsilon: float = setting(
        0.0, "example-level DP", "example-level budget: clients decline rounds past it",
        scope="device",
        doc="The example-level ε budget of every client (replace-one: the device's number of "
        "examples is public); 0: no budget.")
    client_delta: float = setting(1e-5, "example-level DP", "example-level delta of every "
                                  "client", scope="device")
    noise_seed: int = setting(
        -1, "user-level DP", "-1: DP randomness from OS entropy (private); >= 0 seeds it "
        "(NOT private)",
        doc="-1 (default): DP noise, and the client sampling and local batches of DP runs, "
        "come from the operating system's entropy: secret, so nobody can subtract the noise "
        "or tell who was sampled. >= 0: all of it is seeded from (seed, noise-seed) for "
        "reproducible experiments; then it is **not private** against anyone who knows the "
        "seeds (they are in the run config and manifest). A deployed device runs a seeded "
        "example-level round only if its own node config says ``allow-seeded-noise = true`` "
        "(simulated devices allow it), and marks it not private in its ledger "
        "(``fedrec.client.seeding.allows_seeded_noise``). Both DP levels use it.",
        scope="device")
    catalogue: str = setting(
        "", "deployment", "the item catalogue file (CSV/Parquet items) the server and every "
        "device share", cli=False,
        doc="Deployment only: the server then loads nothing else, and each device reads its "
        "own events from ``events-path`` in its node config.")
    clients: int = setting(0, "deployment", "the number of devices (SuperNodes) taking part",
                           cli=False, doc="Deployment only.")
    canaries: int = setting(
        0, "user-level DP", "audit runs: k canary clients for `fedrec audit --empirical` "
        "(0: none)",
        doc="Simulation only: k extra *canary clients* for the empirical audit (Andrew et al., "
        "ICLR 2024). They are sampled like every other client and reply with the global "
        "weights moved by ``clip`` along a fixed random unit direction "
        "(``fedrec.shared.canary``); ``fedrec audit --empirical`` then estimates ε from the "
        "final model. 0: none (every production run).")
    example_canaries: int = setting(
        0, "example-level DP", "audit runs: M users each train on one canary interaction "
        "chosen by a coin, for the example-level one-run audit of `fedrec audit --empirical` "
        "(0: none)", metavar="M",
        doc="Simulation only: m users (drawn by seed among those with training data) each get "
        "one *canary interaction* (Steinke, Nasr, Jagielski, NeurIPS 2023): one of two random "
        "items the user never interacted with, chosen by a fair coin drawn from (seed, user) "
        "before training (``fedrec.shared.canary.interaction_canary``). ``fedrec audit "
        "--empirical`` guesses the coins from the device models and turns the correct guesses "
        "into an ε lower bound. Each such user trains on one fake interaction.")
    synthetic_heterogeneity: float = setting(
        0.8, "data", "synthetic data: non-IID knob in [0, 1]",
        flags=("--synthetic-heterogeneity", "--heterogeneity"))
    synthetic_activity_skew: float = setting(
        0.6, "data", "synthetic data: sigma (0-3) of the log-normal activity skew",
        flags=("--synthetic-activity-skew", "--activity-skew"))
    lazy_clients: bool = setting(
        False, "data", "synthetic data: generate each client when it is called (scale runs: "
        "memory bounded by the clients of a round)", flags=("--lazy-clients", "--lazy"),
        doc="A client exists only while it computes. Its data is generated when it is called "
        "(``fedrec.shared.lazy_synthetic``; workers hold only the catalogue), and the "
        "simulation runs as many nodes as a round needs, each message naming the user it is "
        "for (``fedrec.server.slots``). Memory is then bounded by the clients of a round. "
        "Needs clients-per-round and eval-clients > 0; items are indexed in catalogue order "
        "(a different run than the eager one of the same data).")
    dropout: float = setting(
        0.0, "scenarios", "probability a sampled client fails mid-round",
        doc="Its training is lost; the round goes on with the others, failures are counted.")
    straggler_fraction: float = setting(0.0, "scenarios", "fraction of slow clients")
    straggler_delay: float = setting(
        0.0, "scenarios", "seconds a slow client answers late",
        doc="With ``round_timeout`` below the delay they miss the round.")
    participation_window: int = setting(
        0, "scenarios", "a device takes part at most once per this many rounds (0: no limit)",
        doc="Realistic participation: a device declines (with its reason) when sampled again "
        "sooner. The declines are accounted as what they are: fewer updates averaged (see the "
        "README's accounting limits).")
    late_users: float = setting(
        0.0, "scenarios", "cold start: fraction of users that join only in --join-round",
        doc="Drawn by seed; before that they decline training and are evaluated on the "
        "popular-items fallback a new install shows, from then on on the model with their "
        "reconstructed embedding (``cold_hr@10`` per round).")
    join_round: int = setting(1, "scenarios", "cold start: the round late users join")
    new_items: float = setting(
        0.0, "scenarios", "new items: fraction of the catalogue released only in --items-round",
        doc="At most 0.5, drawn by seed. Before that round devices neither train on those "
        "items nor draw them as negatives, so only the content tower can place them; "
        "``new_item_hr@10`` per round is HR@10 over the users whose held-out item is one of "
        "them.")
    items_round: int = setting(1, "scenarios", "new items: the round they are released")
    secagg: bool = setting(
        False, "secure aggregation", "secure aggregation (Flower SecAgg+): the server only "
        "sees the sum; needs --dp server --dp-clipping client-fixed, or --dp distributed",
        doc="Legacy ``SecAggPlusWorkflow`` + ``secaggplus_mod`` (``fedrec.server.secagg``). "
        "Needs dp = server with dp-clipping = client-fixed, or dp = distributed (the devices "
        "clip, since nobody "
        "else sees an update) and at least 3 clients per round; replies cannot be validated "
        "one by one.")
    skellam_scale: float = setting(
        4096.0, "user-level DP", "--dp distributed (and --noise distributed): integer "
        "units per unit of L2 norm",
        doc="DP-FedAvg with dp = distributed: a device's clipped update (L2 <= clip) is "
        "multiplied by this and conditionally rounded to integers before its Skellam share "
        "is added (``fedrec.server.ddp``; docs/distributed-dp.md). Statistics releases take "
        "the same flag (``ReleaseConfig.skellam_scale``).")
    min_survivors: float = setting(
        1.0, "user-level DP", "--dp distributed (and --noise distributed): fraction in "
        "(0, 1] of the sampled devices a round needs; noise shares are sized for "
        "t = ceil(fraction * sampled)",
        doc="DP-FedAvg with dp = distributed: each device adds Sk(mu / t); a round whose "
        "SecAgg+ sum holds fewer than t devices is not aggregated (t is also SecAgg+'s "
        "reconstruction threshold). Ignored by other DP modes.")
    secagg_shares: int = setting(
        0, "secure aggregation", "SecAgg+ shares per secret (0: all)",
        doc="Devices each device's secret is shared with (> 2; 0: every sampled device, the "
        "most robust to dropouts and the slowest).")
    secagg_threshold: float = setting(
        0.6, "secure aggregation", "SecAgg+ fraction of shares that reconstructs a dropped "
        "mask", doc="In (0, 1]; higher: more private against colluders, less tolerant of "
        "dropouts.")
    secagg_clipping_range: float = setting(
        8.0, "secure aggregation", "weights are clipped to ± this before quantization",
        doc="A round whose global weights plus the clip would exceed it stops.")
    secagg_quantization_range: int = setting(
        4194304, "secure aggregation", "Q, SecAgg+'s quantization levels (Flower's default "
        "2^22)",
        doc="Sums are taken modulo 2^32, so at most (2^32 - 1) // (Q + 1) clients per round "
        "(1023 by default; ``fedrec.server.secagg_bounds``).")

    def __post_init__(self) -> None:
        check(self)   # fedrec.shared.config_checks

    @property
    def secret_randomness(self) -> bool:
        """DP randomness from OS entropy (``noise_seed`` < 0), not from public seeds."""
        return self.dp != "none" and self.noise_seed < 0

    @property
    def server_dp(self) -> bool:
        """User-level DP-FedAvg with the server's Gaussian noise (Flower's wrappers)."""
        return self.dp in ("server", "both")

    @property
    def distributed_dp(self) -> bool:
        """User-level DP-FedAvg with the devices' Skellam shares under SecAgg+."""
        return self.dp == "distributed"

    @property
    def user_dp(self) -> bool:
        """Any user-level DP-FedAvg (every update weighs 1, the sampler is exact)."""
        return self.server_dp or self.distributed_dp

    @property
    def client_dp(self) -> bool:
        return self.dp in ("client", "both")

    def user_delta(self, n_clients: int) -> float:
        """User-level δ: the configured one, checked against 1/N, or 1/N^1.1."""
        if self.delta == 0:
            return 1.0 / n_clients ** 1.1
        if self.delta >= 1.0 / n_clients:
            raise ConfigError(f"delta {self.delta:g} must be < 1/N = {1.0 / n_clients:g} "
                              f"for N = {n_clients} clients")
        return self.delta

    @property
    def model(self) -> ModelConfig:
        return ModelConfig(gmf_dim=self.gmf_dim, mlp_embedding_dim=self.mlp_dim,
                           mlp_layers=(2 * self.mlp_dim, self.mlp_dim, max(1, self.mlp_dim // 2)),
                           content_dim=self.content_dim)

    @property
    def client_state_root(self) -> Path:
        return Path(self.client_state_dir) if self.client_state_dir else Path(self.out) / "client_state"

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_flower(self) -> dict[str, Any]:
        """Hyphenated keys, as in ``[tool.flwr.app.config]``."""
        return {flower_key(f.name): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str = "config") -> "RunConfig":
        """Build from hyphenated or underscored keys; unknown keys and bad types fail."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for raw, value in values.items():
            name = raw.replace("-", "_")
            if name not in known:
                raise ConfigError(f"{source}: unknown setting {raw!r}")
            kwargs[name] = coerce(known[name].type, value, raw, source)
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path) -> "RunConfig":
        data = read_toml(path)
        return cls.from_mapping(data.get("run", data), source=str(path))
