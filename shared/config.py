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

from fedrec.shared.config_checks import (DP_CLIPPING, DP_MODES, HOLDOUTS,  # noqa: F401 (re-exported)
                                         LOCAL_OPTIMIZERS, STRATEGIES, check)
from fedrec.shared.config_flower import coerce, flower_key, read_toml  # noqa: F401 (re-exported)
from fedrec.shared.errors import ConfigError
from fedrec.shared.model_config import ModelConfig


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a federated run.

    Attributes:
        dataset: ``synthetic``, ``movielens-100k`` or a path (see ``fedrec.shared.datasets``).
        synthetic_users: users of the synthetic generator (one client each).
        synthetic_items: catalogue size of the synthetic generator.
        seed: seeds model init, client sampling, negatives and local training.
        rounds: federated rounds.
        clients_per_round: clients sampled for training each round (0 = all).
        eval_clients: clients evaluated each round (0 = all).
        eval_every: evaluate every N rounds (the last round is always evaluated).
        local_epochs: passes over a client's own interactions per round.
        batch_size: local training rows per step.
        learning_rate: local (client) step size for the global weights, in round 1.
        lr_decay: the local step size of round r is ``learning_rate * lr_decay ** (r-1)``
            (1: constant). Sent by the server with each round's config.
        local_optimizer: ``adam`` (a fresh Adam per client and round) or ``sgd``
            (plain SGD: a client's update is then its summed gradient steps, so an item
            row a client touched once moves in proportion to that one gradient).
        local_adam_eps: the numerical-stability constant of local Adam (not a privacy
            ε; Keras' default 1e-7). A fresh Adam per client moves every coordinate it
            touches by about the learning rate however small its gradient, so a rarely
            seen item row is pushed as far by one well-ranked negative as by a positive;
            an eps above such gradients makes those rows move in proportion to their
            gradient (like SGD) while the dense layers, with larger gradients, keep Adam's
            scaling. (On MovieLens-100k, 1e-3 and 1e-4 learned slower: README.)
        recency_decay: a client weighs its r-th most recent positive (r = 0: the newest)
            by ``recency_decay ** r`` in reconstruction and training, as the centralized
            NeuMF reference does (1: no recency weighting). Not with client-level DP.
        negatives: sampled negatives per positive in local training.
        reconstruction_steps: full-batch steps fitting the private user embedding with
            the global weights frozen, before each local training (Federated
            Reconstruction, Singhal et al. 2021) and before evaluation.
        reconstruction_lr: Adam step size of those steps.
        serve_passes: how the device fits the user embedding it ranks with (federated
            evaluation and the SDK's recommendations; training never reads it). 0: refresh
            the stored training embedding with one reconstruction. k > 0: fit a fresh one
            (the user's seeded initial draw) with k reconstructions in a row, each
            ``reconstruction_steps`` steps over freshly drawn negatives, so the served
            embedding depends only on the current global model and the user's events.
        serve_recency_decay: that fit weighs the r-th most recent positive by
            ``serve_recency_decay ** r`` (1: every positive alike). Leave-last-out asks
            for the user's next item, which the latest events say most about; a short
            fit from the initial draw keeps the weighted fit from over-fitting the last
            few events (why it needs ``serve_passes`` > 0: README, "Serving fit").
        serve_average: with ``serve_passes`` > 0, the served embedding is the mean of
            this many such fits, each over its own negatives: it averages out what the
            sampled negatives put into a short fit (one embedding still, so scoring and
            the SDK are unchanged).
        holdout: the item each device ranks in evaluation: ``test`` (its last
            interaction; it trains on the rest) or ``validation`` (its second-last; it
            trains on what precedes it): choose settings on ``validation``, report
            ``test``.
        strategy: server optimiser: ``fedavg``, ``fedavgm``, ``fedadam``, ``fedyogi``.
        server_learning_rate: η of FedAdam/FedYogi/FedAvgM (ignored by FedAvg); 0 picks
            the strategy's default (FedAvgM 1.0, FedAdam/FedYogi 0.01).
        server_momentum: momentum of FedAvgM.
        gmf_dim, mlp_dim, content_dim: model sizes (see ``fedrec.shared.model_config.ModelConfig``).
        out: run directory (manifest, metrics.jsonl, results.json, checkpoints).
        client_state_dir: where simulated devices keep their private embeddings
            (default ``<out>/client_state``).
        resume: continue ``out`` from its last complete round.
        budget_dir: the dataset-level budget registry every run on the same data records
            its releases in (``fedrec.shared.budget``; ``fedrec audit --budget DIR`` composes
            them). Default "": ``.fedrec-budget`` next to ``out`` (shared by the runs
            under one parent folder, such as a sweep's cells).
        round_timeout: seconds to wait for client replies in one round.
        min_replies: fewest successful training replies for a round to count.
        max_update_norm: replies whose update (new minus sent weights) has a larger L2
            norm are rejected before aggregation (0: no bound).
        dp: ``none``; ``server``: user-level DP-FedAvg (Flower's DP strategy wrappers);
            ``client``: example-level DP-SGD on every client (tensorflow-privacy);
            ``both``.
        dp_clipping: user-level clipping: ``server-fixed``, ``server-adaptive`` (Andrew
            et al. 2019, ``fedrec.server.adaptive`` around Flower's server-side fixed clipping)
            or ``client-fixed`` (Flower's ``fixedclipping_mod`` on clients).
        noise_multiplier: z, user-level noise std over the clipping norm (Flower's
            definition: std of the average = z * clip / clients-per-round).
        clip: L2 norm bound on one client's model update (initial norm when adaptive).
        target_epsilon: user-level ε budget; the server stops before a round would
            exceed it (0: no budget).
        delta: user-level δ (0: 1 / N^1.1 for N clients).
        clip_quantile, clip_lr: adaptive clipping's target unclipped quantile and its
            geometric update step.
        clipped_count_stddev: std of the noise on the clipped count (adaptive; 0: Flower's
            default, clients-per-round / 20).
        clip_adapt_range: adaptive: the clip stays within [clip / r, clip * r], a range
            fixed before the run (>= 1; 1 keeps it fixed).
        client_noise_multiplier: local DP-SGD noise std over ``client_clip``.
        client_clip: per-example gradient L2 norm bound of local DP-SGD.
        client_target_epsilon: example-level ε budget of every client (replace-one: the
            device's number of examples is public); a client declines a round that would
            exceed it (0: no budget).
        client_delta: example-level δ of every client.
        noise_seed: -1 (default): DP noise, and the client sampling and local batches of
            DP runs, come from the operating system's entropy: secret, so nobody can
            subtract the noise or tell who was sampled. >= 0: all of it is seeded from
            (seed, noise-seed) for reproducible experiments; then it is **not private**
            against anyone who knows the seeds (they are in the run config and manifest).
            A deployed device runs a seeded example-level round only if its own node
            config says ``allow-seeded-noise = true`` (simulated devices allow it), and
            marks it not private in its ledger (``fedrec.client.app.allows_seeded_noise``).
        catalogue: deployment only: the item catalogue file (CSV/Parquet items) that the
            server and every device share; the server then loads nothing else, and each
            device reads its own events from ``events-path`` in its node config.
        clients: deployment only: the number of devices (SuperNodes) taking part.
        canaries: simulation only: k extra *canary clients* for the empirical audit
            (Andrew et al., ICLR 2024). They are sampled like every other client and
            reply with the global weights moved by ``clip`` along a fixed random unit
            direction (``fedrec.shared.canary``); ``fedrec audit --empirical`` then estimates ε
            from the final model. 0: none (every production run).
        example_canaries: simulation only: m users (drawn by seed among those with
            training data) each get one *canary interaction* for the example-level
            empirical audit (Steinke, Nasr, Jagielski, NeurIPS 2023): one of two random
            items the user never interacted with, chosen by a fair coin drawn from (seed,
            user) before training (``fedrec.shared.canary.interaction_canary``). ``fedrec audit
            --empirical`` guesses the coins from the device models and turns the correct
            guesses into an ε lower bound. Each such user trains on one fake interaction.
            0: none (every production run).
        synthetic_heterogeneity, synthetic_activity_skew: the synthetic generator's
            non-IID knob in [0, 1] and the sigma (0-3) of its log-normal activity skew.
        lazy_clients: scale runs (synthetic data, simulation): a client exists only
            while it computes. Its data is generated when it is called
            (``fedrec.shared.lazy_synthetic``; workers hold only the catalogue), and the
            simulation runs as many nodes as a round needs, each message naming the user
            it is for (``fedrec.server.slots``). Memory is then bounded by the clients of a
            round. Needs clients-per-round and eval-clients > 0; items are indexed in
            catalogue order (a different run than the eager one of the same data).
        dropout: scenario: probability that a sampled client fails mid-round (its
            training is lost; the round goes on with the others, failures are counted).
        straggler_fraction, straggler_delay: scenario: this fraction of clients is slow
            and answers ``straggler_delay`` seconds late; with ``round_timeout`` below the
            delay they miss the round.
        participation_window: scenario, realistic participation: a device takes part at
            most once per this many rounds and declines (with its reason) when sampled
            again sooner. 0: no limit. The declines are accounted as what they are:
            fewer updates averaged (see the README's accounting limits).
        late_users, join_round: scenario, cold start: this fraction of users (drawn by
            seed) joins only in round ``join_round``; before that they decline training
            and are evaluated on the popular-items fallback a new install shows, from then
            on on the model with their reconstructed embedding (``cold_hr@10`` per round).
        new_items, items_round: scenario, items added mid-run: this fraction (at most
            0.5) of the catalogue, drawn by seed, is released only in round
            ``items_round``. Before that devices neither train on those items nor draw
            them as negatives, so only the content tower can place them;
            ``new_item_hr@10`` per round is HR@10 over the users whose held-out item is
            one of them.
        secagg: secure aggregation of the training rounds with Flower's SecAgg+ (legacy
            ``SecAggPlusWorkflow`` + ``secaggplus_mod``; ``fedrec.server.secagg``): the server
            only ever holds the sum of the updates. Needs dp = server with dp-clipping =
            client-fixed (the devices clip, since nobody else sees an update) and at
            least 3 clients per round; replies cannot be validated one by one.
        secagg_shares: devices each device's secret is shared with (> 2; 0: every sampled
            device, the most robust to dropouts and the slowest).
        secagg_threshold: fraction in (0, 1] of those shares needed to reconstruct a
            dropped device's mask (higher: more private against colluders, less
            tolerant of dropouts).
        secagg_clipping_range: weights are clipped to ± this before quantization; a round
            whose global weights plus the clip would exceed it stops.
        secagg_quantization_range: Q, SecAgg+'s quantization levels (Flower's default
            2^22); sums are taken modulo 2^32, so at most (2^32 - 1) // (Q + 1) clients
            per round (1023 by default; ``fedrec.server.secagg_bounds``).
    """

    dataset: str = "synthetic"
    synthetic_users: int = 20
    synthetic_items: int = 200
    seed: int = 0
    rounds: int = 3
    clients_per_round: int = 0
    eval_clients: int = 0
    eval_every: int = 1
    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.01
    lr_decay: float = 1.0
    local_optimizer: str = "adam"
    local_adam_eps: float = 1e-7
    recency_decay: float = 1.0
    negatives: int = 4
    reconstruction_steps: int = 10
    reconstruction_lr: float = 0.05
    serve_passes: int = 0
    serve_recency_decay: float = 1.0
    serve_average: int = 1
    holdout: str = "test"
    strategy: str = "fedavg"
    server_learning_rate: float = 0.0
    server_momentum: float = 0.9
    gmf_dim: int = 16
    mlp_dim: int = 16
    content_dim: int = 32
    out: str = "runs/flwr"
    client_state_dir: str = ""
    resume: bool = False
    budget_dir: str = ""
    round_timeout: float = 3600.0
    min_replies: int = 1
    max_update_norm: float = 0.0
    dp: str = "none"
    dp_clipping: str = "server-fixed"
    noise_multiplier: float = 1.0
    clip: float = 1.0
    target_epsilon: float = 0.0
    delta: float = 0.0
    clip_quantile: float = 0.5
    clip_lr: float = 0.2
    clipped_count_stddev: float = 0.0
    clip_adapt_range: float = 100.0
    client_noise_multiplier: float = 1.0
    client_clip: float = 1.0
    client_target_epsilon: float = 0.0
    client_delta: float = 1e-5
    noise_seed: int = -1
    catalogue: str = ""
    clients: int = 0
    canaries: int = 0
    example_canaries: int = 0
    synthetic_heterogeneity: float = 0.8
    synthetic_activity_skew: float = 0.6
    lazy_clients: bool = False
    dropout: float = 0.0
    straggler_fraction: float = 0.0
    straggler_delay: float = 0.0
    participation_window: int = 0
    late_users: float = 0.0
    join_round: int = 1
    new_items: float = 0.0
    items_round: int = 1
    secagg: bool = False
    secagg_shares: int = 0
    secagg_threshold: float = 0.6
    secagg_clipping_range: float = 8.0
    secagg_quantization_range: int = 4194304

    def __post_init__(self) -> None:
        check(self)   # fedrec.shared.config_checks

    @property
    def secret_randomness(self) -> bool:
        """DP randomness from OS entropy (``noise_seed`` < 0), not from public seeds."""
        return self.dp != "none" and self.noise_seed < 0

    @property
    def server_dp(self) -> bool:
        return self.dp in ("server", "both")

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
