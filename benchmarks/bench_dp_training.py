"""Seconds per DP-SGD step: tensorflow-privacy's DPModel (fast gradient clipping) vs the
vectorized DP Keras optimizer, and plain (non-DP) Keras, on the same model and batches.

    .venv/bin/python benchmarks/bench_dp_training.py --dataset movielens-100k --steps 60

This is what chose ``DPModel`` for fedrec's DP-SGD (see ``simulations/baselines.py``).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from fedrec.shared.datasets import load_dataset  # noqa: E402
from fedrec.shared.interactions import build_interactions, leave_last_out  # noqa: E402
from fedrec.shared.model import ModelConfig, build_model  # noqa: E402
from fedrec.shared.training import batch_arrays, make_rows  # noqa: E402


def _time_steps(model, batches, warmup: int = 5) -> float:
    for x, y, w in batches[:warmup]:
        model.train_on_batch(x, y, sample_weight=w)
    start = time.perf_counter()
    for x, y, w in batches[warmup:]:
        model.train_on_batch(x, y, sample_weight=w)
    return (time.perf_counter() - start) / (len(batches) - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    inter = build_interactions(load_dataset(args.dataset))
    split = leave_last_out(inter)
    rng = np.random.default_rng(0)
    rows = make_rows(split.train_users, split.train_items, split.train_weights,
                     split.train_matrix(), 4, rng)
    batches = [batch_arrays(rows, rng.choice(len(rows), args.batch_size, replace=False),
                            inter.item_features) for _ in range(args.steps)]
    n_feat = inter.item_features.shape[1]
    cfg = ModelConfig()

    def make(kind: str):
        tf.keras.utils.set_random_seed(0)
        if kind == "dpmodel":
            from tensorflow_privacy import DPModel
            from tensorflow_privacy.privacy.fast_gradient_clipping.layer_registry import (
                make_default_layer_registry,
            )
            model = build_model(cfg, inter.n_users, inter.n_items, n_feat, model_class=DPModel,
                                l2_norm_clip=1.0, noise_multiplier=1.0, use_xla=False,
                                layer_registry=make_default_layer_registry())
            model.compile(tf.keras.optimizers.Adam(1e-3),
                          tf.keras.losses.BinaryCrossentropy(from_logits=True))
        elif kind == "vectorized":
            from tensorflow_privacy import VectorizedDPKerasAdamOptimizer
            model = build_model(cfg, inter.n_users, inter.n_items, n_feat)
            model.compile(VectorizedDPKerasAdamOptimizer(l2_norm_clip=1.0, noise_multiplier=1.0,
                                                         num_microbatches=None, learning_rate=1e-3),
                          tf.keras.losses.BinaryCrossentropy(
                              from_logits=True, reduction=tf.keras.losses.Reduction.NONE))
        else:
            model = build_model(cfg, inter.n_users, inter.n_items, n_feat)
            model.compile(tf.keras.optimizers.Adam(1e-3),
                          tf.keras.losses.BinaryCrossentropy(from_logits=True))
        return model

    print(f"{args.dataset}: batch {args.batch_size}, {args.steps} steps (5 warm-up)")
    base = None
    for kind in ("plain", "dpmodel", "vectorized"):
        try:
            sec = _time_steps(make(kind), batches)
        except Exception as err:  # noqa: BLE001 - report and go on
            print(f"{kind:>11}: failed ({type(err).__name__}: {str(err).splitlines()[0][:120]})")
            continue
        base = base or sec
        print(f"{kind:>11}: {1000 * sec:8.2f} ms/step  ({sec / base:.2f}x plain)")


if __name__ == "__main__":
    main()
