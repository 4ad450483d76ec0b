"""On-device work: Federated Reconstruction training and evaluation of one user.

Federated Reconstruction (Singhal et al., NeurIPS 2021): each round a client first fits
its *private* user embedding for a few steps with the *global* weights frozen
(reconstruction), then trains the global weights with the user embedding frozen, and
returns only the global weights. The user embedding never leaves the device.

Speed: one :class:`LocalModel` (a compiled Keras model with a one-row user table and
``tf.function`` steps of fixed signature) is built per worker process and reused for
every client the worker serves; per client only weights are assigned, nothing retraces.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from fedrec.client.dp_sgd import KEY_BITS, DpSgdEngine, mean_noise_std, noise_key_words  # noqa: F401 (re-exported)
from fedrec.shared import metrics
from fedrec.shared.federated_data import ClientData
from fedrec.shared.interactions import rows_from_end
from fedrec.shared.model import (
    ModelConfig,
    build_model,
    get_global_weights,
    get_private_weights,
    global_variables,
    make_scorer,
    private_variables,
    set_weights,
)
from fedrec.shared.protocol import STREAM_USER_INIT, DpSgdPlan, LocalSettings
from fedrec.shared.training import (
    TrainingRows,
    batch_arrays,
    make_dp_rows,
    make_rows,
    shuffled_batches,
)

USER_INIT_STDDEV = 0.05  # matches the model's embedding initialiser


class LocalModel:
    """A reusable on-device model: assign weights, reconstruct, train, score."""

    def __init__(self, config: ModelConfig, n_items: int, item_features: np.ndarray) -> None:
        self.n_items = n_items
        self.item_features = item_features
        self.model = build_model(config, 1, n_items, item_features.shape[1])
        self.user_vars = private_variables(self.model)
        self.global_vars = global_variables(self.model)
        self.user_opt = tf.keras.optimizers.Adam()
        self.user_opt.build(self.user_vars)
        # the global weights' local optimiser is chosen per round (LocalSettings); each
        # (optimiser, Adam eps) gets its own optimiser and traced step, built on first use
        self._global: dict[tuple[str, float], tuple[Any, Any]] = {}
        self._loss = tf.keras.losses.BinaryCrossentropy(from_logits=True)
        # the DP-SGD engine (dp_sgd.py), built on the first DP round: it imports
        # tensorflow-privacy and adds variables a model without DP does not need
        self._dp: DpSgdEngine | None = None
        self.lazy_noise = True   # see DpSgdEngine._lazy_tables; False: eager per-step noise (tests)
        self.score_all = make_scorer(self.model, item_features)
        # rows x (1 + negatives): both vary (batch size, round config), so both are None
        spec = ({"user": tf.TensorSpec([None], tf.int32),
                 "item": tf.TensorSpec([None, None], tf.int32),
                 "item_features": tf.TensorSpec([None, None, item_features.shape[1]], tf.float32)},
                tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.float32))
        user_step = self._make_step(self.user_vars, self.user_opt)

        def user_steps(x, y, w, n):
            """``n`` full-batch reconstruction steps in one call (one dispatch, not n)."""
            loss = tf.constant(float("nan"))
            for _ in tf.range(n):
                loss = user_step(x, y, w)
            return loss

        self._user_steps = tf.function(user_steps,
                                       input_signature=(*spec, tf.TensorSpec([], tf.int32)))
        self._spec = spec

    def global_optimizer(self, settings: LocalSettings):
        """(optimiser, traced training step, the same step traced per static shape) of
        the global weights for ``settings``.

        Full batches (``batch_size`` rows) go to the static trace, where TensorFlow folds
        the shape arithmetic away (about 7% faster a step); an epoch's short last batch
        to the one traced for any shape, so that it is not traced once per size.
        """
        key = (settings.local_optimizer, settings.local_adam_eps)
        if key not in self._global:
            opt = (tf.keras.optimizers.SGD() if key[0] == "sgd"
                   else tf.keras.optimizers.Adam(epsilon=settings.local_adam_eps))
            opt.build(self.global_vars)
            step = self._make_step(self.global_vars, opt)
            self._global[key] = (opt, tf.function(step, input_signature=self._spec),
                                 tf.function(step))
        opt, step, static = self._global[key]
        opt.learning_rate.assign(settings.learning_rate)
        return opt, step, static

    def _make_step(self, variables, optimizer):
        def step(x, y, w):
            with tf.GradientTape() as tape:
                loss = self._loss(y, self.model(x, training=True), sample_weight=w)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss
        return step

    # ----- DP-SGD -----
    @property
    def dp(self) -> DpSgdEngine:
        """This model's DP-SGD engine (built on first use)."""
        if self._dp is None:
            self._dp = DpSgdEngine(self.model, self.user_vars, self.global_vars, self.n_items,
                                   self.item_features)
        return self._dp

    def train_dp(self, data: ClientData, settings: LocalSettings, plan: "DpSgdPlan",
                 rng: np.random.Generator, noise_key: int) -> tuple[float, int]:
        """Reconstruction and global training, every step DP-SGD on Poisson batches.

        ``noise_key``: the round's 128-bit key of every noise draw (secret: 128 bits of OS
        entropy; tests and seeded runs pass a derived one). Returns (mean clipped loss of
        the global steps with examples, examples). See :class:`DpSgdPlan`; with
        ``local_optimizer`` = sgd the item tables are noised lazily (same mechanism, see
        :meth:`DpSgdEngine._lazy_tables`).
        """
        dp = self.dp
        rows = self.rows(data, settings, rng, dp=True)
        if plan.reconstruction_steps:
            self.user_opt.learning_rate.assign(settings.reconstruction_lr)
        optimizers = {"user": self.user_opt, "global": self.global_optimizer(settings)[0]}
        lazy = settings.local_optimizer == "sgd" and self.lazy_noise
        losses = dp.train(rows, plan, optimizers, lazy, rng, noise_key)
        return (float(np.mean(losses)) if losses else float("nan")), len(data.train_items)

    # ----- state in and out -----
    def load(self, global_weights: dict[str, np.ndarray], private: dict[str, np.ndarray] | None,
             user_seed: tuple[int, ...]) -> None:
        """Assign the server's global weights and this user's private embedding.

        A user seen for the first time gets a fresh embedding from its own seeded stream.
        Optimiser state is reset: Adam moments must never carry over between clients.
        """
        set_weights(self.model, global_weights, "global")
        set_weights(self.model, self.initial_private(user_seed) if private is None else private,
                    "private")
        for opt in (self.user_opt, *(opt for opt, _, _ in self._global.values())):
            self._reset(opt)

    def initial_private(self, user_seed: tuple[int, ...]) -> dict[str, np.ndarray]:
        """The user's initial embedding: a draw from its own seeded stream (always the
        same one for the same user)."""
        rng = np.random.default_rng([*user_seed, STREAM_USER_INIT])
        return {name: rng.normal(0.0, USER_INIT_STDDEV, arr.shape).astype(np.float32)
                for name, arr in get_private_weights(self.model).items()}

    @staticmethod
    def _reset(optimizer) -> None:
        """Zero an optimiser's state (Adam moments, step count)."""
        for var in optimizer.variables:
            var.assign(tf.zeros_like(var))

    def global_weights(self) -> dict[str, np.ndarray]:
        return get_global_weights(self.model)

    def private_weights(self) -> dict[str, np.ndarray]:
        return get_private_weights(self.model)

    # ----- training -----
    def rows(self, data: ClientData, settings: LocalSettings,
             rng: np.random.Generator, dp: bool = False) -> TrainingRows:
        """This user's training rows (user index 0: the only row of the local user table).

        Each positive weighs its event weight times ``recency_decay ** r`` (r = 0 for the
        newest: ``data.train_items`` is in time order). Negatives avoid the items not
        released yet (``data.unavailable``) and, without ``dp``, all of the user's
        positives; with ``dp`` (the rows DP-SGD trains on) only the row's own positive,
        so that each row depends on its own interaction alone
        (:func:`fedrec.shared.training.make_dp_rows`)."""
        n = len(data.train_items)
        weights = (data.train_weights * np.power(settings.recency_decay, rows_from_end(
            np.zeros(n, np.int64), 1))).astype(np.float32)
        if dp:
            return make_dp_rows(np.zeros(n, np.int64), data.train_items, weights, self.n_items,
                                settings.negatives, rng, data.unavailable)
        avoid = np.union1d(data.train_items, data.unavailable)
        train = sp.csr_matrix((np.ones(len(avoid), np.float32),
                               (np.zeros(len(avoid), np.int64), avoid)), shape=(1, self.n_items))
        return make_rows(np.zeros(n, np.int64), data.train_items, weights, train,
                         settings.negatives, rng)

    def reconstruct(self, data: ClientData, settings: LocalSettings,
                    rng: np.random.Generator) -> float:
        """Fit the private user embedding with the global weights frozen.

        ``reconstruction_steps`` full-batch Adam steps over all of the user's training
        positives, each with ``negatives`` sampled negatives drawn once.
        """
        steps = settings.reconstruction_steps
        if steps == 0 or len(data.train_items) == 0:
            return float("nan")
        self.user_opt.learning_rate.assign(settings.reconstruction_lr)
        x, y, w = batch_arrays(self.rows(data, settings, rng),
                               np.arange(len(data.train_items)), self.item_features)
        return float(self._user_steps(x, y, w, tf.constant(steps, tf.int32)))

    def fit_for_serving(self, data: ClientData, settings: LocalSettings,
                        user_seed: tuple[int, ...], rng: np.random.Generator) -> None:
        """Fit the user embedding the device ranks with (evaluation, recommendations).

        ``serve_passes`` = 0: one reconstruction of the embedding loaded (the stored
        training one). k > 0: start from the user's initial draw and run k
        reconstructions, each over freshly drawn negatives with fresh Adam moments,
        weighing the r-th most recent positive by ``serve_recency_decay ** r``; do that
        ``serve_average`` times (the negatives drawn one after another from ``rng``) and
        keep the mean embedding. The result then depends only on the global weights
        loaded and the user's events, not on which rounds the user trained in. The
        global weights stay frozen.
        """
        if settings.serve_passes == 0:
            self.reconstruct(data, settings, rng)
            return
        weighted = replace(settings, recency_decay=settings.serve_recency_decay)
        start, fits = self.initial_private(user_seed), []
        for _ in range(settings.serve_average):
            set_weights(self.model, start, "private")
            for _ in range(settings.serve_passes):
                self._reset(self.user_opt)
                self.reconstruct(data, weighted, rng)
            fits.append(self.private_weights())
        set_weights(self.model, {name: np.mean([fit[name] for fit in fits], axis=0)
                                 for name in fits[0]}, "private")

    def train_global(self, data: ClientData, settings: LocalSettings,
                     rng: np.random.Generator) -> tuple[float, int]:
        """Local epochs on the global weights with the user embedding frozen.

        Returns (mean loss of the last epoch, rows seen per epoch).
        """
        _, step, static = self.global_optimizer(settings)
        losses: list[float] = []
        for _ in range(settings.local_epochs):
            rows = self.rows(data, settings, rng)
            losses = [float((static if len(idx) == settings.batch_size else step)(
                *batch_arrays(rows, idx, self.item_features)))
                for idx in shuffled_batches(len(rows), settings.batch_size, rng)]
        return (float(np.mean(losses)) if losses else float("nan")), len(data.train_items)

    # ----- evaluation -----
    def evaluate(self, data: ClientData, k: int = 10) -> dict[str, float]:
        """Per-user metrics of the held-out test item (sampled and full ranking).

        Values are this user's contributions (0/1 hits, NDCG terms); with
        ``num-examples`` = 1 Flower's weighted average over clients is exactly the
        mean over users.
        """
        return evaluate_scores(self.score_all(np.array([0]))[0], data, k)



def evaluate_scores(scores: np.ndarray, data: ClientData, k: int = 10) -> dict[str, float]:
    """One user's metrics of its held-out test item under ``scores`` (N,) of every item:
    the model's, or a fallback's such as popularity."""
    rank = metrics.rank_of_positive(scores[[data.test_item]], scores[data.test_negatives][None])
    seen = np.zeros((1, data.n_items), bool)
    seen[0, data.seen_for_test()] = True
    top = metrics.top_k(scores[None], k, exclude=seen)
    full = metrics.precision_recall_ndcg_at_k(top, [np.array([data.test_item])], k)
    return {f"hr@{k}": metrics.hit_rate(rank, k), f"ndcg@{k}": metrics.ndcg(rank, k),
            "mrr": metrics.mrr(rank), f"full_hr@{k}": full[f"hr@{k}"],
            f"full_ndcg@{k}": full[f"ndcg@{k}"]}


_MODELS: dict[tuple, LocalModel] = {}


def configure_worker_threads() -> None:
    """One TF thread per simulated client worker, and deterministic TF ops.

    Simulation workers each get one CPU: more intra-op threads would only contend.
    Op determinism makes a client's update a pure function of its inputs and seeds
    (multi-threaded scatter-adds of embedding gradients otherwise sum in varying order),
    which is what makes a resumed run equal an uninterrupted one.
    """
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TF already initialised in this process: keep its thread pools
    tf.config.experimental.enable_op_determinism()


def get_local_model(config: ModelConfig, item_features: np.ndarray) -> LocalModel:
    """The worker's cached :class:`LocalModel` for this model shape (built once)."""
    key = (config, item_features.shape, hash(item_features.tobytes()))
    if key not in _MODELS:
        configure_worker_threads()
        _MODELS.clear()  # one model per worker: a new shape replaces the old one
        _MODELS[key] = LocalModel(config, item_features.shape[0], item_features)
    return _MODELS[key]
