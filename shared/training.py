"""Training examples and batching for the hybrid model (used centrally and on clients).

One training *row* is one positive interaction with ``negatives`` sampled negatives:
``item`` (1 + negatives,), ``label`` ``[1, 0, ..., 0]`` and the positive's event weight.
Rows are the unit that DP-SGD clips, so "example-level" privacy in fedrec protects one
interaction (with the negatives drawn for it). That holds only if a row is a function of
its own interaction and fresh randomness: :func:`make_dp_rows` draws each row's negatives
avoiding only its own positive, so replacing one interaction changes one row's
distribution and no other. :func:`make_rows` (training without example-level DP) avoids
all of a user's positives, which makes better negatives but lets one interaction shape
the negatives of the user's other rows.

Two samplers:

- ``shuffle``: each epoch is a random permutation cut into fixed-size batches (non-DP);
- ``poisson``: each step takes every row independently with probability ``q`` (variable
  batch size), ``round(1/q)`` steps per epoch. This is the sampling that
  ``PoissonSampledDpEvent`` accounts for, so DP training must use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from fedrec.shared.interactions import sample_training_negatives

#: How example-level DP training draws negatives (manifests and DP records state it).
DP_NEGATIVES = ("per row: uniform over the catalogue except the row's own positive (and "
                "items not released yet, a public set), independent of the other rows")


@dataclass
class TrainingRows:
    """Arrays of training rows (see module docstring)."""

    user: np.ndarray    # (R,) int32
    item: np.ndarray    # (R, 1 + negatives) int32
    label: np.ndarray   # (R, 1 + negatives) float32
    weight: np.ndarray  # (R,) float32

    def __len__(self) -> int:
        return len(self.user)


def make_rows(users: np.ndarray, items: np.ndarray, weights: np.ndarray,
              train: sp.csr_matrix, negatives: int, rng: np.random.Generator) -> TrainingRows:
    """Fresh negatives for every positive (call once per epoch).

    Args:
        users, items, weights: training positives (row arrays) and each row's weight
            (event strength, recency: whatever the caller decided).
        train: (U, N) binary matrix of the items a user's negatives must avoid: its
            training positives (and, on a device, items not released yet).
        negatives: sampled negatives per positive (NCF uses 4).
        rng: seeded generator (negatives differ per epoch, reproducibly).
    """
    return _assemble(users, items, sample_training_negatives(train, users, negatives, rng),
                     weights)


def make_dp_rows(users: np.ndarray, items: np.ndarray, weights: np.ndarray, n_items: int,
                 negatives: int, rng: np.random.Generator,
                 public_avoid: np.ndarray | None = None) -> TrainingRows:
    """Rows for example-level DP-SGD: fresh negatives that depend on their own row only.

    Row i's ``negatives`` are uniform over the ``n_items`` catalogue except ``items[i]``
    and ``public_avoid`` (items no row may draw, a set fixed without looking at the data:
    on a device, the items not released yet). Rejection sampling redraws each position on
    its own, so the rows are independent given the positives and row i's distribution is
    a function of ``items[i]`` alone: substituting one interaction changes one row, the
    unit that DP-SGD clips, and leaves the distribution of every other row as it was.
    (A negative may be another of the user's positives: a noisier label, the price of
    that independence.) Weights must not couple rows either (recency decay 1).
    """
    avoid = own_positive_matrix(items, n_items, public_avoid)
    neg = sample_training_negatives(avoid, np.arange(len(items)), negatives, rng)
    return _assemble(users, items, neg, weights)


def own_positive_matrix(items: np.ndarray, n_items: int,
                        public_avoid: np.ndarray | None = None) -> sp.csr_matrix:
    """(R, n_items) binary matrix whose row i holds ``items[i]`` and ``public_avoid``."""
    items = np.asarray(items, np.int64)
    public = np.unique(np.asarray([] if public_avoid is None else public_avoid, np.int64))
    rows = np.repeat(np.arange(len(items)), 1 + len(public))
    cols = np.column_stack([items, np.broadcast_to(public, (len(items), len(public)))]).ravel()
    matrix = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)),
                           shape=(len(items), n_items))
    matrix.data[:] = 1.0   # a positive that is also public was summed to 2
    return matrix


def _assemble(users: np.ndarray, items: np.ndarray, neg: np.ndarray,
              weights: np.ndarray) -> TrainingRows:
    item = np.concatenate([items[:, None], neg], axis=1).astype(np.int32)
    label = np.zeros(item.shape, np.float32)
    label[:, 0] = 1.0
    return TrainingRows(users.astype(np.int32), item, label, weights.astype(np.float32))


def shuffled_batches(n_rows: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch as a permutation cut into batches of ``batch_size`` (last may be short)."""
    perm = rng.permutation(n_rows)
    return [perm[s:s + batch_size] for s in range(0, n_rows, batch_size)]


def poisson_batches(n_rows: int, rate: float, steps: int,
                    rng: np.random.Generator) -> list[np.ndarray]:
    """``steps`` Poisson-subsampled batches: every row joins each batch with prob ``rate``.

    Empty batches are returned (the accounting counts every step). On devices DP-SGD
    runs a noise-only step for each (``fedrec.client.dp_sgd.DpSgdEngine._dp_phase``): skipping it
    would show in the upload how many batches were empty. :func:`iterate` (central
    DP-NeuMF through tf-privacy's ``DPModel``) still skips them; there a batch is empty
    with probability ``(1 - rate)^rows`` ~ ``exp(-256)`` per step at batch 256.
    """
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"sampling rate must be in (0, 1], got {rate}")
    return [np.flatnonzero(rng.random(n_rows) < rate) for _ in range(steps)]


def batch_arrays(rows: TrainingRows, index: np.ndarray, item_features: np.ndarray
                 ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Model inputs, labels and sample weights for the rows in ``index``."""
    item = rows.item[index]
    x = {"user": rows.user[index], "item": item, "item_features": item_features[item]}
    return x, rows.label[index], rows.weight[index]


def pad_batch(batch: tuple[dict[str, np.ndarray], np.ndarray, np.ndarray], multiple: int
              ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """``batch`` (x, y, w from :func:`batch_arrays`) padded to a multiple of ``multiple``
    rows with copies of its first row at weight 0.

    A row of weight 0 has loss 0, so it adds nothing to a gradient, a clipped sum or a
    weighted loss sum, and it reads only items the batch reads anyway. Padding gives a
    traced step few distinct, static batch shapes (one trace each), where TensorFlow can
    fold the shape arithmetic away.
    """
    x, y, w = batch
    pad = -len(w) % multiple
    if pad == 0 or len(w) == 0:
        return batch
    first = np.zeros(pad, np.int64)
    return ({k: np.concatenate([v, v[first]]) for k, v in x.items()},
            np.concatenate([y, y[first]]), np.concatenate([w, np.zeros(pad, w.dtype)]))


def iterate(rows: TrainingRows, batches: list[np.ndarray], item_features: np.ndarray
            ) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    """Yield ``batch_arrays`` for each non-empty batch."""
    for index in batches:
        if len(index):
            yield batch_arrays(rows, index, item_features)


def keras_dataset(rows: TrainingRows, batches: list[np.ndarray], item_features: np.ndarray):
    """A ``tf.data.Dataset`` over ``batches`` with a fixed signature (no retracing)."""
    import tensorflow as tf

    n_items_per_row = rows.item.shape[1]
    n_features = item_features.shape[1]
    signature = (
        {"user": tf.TensorSpec([None], tf.int32),
         "item": tf.TensorSpec([None, n_items_per_row], tf.int32),
         "item_features": tf.TensorSpec([None, n_items_per_row, n_features], tf.float32)},
        tf.TensorSpec([None, n_items_per_row], tf.float32),
        tf.TensorSpec([None], tf.float32),
    )
    return tf.data.Dataset.from_generator(
        lambda: iterate(rows, batches, item_features), output_signature=signature
    ).prefetch(2)
