"""Centralized baselines: popularity, item-kNN, NeuMF and NeuMF with DP-SGD.

These are the references every federated run is compared with. All of them produce a
scorer (``users -> (B, N)`` scores) and are judged by :func:`fedrec.shared.evaluate.evaluate`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from fedrec.shared import privacy
from fedrec.shared.evaluate import Scorer, evaluate
from fedrec.shared.interactions import Interactions, Split, rows_from_end
from fedrec.shared.model import ModelConfig
from fedrec.shared.training import DP_NEGATIVES

log = logging.getLogger("fedrec.baselines")
MODELS = ("popularity", "popularity-dp", "itemknn", "neumf", "neumf-dp")


def popularity_scorer(split: Split) -> Scorer:
    """Score = number of users with a training positive on the item (same for everyone)."""
    pop = np.bincount(split.train_items, minlength=split.n_items).astype(np.float32)
    return lambda users: np.broadcast_to(pop, (len(users), split.n_items)).copy()


def dp_popularity_scorer(split: Split, epsilon: float, delta: float,
                         rng: np.random.Generator | None = None) -> tuple[Scorer, dict]:
    """Popularity released with user-level DP, as the federated release computes it.

    Each user's unit-norm vector (``fedrec.shared.stats.popularity_contribution``) is summed and
    one Gaussian draw calibrated to ``epsilon`` (PLD, REPLACE_ONE: sensitivity 2) is
    added; ``rng`` None draws the noise from 128 bits of OS entropy.
    """
    from fedrec.server import releases
    from fedrec.shared import stats

    users = np.unique(split.train_users)
    order = np.argsort(split.train_users, kind="stable")
    bounds = np.searchsorted(split.train_users[order], users, side="left")
    ends = np.searchsorted(split.train_users[order], users, side="right")
    items = split.train_items[order]
    total = sum((stats.popularity_contribution(items[a:b], split.n_items)
                 for a, b in zip(bounds, ends)), np.zeros(split.n_items))
    z = releases.calibrate_total(epsilon, delta, (("popularity", 1.0),))
    noisy = stats.add_noise(total, z, rng or releases.noise_generator(None))
    event = stats.release_event(z)
    eps = {acc: privacy.epsilon(event, delta, acc, stats.RELATION) for acc in privacy.ACCOUNTANTS}
    record = {"epsilon": eps["pld"], "delta": delta, "level": "user", "accountant": "pld",
              "epsilon_by_accountant": eps, "neighbouring_relation": stats.RELATION,
              "unit": "one user's entire history", "noise_multiplier": z,
              "dp_event": privacy.event_to_dict(event), "finite": True}
    return (lambda u: np.broadcast_to(noisy, (len(u), split.n_items)).copy()), record


KNN_NEIGHBOURS = (20, 50, 100, 200)
KNN_DECAYS = (1.0, 0.95, 0.9, 0.8)


def item_similarity(split: Split, shrink: float = 0.0) -> np.ndarray:
    """(N, N) cosine similarity of items' training-user sets, zero diagonal.

    ``shrink`` damps similarities of rarely co-occurring pairs (0 = plain cosine).
    """
    train = split.train_matrix()
    norms = np.sqrt(np.asarray(train.multiply(train).sum(axis=0))).ravel()
    co = (train.T @ train).toarray().astype(np.float32)
    np.fill_diagonal(co, 0.0)
    return co / (np.outer(norms, norms) + shrink + 1e-12)


def recency_profile(split: Split, decay: float) -> sp.csr_matrix:
    """(U, N) user profiles: a training item weighs ``decay ** r``, where r counts the
    user's more recent training items (1 for the latest, ``decay`` for the one before...).

    ``decay = 1`` gives the binary profile of classic item-kNN. Below 1 it is the
    time-weighted item-kNN of Ding and Li (CIKM 2005): recent items say more about
    what a user wants next, which is what leave-last-out evaluates.
    """
    weight = np.power(decay, rows_from_end(split.train_users, split.n_users)).astype(np.float32)
    return sp.csr_matrix((weight, (split.train_users, split.train_items)),
                         shape=(split.n_users, split.n_items))


def itemknn_scorer(split: Split, neighbours: int = 20, shrink: float = 0.0,
                   decay: float = 1.0, sim: np.ndarray | None = None) -> Scorer:
    """Item-based kNN (Sarwar et al. 2001): cosine item-item similarity, top-k neighbours.

    score(u, i) = sum of w(u, j) sim(i, j) over the user's training items j that are among
    the ``neighbours`` items most similar to i (the candidate's neighbourhood, as in the
    classic formulation); w(u, j) is the recency weight of :func:`recency_profile`
    (1 for every item when ``decay = 1``). ``sim`` reuses a precomputed
    :func:`item_similarity` of the same split.
    """
    sim = (item_similarity(split, shrink) if sim is None else sim).copy()
    if neighbours < sim.shape[1]:
        # column i keeps only the rows j in i's own top-``neighbours``
        drop = np.argpartition(-sim, neighbours, axis=0)[neighbours:, :]
        np.put_along_axis(sim, drop, 0.0, axis=0)
    sim = sp.csr_matrix(sim)
    profile = recency_profile(split, decay)
    return lambda users: np.asarray((profile[users] @ sim).todense(), dtype=np.float32)


def select_itemknn(split: Split, val_negatives: np.ndarray,
                   neighbours: tuple[int, ...] = KNN_NEIGHBOURS,
                   decays: tuple[float, ...] = KNN_DECAYS) -> tuple[dict, list[dict]]:
    """Choose the neighbourhood size and recency decay by validation HR@10.

    Every (neighbours, decay) pair is fitted on the training items and scored on the
    validation item against its sampled negatives; the test item is never looked at.
    Returns the best pair and the whole grid (the baseline's history).
    """
    sim = item_similarity(split)
    grid = []
    for k in neighbours:
        for decay in decays:
            val = evaluate(itemknn_scorer(split, k, decay=decay, sim=sim), split, val_negatives,
                           which="val", full_ranking=False)
            grid.append({"neighbours": k, "decay": decay, "val_hr@10": val["hr@10"],
                         "val_ndcg@10": val["ndcg@10"]})
    best = max(grid, key=lambda g: (g["val_hr@10"], g["val_ndcg@10"]))
    log.info("item-kNN: validation picks %d neighbours, recency decay %g (val HR@10 %.4f)",
             best["neighbours"], best["decay"], best["val_hr@10"])
    return {"neighbours": best["neighbours"], "decay": best["decay"]}, grid


@dataclass(frozen=True)
class NeuMFConfig:
    """Training settings for (DP-)NeuMF.

    Attributes:
        epochs: passes over the training positives.
        batch_size: rows per step; under DP the *expected* batch size of Poisson
            sampling (rate q = batch_size / rows).
        learning_rate: Adam step size.
        negatives: sampled negatives per positive, redrawn every epoch (under DP each
            row's avoid only its own positive: ``fedrec.shared.training.make_dp_rows``).
        use_event_weights: weight positives by event strength (purchase > cart > view).
        recency_decay: in (0, 1]; a training positive's weight is multiplied by
            ``recency_decay ** r``, r = the user's more recent training positives (as in
            :func:`recency_profile`), so the latest interactions, the best evidence of what
            comes next, count most; 1 weighs every interaction alike. The default was
            chosen by validation HR@10 on MovieLens-100k (README). DP needs 1: a row's
            weight would depend on the user's other interactions, so adding or removing
            one interaction would change other rows too, outside the per-interaction ε.
        model: sizes of the hybrid model.
        dp: train with DP-SGD (tensorflow-privacy ``DPModel``).
        l2_norm_clip: per-row gradient clipping norm C (L2), DP only.
        noise_multiplier: σ = noise std / C; with ``target_epsilon`` it is calibrated.
        target_epsilon: ε to calibrate σ for (DP only).
        delta: δ; default 1 / rows^1.1 (smaller than 1/rows, as DP requires).
    """

    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    negatives: int = 8
    use_event_weights: bool = True
    recency_decay: float = 0.95
    model: ModelConfig = field(default_factory=lambda: ModelConfig(
        gmf_dim=16, mlp_embedding_dim=16, mlp_layers=(32, 16, 8), content_dim=32))
    dp: bool = False
    l2_norm_clip: float = 1.0
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.negatives < 1:
            raise ValueError("epochs, batch_size and negatives must be >= 1")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.recency_decay <= 1:
            raise ValueError(f"recency_decay must be in (0, 1], got {self.recency_decay}")
        if self.dp:
            if self.recency_decay != 1:
                raise ValueError("DP-SGD needs recency_decay = 1 (recency weights couple a "
                                 "user's interactions, which per-interaction ε does not cover)")
            if self.l2_norm_clip <= 0:
                raise ValueError(f"clip must be > 0, got {self.l2_norm_clip}")
            if (self.noise_multiplier is None) == (self.target_epsilon is None):
                raise ValueError("DP needs exactly one of noise_multiplier or target_epsilon")
            if self.noise_multiplier is not None and self.noise_multiplier < 0:
                raise ValueError(f"noise multiplier must be >= 0, got {self.noise_multiplier}")
            if self.target_epsilon is not None and self.target_epsilon <= 0:
                raise ValueError(f"target epsilon must be > 0, got {self.target_epsilon}")


@dataclass(frozen=True)
class DpPlan:
    """What DP-SGD will run, fixed before training (the mechanism that is accounted)."""

    sampling_rate: float
    steps_per_epoch: int
    steps: int
    noise_multiplier: float
    l2_norm_clip: float
    delta: float

    def event(self):
        return privacy.dpsgd_event(self.noise_multiplier, self.sampling_rate, self.steps)


def plan_dp(config: NeuMFConfig, n_rows: int) -> DpPlan:
    """Fix q, steps and σ (calibrated to ``target_epsilon`` when given)."""
    rate = min(1.0, config.batch_size / n_rows)
    steps_per_epoch = max(1, round(1 / rate))
    steps = steps_per_epoch * config.epochs
    delta = config.delta if config.delta is not None else 1.0 / n_rows ** 1.1
    if delta >= 1.0 / n_rows:
        raise ValueError(f"delta {delta:g} must be < 1/rows = {1.0 / n_rows:g}")
    sigma = config.noise_multiplier
    if sigma is None:
        sigma = privacy.calibrate_noise(
            config.target_epsilon, delta, lambda s: privacy.dpsgd_event(s, rate, steps),
            relation=privacy.EXAMPLE_RELATION)
    return DpPlan(rate, steps_per_epoch, steps, sigma, config.l2_norm_clip, delta)


def train_neumf(inter: Interactions, split: Split, val_negatives: np.ndarray,
                config: NeuMFConfig, seed: int, progress=None):
    """Train (DP-)NeuMF centrally; return ``(scorer, history, dp_plan | None)``.

    Non-DP: train on the training items while watching validation HR@10, pick the best
    epoch count, then refit a fresh model on train + validation for that many epochs
    (the NCF protocol trains on all but the test item). DP: one run on the training
    items, keeping the *last* epoch: choosing an epoch by validation metrics would be one
    more data-dependent release that the ε does not account for.
    """
    plan = plan_dp(config, len(split.train_users)) if config.dp else None
    scorer, history = _fit(inter, split, val_negatives, config, plan, seed, config.epochs,
                           progress, monitor=True)
    if plan is None:
        best = max(history, key=lambda h: h["val_hr@10"])["epoch"]
        log.info("refitting on train + validation for the best epoch count: %d", best)
        scorer, refit = _fit(inter, split.with_validation_in_train(), val_negatives, config,
                             None, seed, best, progress, monitor=False)
        history += [dict(h, phase="refit") for h in refit]
    return scorer, history, plan


def _fit(inter: Interactions, split: Split, val_negatives: np.ndarray, config: NeuMFConfig,
         plan: DpPlan | None, seed: int, epochs: int, progress, monitor: bool):
    """One training run of ``epochs`` epochs; per-epoch history (validation if ``monitor``)."""
    import tensorflow as tf

    from fedrec.shared.model import make_scorer
    from fedrec.shared.training import (
        keras_dataset,
        make_dp_rows,
        make_rows,
        poisson_batches,
        shuffled_batches,
    )

    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng([seed, 7])
    n_rows = len(split.train_users)
    model = _compiled_model(config, plan, inter)
    train = split.train_matrix()
    scorer = make_scorer(model, inter.item_features)
    weights = training_weights(split, config)
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        rows = (make_dp_rows(split.train_users, split.train_items, weights, split.n_items,
                             config.negatives, rng) if plan else
                make_rows(split.train_users, split.train_items, weights, train,
                          config.negatives, rng))
        batches = (poisson_batches(n_rows, plan.sampling_rate, plan.steps_per_epoch, rng)
                   if plan else shuffled_batches(n_rows, config.batch_size, rng))
        fit = model.fit(keras_dataset(rows, batches, inter.item_features), epochs=1, verbose=0,
                        callbacks=[progress.keras_callback(len(batches))] if progress else None)
        entry = {"epoch": epoch, "loss": float(fit.history["loss"][-1])}
        if monitor:
            val = evaluate(scorer, split, val_negatives, which="val", full_ranking=False)
            entry.update({"val_hr@10": val["hr@10"], "val_ndcg@10": val["ndcg@10"]})
        entry["seconds"] = time.perf_counter() - start
        history.append(entry)
        log.info("epoch %d/%d  loss %.4f%s  (%.1f s)", epoch, epochs, entry["loss"],
                 f"  val HR@10 {entry['val_hr@10']:.4f}  NDCG@10 {entry['val_ndcg@10']:.4f}"
                 if monitor else "", entry["seconds"])
    return scorer, history


def training_weights(split: Split, config: NeuMFConfig) -> np.ndarray:
    """(R,) weight of each training positive: its event weight (or 1) times
    ``recency_decay ** r``, r = the user's more recent training positives."""
    weights = split.train_weights if config.use_event_weights else np.ones_like(split.train_weights)
    recency = np.power(config.recency_decay, rows_from_end(split.train_users, split.n_users))
    return (weights * recency).astype(np.float32)


def _compiled_model(config: NeuMFConfig, plan: DpPlan | None, inter: Interactions):
    """The hybrid model, as a tensorflow-privacy ``DPModel`` when DP is on.

    Why ``DPModel`` rather than the vectorized DP Keras optimizers: its fast gradient
    clipping computes per-example gradient norms of Embedding and Dense layers from
    layer inputs and output gradients (ghost clipping), so it never materialises a
    per-example copy of the (items x dim) embedding tables, which the vectorized
    optimizers do. ``benchmarks/bench_dp_training.py`` measures the difference.
    """
    import tensorflow as tf

    from fedrec.shared.model import build_model

    kwargs = {}
    model_class = tf.keras.Model
    if plan is not None:
        from tensorflow_privacy import DPModel
        from tensorflow_privacy.privacy.fast_gradient_clipping.layer_registry import (
            make_default_layer_registry,
        )
        model_class = DPModel
        kwargs = dict(l2_norm_clip=plan.l2_norm_clip, noise_multiplier=plan.noise_multiplier,
                      use_xla=False, layer_registry=make_default_layer_registry())
    model = build_model(config.model, inter.n_users, inter.n_items,
                        inter.item_features.shape[1], model_class=model_class, **kwargs)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate),
                  loss=tf.keras.losses.BinaryCrossentropy(from_logits=True))
    return model


def run_baseline(model_name: str, inter: Interactions, split: Split, val_negatives: np.ndarray,
                 test_negatives: np.ndarray, seed: int, neumf: NeuMFConfig | None = None,
                 affinity=None, progress=None, knn_neighbours: int | None = None,
                 knn_decay: float | None = None, user_epsilon: float = 8.0) -> dict:
    """Train/evaluate one baseline; return the ``results.json`` payload (minus dataset).

    Item-kNN settings left ``None`` are chosen on the validation item
    (:func:`select_itemknn`) before the final fit on train + validation.
    """
    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; use one of {', '.join(MODELS)}")
    start = time.perf_counter()
    history, plan, params, record = [], None, {}, None
    if model_name == "popularity":
        scorer = popularity_scorer(split.with_validation_in_train())
    elif model_name == "popularity-dp":
        scorer, record = dp_popularity_scorer(split.with_validation_in_train(), user_epsilon,
                                              1.0 / split.n_users ** 1.1)
    elif model_name == "itemknn":
        params, history = select_itemknn(
            split, val_negatives,
            KNN_NEIGHBOURS if knn_neighbours is None else (knn_neighbours,),
            KNN_DECAYS if knn_decay is None else (knn_decay,))
        scorer = itemknn_scorer(split.with_validation_in_train(), params["neighbours"],
                                decay=params["decay"])
    else:
        config = neumf or NeuMFConfig()
        if model_name == "neumf-dp" and not config.dp:
            config = replace(config, dp=True, recency_decay=1.0,
                             target_epsilon=config.target_epsilon
                             or (None if config.noise_multiplier is not None else 8.0))
        scorer, history, plan = train_neumf(inter, split, val_negatives, config, seed, progress)
        params = _config_dict(config)
    metrics = evaluate(scorer, split, test_negatives, which="test", inter=inter,
                       affinity=affinity, rng=np.random.default_rng([seed, 11]))
    return {"model": model_name, "seed": seed, "metrics": metrics,
            "privacy": record or _privacy_record(plan, len(split.train_users)), "params": params,
            "history": history, "wall_seconds": time.perf_counter() - start}


def _config_dict(config: NeuMFConfig) -> dict:
    from dataclasses import asdict
    return asdict(config)


def _privacy_record(plan: DpPlan | None, n_rows: int) -> dict | None:
    """ε with RDP (the claim) and PLD (second opinion), plus every mechanism parameter."""
    if plan is None:
        return None
    event = plan.event()
    eps = privacy.epsilons(event, plan.delta, privacy.EXAMPLE_RELATION)
    return {
        "epsilon": eps["rdp"], "delta": plan.delta, "level": "example",
        "unit": "one interaction (a positive with its sampled negatives)",
        "accountant": "rdp", "epsilon_by_accountant": eps,
        "neighbouring_relation": privacy.EXAMPLE_RELATION,
        "relation_why": "q and the step count are computed from the number of rows, which "
                        "the record states: neighbours replace one interaction",
        "negatives": DP_NEGATIVES,
        "rdp_under_replace_one": privacy.EXAMPLE_RDP_METHOD, "sampling": "poisson",
        "sampling_rate": plan.sampling_rate, "steps": plan.steps, "examples": n_rows,
        "noise_multiplier": plan.noise_multiplier, "l2_norm_clip": plan.l2_norm_clip,
        "dp_event": privacy.event_to_dict(event),
        "finite": math.isfinite(eps["rdp"]),
    }
