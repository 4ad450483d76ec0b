"""The wire protocol of the statistics releases: the two queries a server sends each
device and what the device answers, spelled once for both sides.

``query.contribute`` names a statistic and carries its request (the same request dict
the in-process engine hands ``fedrec.client.releases.contribution`` directly: :func:`popularity_request`,
:func:`cooccurrence_request`); the device answers with its contribution vector.
``query.recommend`` carries the release and the kNN settings; the device answers with
its metrics and whether it had a held-out item to evaluate (a simulation's measurement).
"""

from __future__ import annotations

import numpy as np
from flwr.app import ConfigRecord, MetricRecord, RecordDict
from flwr.common.constant import MessageType

from fedrec.shared import knn
from fedrec.shared.protocol import ARRAYS, CONFIG, METRICS, from_record, to_record

#: The two query actions (``@app.query(action)`` on the device) and their message types.
CONTRIBUTE_ACTION, RECOMMEND_ACTION = "contribute", "recommend"
CONTRIBUTE = f"{MessageType.QUERY}.{CONTRIBUTE_ACTION}"
RECOMMEND = f"{MessageType.QUERY}.{RECOMMEND_ACTION}"
#: Keys of a contribution request (``fedrec.server.releases.Collect``).
STATISTIC, DECAY, CAP, HEAD, BOUNDED = "statistic", "decay", "cap", "head", "bounded"
CONTRIBUTION = "contribution"
#: Config key of a SecAgg+ (legacy fit) request naming its array values, in order.
SECAGG_ARRAY_KEYS = "array-keys"
#: Keys a distributed-noise request adds (``fedrec.server.distributed``): integer units per unit,
#: the device's Skellam variance share, the upload's bits per coordinate, and the pair
#: item weights (``--pair-beta``; the server applies them itself in the central mode).
NOISE_SCALE, NOISE_MU_SHARE = "noise-scale", "noise-mu-share"
NOISE_BITS, ITEM_WEIGHT = "noise-bits", "item-weight"
#: Keys an ALS request adds (``fedrec.shared.als``): the current item factors (h, r) and
#: the device's implicit-negative weight and ridge penalty of its own solve.
FACTORS, NEGATIVE, RIDGE = "factors", "negative", "lambda"
#: Request values that travel as arrays (the rest in the config record).
_ARRAY_KEYS = (HEAD, FACTORS)
EVALUATED = "evaluated"
#: Config keys of the kNN settings, by :class:`fedrec.shared.knn.KnnSettings` field.
KNN_KEYS = {"rank": "rank", "alpha": "alpha", "neighbours": "neighbours", "decay": "decay",
            "knn_weight": "knn-weight", "top_k": "top-k", "ease_lambda": "ease-lambda",
            "ease_weight": "ease-weight", "pair_beta": "pair-beta",
            "genre_weight": "genre-weight", "year_weight": "year-weight",
            "year_window": "year-window", "year_bandwidth": "year-bandwidth",
            "als_weight": "als-weight", "als_negative": "als-negative",
            "als_lambda": "als-lambda", "warm_weight": "warm-weight",
            "warm_rank": "warm-rank", "warm_epochs": "warm-epochs", "warm_lr": "warm-lr",
            "warm_l2": "warm-l2", "warm_negatives": "warm-negatives"}
_KNN_KINDS = {"rank": int, "alpha": float, "neighbours": int, "decay": float,
              "knn_weight": float, "top_k": int, "ease_lambda": float, "ease_weight": float,
              "pair_beta": float, "genre_weight": float, "year_weight": float,
              "year_window": int, "year_bandwidth": float, "als_weight": float,
              "als_negative": float, "als_lambda": float, "warm_weight": float,
              "warm_rank": int, "warm_epochs": int, "warm_lr": float, "warm_l2": float,
              "warm_negatives": int}


def popularity_request(decay: float, cap: int, bounded: bool = True) -> dict:
    """Ask for a popularity vector: recency ``decay``, the newest ``cap`` items (0: all),
    unit norm (``bounded``, DP) or raw indicators (no DP)."""
    return {DECAY: decay, CAP: cap, BOUNDED: int(bounded)}


def cooccurrence_request(head: np.ndarray, cap: int) -> dict:
    """Ask for a device's ``cap`` most recent positions among the ``head`` items."""
    return {HEAD: head, CAP: cap}


def als_request(head: np.ndarray, factors: np.ndarray, cap: int, negative: float,
                lam: float) -> dict:
    """Ask for a device's ALS contribution (``fedrec.shared.als.contribution``) on the
    ``head`` with the current item ``factors``: its ``cap`` most recent head items, its
    factor solved with implicit-negative weight ``negative`` and ridge ``lam``."""
    return {HEAD: head, FACTORS: factors, CAP: cap, NEGATIVE: negative, RIDGE: lam}


def contribute_content(statistic: str, request: dict) -> RecordDict:
    """The ``query.contribute`` message: scalars in the config, the head (and ALS
    factors) as arrays."""
    config = {STATISTIC: statistic,
              **{k: v for k, v in request.items() if k not in _ARRAY_KEYS}}
    arrays = {k: np.asarray(request[k]) for k in _ARRAY_KEYS if k in request}
    return RecordDict({CONFIG: ConfigRecord(config), ARRAYS: to_record(arrays)})


def contribute_request(content: RecordDict) -> tuple[str, dict]:
    """Inverse of :func:`contribute_content`: (statistic, request)."""
    config = content[CONFIG]
    request = {key: config[key] for key in config.keys() if key != STATISTIC}
    for key in _ARRAY_KEYS:
        if ARRAYS in content and key in content[ARRAYS]:
            request[key] = content[ARRAYS][key].numpy()
    return str(config[STATISTIC]), request


def secagg_request(statistic: str, request: dict) -> tuple[list[np.ndarray], dict]:
    """A contribute request as SecAgg+'s legacy fit instruction carries it: the
    array values (head, pair weights) as the parameters, in order, and the scalars,
    the statistic and the arrays' keys (comma-separated) as the config."""
    arrays = {k: np.asarray(v) for k, v in request.items()
              if isinstance(v, (np.ndarray, list, tuple))}
    config = {k: v for k, v in request.items() if k not in arrays}
    config.update({STATISTIC: statistic, SECAGG_ARRAY_KEYS: ",".join(arrays)})
    return list(arrays.values()), config


def secagg_request_of(arrays: list[np.ndarray], config: dict) -> tuple[str, dict]:
    """Inverse of :func:`secagg_request`: (statistic, request)."""
    config = dict(config)
    statistic = str(config.pop(STATISTIC))
    keys = [k for k in str(config.pop(SECAGG_ARRAY_KEYS, "")).split(",") if k]
    if len(keys) != len(arrays):
        raise ValueError(f"SecAgg+ request: {len(arrays)} arrays for keys {keys}")
    return statistic, {**config, **dict(zip(keys, arrays))}


def contribution_content(vector: np.ndarray) -> RecordDict:
    return RecordDict({ARRAYS: to_record({CONTRIBUTION: vector})})


def contribution_of(content: RecordDict) -> np.ndarray:
    return content[ARRAYS][CONTRIBUTION].numpy()


def recommend_content(released: knn.Released, settings: knn.KnnSettings) -> RecordDict:
    """The ``query.recommend`` message: the release (an empty similarity: popularity
    only; an empty EASE matrix: none) and the kNN settings."""
    config = {key: getattr(settings, name) for name, key in KNN_KEYS.items()}
    empty = np.zeros((0, 0))
    arrays = {"popularity": released.popularity, "head": released.head,
              "similarity": empty if released.similarity is None else released.similarity,
              "ease": empty if released.ease is None else released.ease,
              "factors": empty if released.factors is None else released.factors}
    return RecordDict({CONFIG: ConfigRecord(config), ARRAYS: to_record(arrays)})


def recommend_request(content: RecordDict) -> tuple[knn.Released, knn.KnnSettings]:
    """Inverse of :func:`recommend_content`."""
    arrays = from_record(content[ARRAYS])
    sim, ease = arrays["similarity"], arrays["ease"]
    factors = arrays.get("factors", np.zeros((0, 0)))
    released = knn.Released(arrays["popularity"], arrays["head"], None if sim.size == 0 else sim,
                            None if ease.size == 0 else ease,
                            None if factors.size == 0 else factors)
    return released, knn_settings(content[CONFIG])


def knn_settings(config) -> knn.KnnSettings:
    """The kNN settings a ``query.recommend`` config carries."""
    return knn.KnnSettings(**{name: _KNN_KINDS[name](config[key])
                              for name, key in KNN_KEYS.items()})


def evaluation_content(metrics: dict[str, float], evaluated: bool) -> RecordDict:
    """A device's answer to ``query.recommend``."""
    return RecordDict({METRICS: MetricRecord({**metrics, EVALUATED: int(evaluated)})})


def evaluation_of(content: RecordDict) -> dict[str, float] | None:
    """A device's metrics (None: it had no held-out item)."""
    metrics = content[METRICS]
    if not int(metrics[EVALUATED]):
        return None
    return {k: float(metrics[k]) for k in metrics.keys() if k != EVALUATED}
