"""``fedrec baseline``: load a dataset, run centralized baselines, write results, print a table."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

import numpy as np
from rich.table import Table

from fedrec.shared.errors import ConfigError, DataError
from fedrec.shared.interactions import (
    Interactions,
    Split,
    build_interactions,
    evaluation_negatives,
    leave_last_out,
)
from fedrec.shared.model import ModelConfig
from fedrec.shared.runinfo import versions, write_json_atomic
from fedrec.shared.schema import Dataset, fingerprint
from fedrec.simulations.baselines import MODELS, NeuMFConfig, run_baseline
from fedrec.simulations.progress import TrainingProgress, console, report

log = logging.getLogger("fedrec.baseline")


@dataclass
class Prepared:
    """A dataset ready for evaluation: indexed, split, with fixed sampled negatives."""

    dataset: Dataset
    inter: Interactions
    split: Split
    val_negatives: np.ndarray
    test_negatives: np.ndarray
    fingerprint: str


def prepare(dataset: Dataset, seed: int, n_negatives: int = 99) -> Prepared:
    """Index, split (leave-last-out) and draw the NCF protocol's sampled negatives."""
    inter = build_interactions(dataset)
    split = leave_last_out(inter)
    if len(split.test_users) == 0:
        raise DataError(dataset.name, "no user has the 3 interactions needed for "
                        "train, validation and test")
    return Prepared(dataset, inter, split,
                    evaluation_negatives(split, n_negatives, seed, "val"),
                    evaluation_negatives(split, n_negatives, seed, "test"),
                    fingerprint(dataset))


def parse_models(spec: str) -> list[str]:
    models = list(MODELS) if spec == "all" else [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ConfigError(f"--model: unknown {', '.join(unknown) or '(empty)'}; "
                          f"use {', '.join(MODELS)} or all")
    return models


def neumf_config(args: argparse.Namespace, dp: bool) -> NeuMFConfig:
    """The typed training config from flags (validated once, here)."""
    target = args.target_epsilon
    if dp and target is None and args.noise_multiplier is None:
        target = 8.0
    if args.delta is not None and not 0 < args.delta < 1:
        raise ConfigError(f"--delta must be in (0, 1), got {args.delta}")
    try:
        dims = ModelConfig(gmf_dim=args.dim, mlp_embedding_dim=args.dim,
                           mlp_layers=(2 * args.dim, args.dim, args.dim // 2 or 1))
        decay = 1.0 if dp and args.recency_decay is None else args.recency_decay
        return NeuMFConfig(epochs=args.epochs, batch_size=args.batch_size,
                           learning_rate=args.lr, negatives=args.negatives, model=dims, dp=dp,
                           **({} if decay is None else {"recency_decay": decay}),
                           l2_norm_clip=args.clip, noise_multiplier=args.noise_multiplier if dp else None,
                           target_epsilon=target if dp else None, delta=args.delta)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    from fedrec.shared.datasets import load_dataset

    models = parse_models(args.model)
    if args.neighbours is not None and args.neighbours < 1:
        raise ConfigError(f"--neighbours must be >= 1, got {args.neighbours}")
    if args.recency_decay is not None and not 0 < args.recency_decay <= 1:
        raise ConfigError(f"--recency-decay must be in (0, 1], got {args.recency_decay}")
    configs = {m: neumf_config(args, dp=(m == "neumf-dp")) for m in models}  # validate first
    if args.seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    records = []
    for seed in range(args.seed, args.seed + args.seeds):
        data = prepare(load_dataset(args.dataset, seed=seed), seed)
        log.info("%s: %d users, %d items, %d training interactions, %d evaluated users",
                 data.dataset.name, data.inter.n_users, data.inter.n_items,
                 len(data.split.train_users), len(data.split.test_users))
        for model in models:
            log.info("model %s, seed %d", model, seed)
            with TrainingProgress(model) as progress:
                try:
                    result = run_baseline(model, data.inter, data.split, data.val_negatives,
                                          data.test_negatives, seed, neumf=configs[model],
                                          affinity=data.dataset.affinity, progress=progress,
                                          knn_neighbours=args.neighbours,
                                          knn_decay=args.recency_decay,
                                          user_epsilon=args.user_epsilon)
                except ValueError as err:   # e.g. delta >= 1/rows, known only with the data
                    raise ConfigError(f"{model}: {err}") from None
            records.append({"dataset": data.dataset.name, **result,
                            "data_fingerprint": data.fingerprint, "versions": versions()})
    write_json_atomic(args.out, records[0] if len(records) == 1 else records)
    report.print(results_table(records))
    console.print(f"results written to {args.out}")
    return 0


def results_table(records: list[dict]) -> Table:
    """HR@10, NDCG@10 (sampled, NCF protocol), full-ranking HR@10, coverage, simulated
    CTR@10 (synthetic data only), ε and wall time."""
    table = Table(title="fedrec baselines (leave-last-out, 99 sampled negatives)")
    for col in ("dataset", "model", "seed", "HR@10", "NDCG@10", "full HR@10",
                "coverage@10", "CTR@10", "ε", "seconds"):
        table.add_column(col, justify="right" if col not in ("dataset", "model") else "left")
    for r in records:
        m, p = r["metrics"], r["privacy"]
        table.add_row(r["dataset"], r["model"], str(r["seed"]), f"{m['hr@10']:.4f}",
                      f"{m['ndcg@10']:.4f}", f"{m.get('full_hr@10', float('nan')):.4f}",
                      f"{m.get('coverage@10', float('nan')):.3f}",
                      f"{m['ctr@10']:.3f}" if "ctr@10" in m else "-",
                      "∞ (no DP)" if p is None else f"{p['epsilon']:.2f} ({p['level']})",
                      f"{r['wall_seconds']:.1f}")
    return table
