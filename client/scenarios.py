"""Simulated device behaviour for scenario runs (``fedrec simulate`` / sweep switches).

Every draw is seeded from (seed, user[, round]) so a scenario is reproducible; none of
it runs unless its switch is set in the run config.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from fedrec.shared.config import RunConfig
from fedrec.shared.federated_data import ClientData
from fedrec.shared.protocol import (
    STREAM_LATE_USER,
    STREAM_NEW_ITEMS,
    STREAM_SCENARIO,
    STREAM_STRAGGLER,
)


def scenario(cfg: RunConfig, user: int, rnd: int, store) -> str | None:
    """This device's scenario for round ``rnd`` (cold start, ``participation-window``,
    ``dropout``, stragglers).

    Returns a reason to decline, sleeps for a straggler, raises for a dropout: the device
    fails mid-round before it trains, so nothing is spent or saved.
    """
    if is_late(cfg, user) and rnd < cfg.join_round:
        return f"cold start: joins in round {cfg.join_round}"
    if cfg.participation_window and (last := store.last_round()) is not None \
            and rnd - last < cfg.participation_window:
        return (f"participation window: took part in round {last}, next eligible in round "
                f"{last + cfg.participation_window}")
    if cfg.dropout and np.random.default_rng([cfg.seed, user, rnd, STREAM_SCENARIO]).random() \
            < cfg.dropout:
        raise RuntimeError(f"simulated dropout of client {user} in round {rnd}")
    if cfg.straggler_fraction and np.random.default_rng(
            [cfg.seed, user, STREAM_STRAGGLER]).random() < cfg.straggler_fraction:
        time.sleep(cfg.straggler_delay)
    return None


def is_late(cfg: RunConfig, user: int) -> bool:
    """Cold-start scenario: whether ``user`` is one of the ``late-users`` (seeded)."""
    return bool(cfg.late_users) and bool(
        np.random.default_rng([cfg.seed, user, STREAM_LATE_USER]).random() < cfg.late_users)


def new_items(cfg: RunConfig, n_items: int) -> np.ndarray:
    """Scenario ``new-items``: the sorted catalogue indices released only in round
    ``items-round`` (a seeded ``new-items`` fraction of the catalogue; empty when off)."""
    if not cfg.new_items:
        return np.zeros(0, np.int64)
    draw = np.random.default_rng([cfg.seed, STREAM_NEW_ITEMS]).random(n_items)
    return np.flatnonzero(draw < cfg.new_items)


def released(cfg: RunConfig, data: ClientData, rnd: int) -> ClientData:
    """What the device can train on in round ``rnd`` of the ``new-items`` scenario.

    Before ``items-round`` the new items are not in the catalogue: the user's events on
    them are set aside (they happen after the release) and they are never drawn as
    negatives, so their embedding rows stay untrained and any score they get comes from
    the content tower. Held-out items are kept: a user whose next item is a new one is
    how ``new_item_hr@10`` measures that cold-item ranking.
    """
    if not cfg.new_items or rnd >= cfg.items_round:
        return data
    late = new_items(cfg, data.n_items)
    keep = ~np.isin(data.train_items, late)
    return dataclasses.replace(data, train_items=data.train_items[keep],
                               train_weights=data.train_weights[keep], unavailable=late)
