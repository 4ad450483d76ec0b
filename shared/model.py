"""The NCF-style hybrid model and its global/private weight split.

Architecture (He et al., "Neural Collaborative Filtering", WWW 2017, plus a content tower):

- GMF branch: ``p_u ⊙ q_i`` (collaborative filtering as a generalised dot product);
- MLP branch: ``MLP([p'_u, q'_i])``;
- item content tower: ``h_i = relu(W f_i)`` over item attributes ``f_i`` (categories, price
  bucket), projected and *added* to both item embeddings, so an item never seen in training
  still gets a useful vector (cold start);
- prediction: one logit from ``[GMF, MLP]``.

The model scores a *list* of items per user: inputs ``user`` (B,), ``item`` (B, L) and
``item_features`` (B, L, F), output logits (B, L). Training uses lists of one positive and
its sampled negatives, so one row is one interaction: the unit that example-level DP-SGD
clips.

Weights are split **by layer name**: layers whose name starts with :data:`PRIVATE_PREFIX`
(the user embeddings) are *private*, they never leave a device; every other trainable
weight is *global*, the part federation averages.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from fedrec.shared.model_config import ModelConfig  # noqa: F401  (re-exported)

PRIVATE_PREFIX = "user_"


class _BroadcastUser(tf.keras.layers.Layer):
    """Repeat a (B, D) user vector along the item axis of a (B, L, D') tensor."""

    def call(self, inputs):
        user, items = inputs
        return tf.broadcast_to(tf.expand_dims(user, 1),
                               tf.concat([tf.shape(items)[:2], tf.shape(user)[1:]], 0))


class _Squeeze(tf.keras.layers.Layer):
    """(B, L, 1) logits -> (B, L)."""

    def call(self, inputs):
        return tf.squeeze(inputs, axis=-1)


def build_model(config: ModelConfig, n_users: int, n_items: int, n_features: int,
                model_class: type = tf.keras.Model, **model_kwargs) -> tf.keras.Model:
    """Build the hybrid model (uncompiled).

    Args:
        config: sizes.
        n_users: rows of the user embeddings (1 on a federated client: its own user).
        n_items: rows of the item embeddings (the catalogue).
        n_features: width of the item content features (0: no content tower).
        model_class: ``tf.keras.Model`` or a DP subclass such as tensorflow-privacy's
            ``DPModel``; ``model_kwargs`` go to its constructor (clip norm, noise...).
    """
    reg = tf.keras.regularizers.l2(config.l2) if config.l2 else None
    user = tf.keras.Input(shape=(), dtype=tf.int32, name="user")
    item = tf.keras.Input(shape=(None,), dtype=tf.int32, name="item")
    feats = tf.keras.Input(shape=(None, n_features), dtype=tf.float32, name="item_features")

    def emb(rows: int, dim: int, name: str) -> tf.keras.layers.Embedding:
        return tf.keras.layers.Embedding(rows, dim, name=name, embeddings_regularizer=reg,
                                         embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05))

    p_gmf = emb(n_users, config.gmf_dim, PRIVATE_PREFIX + "gmf_embedding")(user)
    p_mlp = emb(n_users, config.mlp_embedding_dim, PRIVATE_PREFIX + "mlp_embedding")(user)
    q_gmf = emb(n_items, config.gmf_dim, "item_gmf_embedding")(item)
    q_mlp = emb(n_items, config.mlp_embedding_dim, "item_mlp_embedding")(item)
    if n_features and config.content_dim:
        hidden = tf.keras.layers.Dense(config.content_dim, activation="relu",
                                       name="content_tower_hidden")(feats)
        q_gmf = tf.keras.layers.Add()([q_gmf, tf.keras.layers.Dense(
            config.gmf_dim, name="content_tower_gmf")(hidden)])
        q_mlp = tf.keras.layers.Add()([q_mlp, tf.keras.layers.Dense(
            config.mlp_embedding_dim, name="content_tower_mlp")(hidden)])
    gmf = tf.keras.layers.Multiply(name="gmf")([_BroadcastUser()([p_gmf, q_gmf]), q_gmf])
    x = tf.keras.layers.Concatenate(name="mlp_input")([_BroadcastUser()([p_mlp, q_mlp]), q_mlp])
    for depth, width in enumerate(config.mlp_layers):
        x = tf.keras.layers.Dense(width, activation="relu", name=f"mlp_{depth}")(x)
    both = tf.keras.layers.Concatenate(name="neumf")([gmf, x])
    logits = _Squeeze(name="logits")(tf.keras.layers.Dense(1, name="prediction")(both))
    return model_class(inputs={"user": user, "item": item, "item_features": feats},
                       outputs=logits, name="fedrec_hybrid", **model_kwargs)


def is_private(variable: tf.Variable) -> bool:
    """True for weights that must never leave the device (the user embeddings)."""
    return variable.name.split("/")[0].startswith(PRIVATE_PREFIX)


def private_variables(model: tf.keras.Model) -> list[tf.Variable]:
    """The private group: user embeddings, in a fixed order."""
    return [v for v in model.trainable_variables if is_private(v)]


def global_variables(model: tf.keras.Model) -> list[tf.Variable]:
    """The global group: item embeddings, content tower, MLP and prediction layer."""
    return [v for v in model.trainable_variables if not is_private(v)]


def variable_names(variables: list[tf.Variable]) -> list[str]:
    """Stable names (``layer/weight``) used as keys when weights travel."""
    return [v.name.split(":")[0] for v in variables]


def get_global_weights(model: tf.keras.Model) -> dict[str, np.ndarray]:
    """Global group as ``{name: array}`` (what a client may upload)."""
    variables = global_variables(model)
    return dict(zip(variable_names(variables), (v.numpy() for v in variables)))


def get_private_weights(model: tf.keras.Model) -> dict[str, np.ndarray]:
    """Private group as ``{name: array}`` (what stays on the device)."""
    variables = private_variables(model)
    return dict(zip(variable_names(variables), (v.numpy() for v in variables)))


def set_weights(model: tf.keras.Model, weights: dict[str, np.ndarray], group: str) -> None:
    """Assign a named weight group (``"global"`` or ``"private"``) into ``model``.

    Raises ``ValueError`` on a missing name or a shape mismatch, so that a malformed
    update can never be half-applied.
    """
    variables = global_variables(model) if group == "global" else private_variables(model)
    names = variable_names(variables)
    missing = sorted(set(names) - set(weights))
    if missing:
        raise ValueError(f"{group} weights missing: {missing}")
    for name, var in zip(names, variables):
        if tuple(weights[name].shape) != tuple(var.shape):
            raise ValueError(f"{name}: shape {weights[name].shape} != {tuple(var.shape)}")
    for name, var in zip(names, variables):
        var.assign(weights[name])


def make_scorer(model: tf.keras.Model, item_features: np.ndarray,
                users_per_batch: int = 64):
    """Return ``score(users) -> (len(users), N)`` logits of every catalogue item.

    One ``tf.function`` with a fixed signature serves every batch (no retracing); item
    features are broadcast inside the graph instead of being copied per user.
    """
    n_items = item_features.shape[0]
    feats = tf.constant(item_features, tf.float32)
    all_items = tf.range(n_items, dtype=tf.int32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def _score(users):
        b = tf.shape(users)[0]
        items = tf.broadcast_to(all_items[None, :], [b, n_items])
        f = tf.broadcast_to(feats[None], [b, n_items, feats.shape[-1]])
        return model({"user": users, "item": items, "item_features": f}, training=False)

    def score(users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, np.int32)
        parts = [_score(tf.constant(users[s:s + users_per_batch])).numpy()
                 for s in range(0, len(users), users_per_batch)]
        return np.concatenate(parts) if parts else np.zeros((0, n_items), np.float32)

    return score
