"""DP-SGD on a device: the engine that runs the noisy steps of a Federated Reconstruction round.

Each step clips per-example gradients with tensorflow-privacy's fast gradient clipping
(over exactly the weights of the step's phase), adds Gaussian noise of std
``z * C / B`` on the mean over the *expected* batch size B (drawn from a stateless Philox
generator keyed by the round's secret 128-bit key), and applies the step. Batches are
Poisson samples of the device's rows, padded to a few static shapes; an empty batch still
runs its noisy step. The accounted event is :class:`fedrec.shared.protocol.DpSgdPlan`'s.
Plain training, reconstruction and evaluation are :mod:`fedrec.client.local`'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from fedrec.shared.protocol import DpSgdPlan
from fedrec.shared.training import TrainingRows, batch_arrays, pad_batch, poisson_batches

#: The item embedding tables (layer names), noised lazily under DP-SGD with plain SGD.
ITEM_TABLES = ("item_gmf_embedding", "item_mlp_embedding")
#: Noise streams of a step: its own draw and the lazy catch-up draw (apart by key).
STEP_STREAM, LAZY_STREAM = 0, 1
KEY_BITS = 128   # a device's DP noise key: two 64-bit words, all of them secret
#: Philox on every device: TF scrambles both seed words into Philox's 64-bit key and
#: 64 bits of its counter (``auto_select`` leaves that to the device, ThreeFry on a TPU,
#: and TF's explicit ThreeFry path keeps only 64 bits of the seed).
NOISE_ALG = "philox"
#: DP-SGD pads each Poisson batch to a multiple of this many rows (weight 0, see
#: ``fedrec.shared.training.pad_batch``): a few static shapes instead of one per batch size.
DP_PAD_ROWS = 16


def noise_key_words(key: int) -> tuple[int, int]:
    """A 128-bit DP noise key (an int in [0, 2^128)) as two signed int64 words, the form
    of a TF stateless seed. TF scrambles the two words through Philox into a 64-bit key
    and 64 bits of counter, so all 128 bits of the key shape every draw."""
    if not 0 <= key < 1 << KEY_BITS:
        raise ValueError(f"the DP noise key must be in [0, 2^{KEY_BITS}), got {key}")
    words = (key >> 64, key & ((1 << 64) - 1))
    return tuple(w - (1 << 64) if w >= 1 << 63 else w for w in words)


def mean_noise_std(noise_multiplier, clip, batch):
    """Noise std on a mean of clipped gradients over ``batch`` examples: z * C / B
    (tensorflow-privacy's scale for a mean loss)."""
    return noise_multiplier * clip / batch


class DpSgdEngine:
    """The DP-SGD steps of one on-device model: tensorflow-privacy's fast gradient
    clipping, the Gaussian noise of each step, the item tables' lazy noise.

    It owns what a DP round needs besides the model's weights: the round's mechanism
    (clip, noise multiplier, expected batch), its 128-bit noise key and step counters (TF
    variables, so that the traced steps read them without retracing), the step each item
    row last got its noise, and the traced steps, one per (phase, optimiser, lazy). The
    model's two weight groups are trained in separate phases: ``user_vars``
    (reconstruction) and ``global_vars``.

    Why fast gradient clipping (the machinery of ``DPModel``) and not the vectorized
    DP Keras optimizers: it gets per-example gradient norms of Embedding and Dense
    layers from layer inputs and output gradients, never materialising a per-example
    copy of the (items x dim) embedding tables; ``benchmarks/bench_dp_training.py``
    measures both (1.4x vs 19x the cost of plain training). ``DPModel.train_step``
    itself cannot be used: it applies gradients to *all* trainable weights, while
    Federated Reconstruction updates the user embedding and the global weights in
    separate phases; :meth:`clipped_sum` runs tf-privacy's pieces over exactly the
    weights of the step's phase.
    """

    def __init__(self, model, user_vars: list, global_vars: list, n_items: int,
                 item_features: np.ndarray) -> None:
        """Engine of ``model`` (weight groups ``user_vars``, ``global_vars``; ``n_items``
        rows in each item table; ``item_features`` [items, features] of the batches)."""
        from tensorflow_privacy.privacy.fast_gradient_clipping.layer_registry import (
            make_default_layer_registry,
        )

        tf.get_logger().setLevel("ERROR")  # AutoGraph notes about tf-privacy's helpers
        self.registry = make_default_layer_registry()
        self.model, self.item_features = model, item_features
        self.user_vars, self.global_vars = user_vars, global_vars
        self._per_example_loss = tf.keras.losses.BinaryCrossentropy(   # DP-SGD clips these
            from_logits=True, reduction=tf.keras.losses.Reduction.NONE)
        self._last_noised = tf.Variable(tf.zeros([n_items], tf.int32), trainable=False)
        # (clip, noise multiplier, expected batch size) of the round being trained
        self._dp_mechanism = tf.Variable(tf.zeros([3], tf.float32), trainable=False)
        # the round's 128-bit noise key as two int64 words (noise_key_words)
        self._dp_key = tf.Variable(tf.zeros([2], tf.int64), trainable=False)
        # (step, lazy-noise step): each step adds (1, 1) before it draws, so a step takes
        # no per-call counter argument (less call overhead)
        self._dp_counters = tf.Variable(tf.zeros([2], tf.int64), trainable=False)
        self.steps_run = 0        # noisy steps of the last round (each draws its noise)
        self._lazy_pending = False   # lazy noise owed since the last flush (a round broke off)
        # (phase, id of the optimiser, lazy) -> traced (step, last step)
        self._dp_steps: dict[tuple[str, int, bool], tuple[Any, Any]] = {}

    def _dp_step_fn(self, phase: str, optimizer, lazy: bool):
        """The traced DP-SGD step of one phase, one per (phase, optimiser, lazy), traced
        again for each static batch shape (fast clipping needs the row width static
        anyway). The batches come padded to a multiple of ``DP_PAD_ROWS`` rows
        (:meth:`_dp_phase`), so a client sees a few shapes, and with static shapes
        TensorFlow folds away the shape arithmetic of tf-privacy's norm computations
        (about 16% of a step).

        Noise: std ``noise_multiplier * clip / B`` on the mean of clipped gradients over the
        *expected* batch size B, tensorflow-privacy's ``add_aggregate_noise`` scale for a
        mean loss (``tests/test_dp.py`` checks the two agree). It is drawn here with a *stateless*
        Philox generator keyed by the round's 128-bit key and the step
        (:meth:`_step_seed`) because tf-privacy's helper
        draws from TF's global generator, whose seed a traced function freezes at trace
        time: every client served by one worker would then add the same noise.

        ``lazy`` (plain SGD only, see :meth:`_lazy_tables`): the item tables' noise is
        added to a row only when a step reads it, and to every row after the phase's last
        step. Returns (step, last step): the last step also adds that remaining noise (one
        call, not two; without lazy noise the two are the same function).
        """
        variables = self.user_vars if phase == "user" else self.global_vars
        tables = self._lazy_tables(variables) if lazy else {}
        dense = [i for i in range(len(variables)) if i not in tables]
        sizes = [int(np.prod(variables[i].shape)) for i in dense]

        def mechanism():
            """(clip, expected batch, noise std on the mean, the lazy tables' noise std
            per step: times the learning rate), from the round's ``_dp_mechanism``."""
            clip, noise_multiplier, expected_batch = tf.unstack(self._dp_mechanism)
            scale = mean_noise_std(noise_multiplier, clip, expected_batch)
            return clip, expected_batch, scale, tf.cast(optimizer.learning_rate, tf.float32) * scale

        def step(x, y, w):
            # the round's mechanism and the step's counters are read from variables:
            # fewer arguments, less call overhead
            clip, expected_batch, scale, step_scale = mechanism()
            counters = self._dp_counters.assign_add(tf.constant([1, 1], tf.int64))
            seed, t = self._step_seed(counters[0], STEP_STREAM), tf.cast(counters[1], tf.int32)
            if tables:   # the rows this step reads get the noise of the steps before it
                rows = tf.unique(tf.reshape(x["item"], [-1]))[0]
                self._add_missed_noise(tables, rows, t - 1, step_scale,
                                       self._step_seed(counters[0], LAZY_STREAM))
            clipped, loss = self.clipped_sum(variables, x, y, w, clip, expected_batch)
            # every other gradient gets its noise now, in one draw (one op, not one per
            # variable: at this model size a step's cost is mostly its number of ops)
            flat = tf.concat([tf.reshape(tf.convert_to_tensor(clipped[i]), [-1])
                              for i in dense], axis=0)
            flat = flat + scale * tf.random.stateless_normal(tf.shape(flat), seed, alg=NOISE_ALG)
            noisy = dict(zip(dense, (tf.reshape(part, variables[i].shape) for i, part in
                                     zip(dense, tf.split(flat, sizes)))))
            noisy.update({i: clipped[i] for i in tables})   # their noise: at the next read
            optimizer.apply_gradients((noisy[i], v) for i, v in enumerate(variables))
            return loss

        def flush():
            """Every row of the lazy tables gets the noise of the steps it missed, with
            the seed of the step after the last; the next round starts with none owed."""
            counters = self._dp_counters.read_value()
            self._add_missed_noise(tables, None, tf.cast(counters[1], tf.int32), mechanism()[3],
                                   self._step_seed(counters[0] + 1, STEP_STREAM))

        traced = tf.function(step)
        if not tables:
            return traced, traced

        def last_step(x, y, w):
            loss = step(x, y, w)
            flush()
            return loss
        return traced, tf.function(last_step)

    def _step_seed(self, step, stream: int):
        """The stateless seed of one draw: the round's key with (2 step + stream) XORed
        into its second word. Distinct draws get distinct seeds, each as secret as the
        128-bit key (no fold-in: TF's ``stateless_fold_in`` keeps 64 bits)."""
        tweak = 2 * tf.cast(step, tf.int64) + stream
        return tf.stack([self._dp_key[0], tf.bitwise.bitwise_xor(self._dp_key[1], tweak)])

    def clipped_sum(self, variables, x, y, w, clip, expected_batch):
        """(sum over the batch of per-example gradients clipped to L2 norm ``clip``,
        divided by ``expected_batch``; the loss that is its gradient), over ``variables``.

        The accounted mechanism is that sum plus N(0, (z C)^2), over the expected batch
        size, a constant: dividing by the drawn size, as ``DPModel`` does, would leak it.
        tensorflow-privacy's pieces do the DP work: its layer registry records each
        layer's inputs and output gradients in one forward pass and turns them into
        per-example squared gradient norms (only for the layers that own ``variables``:
        the clip bounds exactly what the step updates), and ``compute_clip_weights``
        gives each example its factor min(1, C / norm). Where tf-privacy's
        ``compute_clipped_gradients_and_outputs`` then runs the model forward and
        backward a second time, the clipped sum here is assembled from what the one
        backward pass already holds (:func:`_clipped_layer_gradients`): the same numbers
        (``tests/test_dp.py`` compares the two for either phase), for less work. That,
        and choosing the phase's layers here rather than toggling Keras' ``trainable``
        (about 0.2 ms a call) as tf-privacy's function would need, is what
        ``benchmarks/bench_local_dp.py --optimizer sgd`` measures against plain training.
        """
        from tensorflow_privacy.privacy.fast_gradient_clipping import clip_grads
        from tensorflow_privacy.privacy.fast_gradient_clipping.gradient_clipping_utils import (
            model_forward_pass,
        )

        owners = {id(v) for v in variables}
        tape = tf.GradientTape(watch_accessed_variables=False)
        registry_fn = clip_grads.get_registry_generator_fn(tape, self.registry, None)

        def record(layer, args, kwargs):
            """tf-privacy's registry for the step's layers, plus the layer and its input;
            a plain call for the rest."""
            if any(id(v) in owners for v in layer.weights):
                outputs, (base, sqr_norm, _) = registry_fn(layer, args, kwargs)
                return outputs, (base, sqr_norm, layer, args[0])
            return layer(*args, **kwargs), None

        with tape:
            outputs, recorded = model_forward_pass(self.model, x, generator_fn=record)
            losses = self._per_example_loss(y, outputs, w)
            summed = tf.reduce_sum(losses)
        recorded = [r for r in recorded if r is not None]
        layer_grads = tape.gradient(summed, [r[0] for r in recorded],
                                    unconnected_gradients=tf.UnconnectedGradients.ZERO)
        norms = tf.sqrt(tf.add_n([r[1](g) for g, r in zip(layer_grads, recorded)]))
        factors = clip_grads.compute_clip_weights(clip, norms) / expected_batch
        clipped = _clipped_layer_gradients(
            [(r[2], r[3], g) for r, g in zip(recorded, layer_grads)], factors)
        missing = [v.name for v in variables if id(v) not in clipped]
        if missing:
            raise ValueError(f"DP-SGD: no recorded layer owns {missing}")
        return [clipped[id(v)] for v in variables], tf.reduce_sum(losses * factors)

    def _lazy_tables(self, variables) -> dict[int, tf.Variable]:
        """Lazy noise for the item embedding tables under DP-SGD with plain SGD.

        Most of the global group is the two (items x dim) item tables, and a step reads
        only the few rows of its batch, so drawing dense noise for every row every step
        is mostly work for rows nobody reads. With plain SGD a row that a step does not
        read only receives that step's noise, ``-lr * N(0, s^2)`` (s = z C / B), and
        nothing reads it until a later step looks it up or the round ends. So each row
        keeps the last step whose noise it has, and just before a step reads it (and,
        for every row, after the last step) gets the sum of the noise it missed:
        ``-lr * N(0, k s^2)`` for k missed steps, the same distribution as k separate
        draws. Every weight the model computes with and every weight it uploads is thus
        distributed exactly as under eager per-step noise: the same mechanism, the same
        ε, at the cost of noising the rows a batch reads. A step's own noise on a row it
        read is part of that row's next catch-up. Not with Adam, whose update of a row
        depends on its whole noise history.

        Both tables are read at the same rows, so one counter per item serves both.
        Returns {index in ``variables``: table}.
        """
        return {i: v for i, v in enumerate(variables) if v.name.split("/")[0] in ITEM_TABLES}

    def _add_missed_noise(self, tables: dict, rows, through, step_scale, seed) -> None:
        """Give ``rows`` (None: every row) of the lazy ``tables`` the noise of the steps
        up to ``through`` that they have not had: ``-step_scale * N(0, k)`` for k missed
        steps (step_scale: the learning rate times one step's noise std)."""
        last = self._last_noised if rows is None else tf.gather(self._last_noised, rows)
        missed = tf.sqrt(tf.cast(through - last, tf.float32))[:, None]
        dims = [table.shape[1] for table in tables.values()]
        draws = tf.split(tf.random.stateless_normal([tf.size(last), sum(dims)], seed,
                                                    alg=NOISE_ALG), dims, axis=1)
        for table, draw in zip(tables.values(), draws):
            if rows is None:   # the end of the round: dense, cheaper than a full scatter
                table.assign_sub(step_scale * missed * draw)
            else:
                table.scatter_sub(tf.IndexedSlices(step_scale * missed * draw, rows))
        through = tf.cast(through, tf.int32)
        if rows is None:   # the end of the round: no row owes noise for the next one
            self._last_noised.assign(tf.zeros_like(last))
        else:
            self._last_noised.scatter_update(tf.IndexedSlices(tf.fill(tf.shape(rows), through),
                                                              rows))

    def train(self, rows: TrainingRows, plan: DpSgdPlan, optimizers: dict[str, Any],
              lazy: bool, rng: np.random.Generator, noise_key: int) -> list[float]:
        """One round's DP-SGD phases, reconstruction (``user``) then ``global``, with
        ``plan``'s steps each on Poisson batches of ``rows``; returns the losses of the
        global steps that had examples.

        ``optimizers``: each phase's optimiser (its learning rate already set).
        ``lazy``: the item tables are noised lazily in the global phase (plain SGD only,
        same mechanism, see :meth:`_lazy_tables`). ``noise_key``: the round's 128-bit key
        of every noise draw (secret: 128 bits of OS entropy; tests and seeded runs pass a
        derived one).
        """
        self._dp_key.assign(noise_key_words(noise_key))
        self.steps_run = 0
        self._dp_mechanism.assign([plan.clip, plan.noise_multiplier, plan.rate * len(rows)])
        losses, counter = [], 0
        for phase, steps in (("user", plan.reconstruction_steps),
                             ("global", plan.training_steps)):
            if steps == 0:
                continue
            optimizer = optimizers[phase]
            phase_lazy = phase == "global" and lazy
            key = (phase, id(optimizer), phase_lazy)
            if key not in self._dp_steps:
                self._dp_steps[key] = self._dp_step_fn(phase, optimizer, phase_lazy)
            if phase_lazy and self._lazy_pending:   # a round broke off: start with none owed
                self._last_noised.assign(tf.zeros_like(self._last_noised))
            self._lazy_pending = phase_lazy
            phase_losses, counter = self._dp_phase(self._dp_steps[key], rows, plan.rate,
                                                   steps, rng, counter)
            self._lazy_pending = False   # the last step added what was owed
            if phase == "global":
                losses = phase_losses
        return losses

    def _dp_phase(self, steps_fn, rows: TrainingRows, rate: float, steps: int,
                  rng: np.random.Generator, counter: int) -> tuple[list[float], int]:
        """``steps`` DP-SGD steps on Poisson(``rate``) batches of ``rows`` with the traced
        (step, last step) ``steps_fn``; returns the losses of the steps that had
        examples and the round's step counter after them (``counter`` before).

        Every step runs and draws its noise, an empty Poisson batch too (a batch of
        weight-0 rows: a zero clipped sum plus the noise): skipping it would leave its
        noise out of the upload, and the upload would tell how many batches were empty.
        """
        batches = poisson_batches(len(rows), rate, steps, rng)
        losses = []
        self._dp_counters.assign([counter, 0])   # (the step's seed, its lazy-noise step)
        for i, idx in enumerate(batches):
            step = steps_fn[1] if i == len(batches) - 1 else steps_fn[0]
            if len(idx):
                batch = pad_batch(batch_arrays(rows, idx, self.item_features), DP_PAD_ROWS)
                losses.append(float(step(*batch)))
            else:
                step(*self._noise_only_batch(rows))
            self.steps_run += 1
        return losses, counter + len(batches)

    def _noise_only_batch(self, rows: TrainingRows):
        """``DP_PAD_ROWS`` copies of row 0 at weight 0: loss 0, so a zero gradient and a
        zero clipped sum (``fedrec.shared.training.pad_batch`` pads with such rows too)."""
        x, y, w = batch_arrays(rows, np.zeros(DP_PAD_ROWS, np.int64), self.item_features)
        return x, y, np.zeros_like(w)


def _clipped_layer_gradients(recorded, factors) -> dict[int, Any]:
    """{id(variable): sum over examples of factor_b x example b's gradient}, for every
    weight of the recorded layers, from one backward pass (per-example "book-keeping",
    Bu et al. 2023).

    ``recorded``: (layer, its input, the gradient tensorflow-privacy's registry asked
    for), where that gradient is the summed loss's gradient with respect to the Embedding
    table (its rows, as ``IndexedSlices``) or the Dense layer's pre-activation output.
    ``factors`` [batch]: each example's clip weight, already over the expected batch.
    An Embedding row read by example b gets factor_b times its gradient (the table's
    gradient rows come in the order of the lookup's ids, example by example: each table
    is read once per forward pass, as tf-privacy's embedding norm assumes too); a Dense
    kernel gets input^T (factor x output gradient), its bias the sum of the latter,
    summed over the examples and any inner axes (the row's items). Other layers raise.
    """
    grads: dict[int, Any] = {}
    for layer, inputs, grad in recorded:
        if isinstance(layer, tf.keras.layers.Embedding):
            width = grad.values.shape[-1]
            values = tf.reshape(grad.values, [tf.shape(factors)[0], -1, width])
            grads[id(layer.embeddings)] = tf.IndexedSlices(
                tf.reshape(values * factors[:, None, None], [-1, width]), grad.indices,
                grad.dense_shape)
        elif isinstance(layer, tf.keras.layers.Dense):
            weighted = grad * tf.reshape(factors, [-1] + [1] * (grad.shape.rank - 1))
            weighted = tf.reshape(weighted, [-1, weighted.shape[-1]])
            flat_in = tf.reshape(inputs, [-1, inputs.shape[-1]])
            grads[id(layer.kernel)] = tf.matmul(flat_in, weighted, transpose_a=True)
            if layer.use_bias:
                grads[id(layer.bias)] = tf.reduce_sum(weighted, axis=0)
        else:
            raise NotImplementedError(
                f"DP-SGD: no clipped gradient for a {type(layer).__name__} layer")
    return grads
