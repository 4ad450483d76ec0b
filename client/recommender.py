"""On-device recommendations: what an app calls (client SDK).

Scores the catalogue on the device with the latest global weights and the user's private
embedding, both from the device's :class:`fedrec.client.store.EventStore`; nothing leaves the
device. A brand-new user is served too: with no events the private embedding is zero, so
only the model's item side (learned from everybody, plus the content tower) ranks items;
after the first events :meth:`Recommender.update_from_events` fits the embedding to them
(few-shot reconstruction) without waiting for a federated round.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedrec.client.local import LocalSettings, get_local_model
from fedrec.client.store import EventStore, SdkInputError
from fedrec.shared import knn, privacy
from fedrec.shared.catalogue import Catalogue
from fedrec.shared.config import RunConfig
from fedrec.shared.federated_data import ClientData
from fedrec.shared.interactions import build_interactions
from fedrec.shared.rerank import mmr_rerank
from fedrec.shared.schema import Dataset


class Recommender:
    """Recommendations for the user of one :class:`EventStore`.

    Args:
        store: the device's event store (events, embedding, global model, ledger).
        catalogue: the item catalogue shared with the federation.
        config: the federation's run config (model sizes, reconstruction settings).
        popularity: optional (N,) item popularity shipped with the catalogue, used only
            before the device has any global model.
        release: optional path of a statistics release (a run's ``release.npz``,
            ``fedrec.shared.knn.save_released``): the device then ranks with DP popularity and
            item-kNN on its own events, fused with its genre and release-year scores on
            the catalogue (``fedrec.shared.knn.device_scores``), no model needed.
    """

    def __init__(self, store: EventStore, catalogue: Catalogue, config: RunConfig | None = None,
                 popularity: np.ndarray | None = None, release: str | Path | None = None) -> None:
        self.store = store
        self.release = None if release is None else _load_release(release, catalogue.n_items)
        self.catalogue = catalogue
        self.config = config or RunConfig()
        self.popularity = None if popularity is None else np.asarray(popularity, np.float64)
        if self.popularity is not None and self.popularity.shape != (catalogue.n_items,):
            raise SdkInputError(f"popularity must have one value per catalogue item "
                                f"({catalogue.n_items}), got shape {self.popularity.shape}")
        self._index = {str(i): n for n, i in enumerate(catalogue.item_ids)}

    # ----- what the app calls -----
    def recommend(self, k: int = 10, exclude_seen: bool = True, diversity: float = 0.0,
                  candidates: list | None = None) -> list[str]:
        """The ``k`` best item ids for this user, best first.

        Args:
            k: list length (>= 1).
            exclude_seen: leave out items the user already has events on.
            diversity: 0 = pure relevance; up to 1 = MMR re-ranking by item categories
                with weight ``diversity`` on dissimilarity.
            candidates: restrict to these item ids (all catalogue items by default).

        Raises:
            SdkInputError: bad arguments, an unknown candidate item, or no model and no
                popularity to fall back on.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise SdkInputError(f"k must be an int >= 1, got {k!r}")
        if isinstance(diversity, bool) or not isinstance(diversity, (int, float)) \
                or not 0.0 <= diversity <= 1.0:
            raise SdkInputError(f"diversity must be a number in [0, 1], got {diversity!r}")
        pool = None if candidates is None else self._indices(candidates)
        scores = self.scores()
        seen = np.zeros(len(scores), bool)
        if exclude_seen:
            seen[self._seen()] = True
        if diversity > 0:
            top = mmr_rerank(scores, self.catalogue.item_features, k, lambda_=1.0 - diversity,
                             candidates=pool, exclude=seen)
        else:
            allowed = ~seen if pool is None else ~seen & np.isin(np.arange(len(scores)), pool)
            order = np.argsort(-np.where(allowed, scores, -np.inf), kind="stable")
            top = order[:min(k, int(allowed.sum()))]
        return [str(self.catalogue.item_ids[i]) for i in top]

    def scores(self) -> np.ndarray:
        """(N,) scores of every catalogue item for this user."""
        if self.release is not None:
            released, settings = self.release
            return knn.device_scores(self._client_data().train_items, released, settings,
                                     self.catalogue.content)
        weights = self.store.global_model()
        if weights is None:
            if self.popularity is None:
                raise SdkInputError("no global model on this device yet (join a federated "
                                    "round first) and no popularity to fall back on")
            return self.popularity.copy()
        model = self._model(weights)
        return model.score_all(np.array([0]))[0]

    def update_from_events(self) -> None:
        """Fit the private user embedding to the events recorded so far (on the device).

        Runs the federation's serving fit (``serve-passes``, global weights frozen) right
        away, so new events count before the next round. Needs a global model and at
        least one event.
        """
        weights = self.store.global_model()
        if weights is None:
            raise SdkInputError("no global model on this device yet: nothing to fit against")
        data = self._client_data()
        if len(data.train_items) == 0:
            raise SdkInputError("no events recorded yet")
        model = self._model(weights)
        settings = LocalSettings.from_run_config(self.config)
        model.fit_for_serving(data, settings, (self.config.seed, 0), np.random.default_rng())
        self.store.save_state(user_embedding=model.private_weights())

    def privacy_status(self, target_epsilon: float | None = None) -> dict:
        """This device's privacy, per level, and when it may train next.

        ``example``: ε (δ, RDP, replace-one) spent by this device's own DP-SGD (its
        ledger), the target (``target_epsilon``, else the run's
        ``client-target-epsilon``) and what remains; ``private`` is False and
        ``seeded_rounds`` lists the rounds whose noise the server seeded (accepted only
        with ``allow-seeded-noise``): ε holds only against parties without that seed,
        and ``epsilon_against_seed_holder`` is then infinite. ``user``: the federation's user-level (ε, δ) as the server last
        reported it, and as of which round (None before any report, or without
        user-level DP). ``rounds_joined``, ``last_round``; ``next_eligibility``: the
        earliest round the participation window lets it train again (None: no limit)
        and whether its budget allows one more round like its last.
        """
        ledger = self.store.ledger(self.config.client_delta)
        federation = self.store.federation()
        spent = ledger.epsilon("rdp") if ledger.history else 0.0
        target = target_epsilon if target_epsilon is not None else (
            federation.get("client_target_epsilon") or self.config.client_target_epsilon or None)
        joined = sorted(set(federation.get("rounds_joined", [])) | set(ledger.rounds))
        last = joined[-1] if joined else None
        user = None
        if federation.get("user_epsilon") is not None:
            user = {"epsilon": federation["user_epsilon"], "delta": federation["user_delta"],
                    "accountant": "rdp", "as_of_round": federation["round"]}
        seeded = ledger.seeded_rounds
        return {"example": {"epsilon": spent, "delta": ledger.delta, "accountant": "rdp",
                            "relation": ledger.relation, "target_epsilon": target,
                            "remaining": None if target is None else max(0.0, target - spent),
                            "private": not seeded, "seeded_rounds": seeded,
                            "epsilon_against_seed_holder": float("inf") if seeded else spent},
                "user": user, "rounds_joined": len(joined), "last_round": last,
                "next_eligibility": _next_eligibility(ledger, target, last,
                                                      federation.get("participation_window", 0))}

    def export_tflite(self, path: str | Path) -> Path:
        """The scoring model (this user's embedding and the global weights baked in) as a
        TensorFlow Lite flatbuffer: input ``int32[1]`` (always 0), output ``float32[1, N]``."""
        import tensorflow as tf

        weights = self.store.global_model()
        if weights is None:
            raise SdkInputError("no global model on this device yet: nothing to export")
        model = self._model(weights).model
        items = tf.constant(np.arange(self.catalogue.n_items, dtype=np.int32)[None])
        feats = tf.constant(self.catalogue.item_features[None].astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1], tf.int32)])
        def score(user):
            return model({"user": user, "item": items, "item_features": feats}, training=False)

        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [score.get_concrete_function()], model)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(converter.convert())
        return path

    # ----- helpers -----
    def _model(self, weights: dict[str, np.ndarray]):
        model = get_local_model(self.config.model, self.catalogue.item_features)
        private = self.store.user_embedding()
        if private is None:  # a new user: no personal signal yet, only the item side
            private = {k: np.zeros_like(v) for k, v in model.private_weights().items()}
        model.load(weights, private, (self.config.seed, 0))
        return model

    def _indices(self, item_ids: list) -> np.ndarray:
        try:
            return np.array([self._index[str(i)] for i in item_ids], np.int64)
        except KeyError as err:
            raise SdkInputError(f"candidate item {err.args[0]!r} is not in the catalogue") from None

    def _seen(self) -> np.ndarray:
        events = self.store.events()
        return np.array(sorted({self._index[i] for i in events["item_id"] if i in self._index}),
                        np.int64)

    def _client_data(self) -> ClientData:
        """All recorded events as training positives (nothing held out on the device)."""
        events = self.store.events()
        events = events[events["item_id"].isin(list(self._index))]
        inter = build_interactions(Dataset("device", events, self.catalogue.items),
                                   item_order=self.catalogue.item_ids)
        empty = np.zeros(0, np.int64)
        return ClientData(0, inter.items, inter.weights, -1, -1, empty, empty,
                          self.catalogue.n_items)


def _load_release(path: str | Path, n_items: int) -> tuple:
    try:
        released, settings = knn.load_released(path)
    except (OSError, KeyError, ValueError) as err:
        raise SdkInputError(f"{path}: not a statistics release ({err})") from None
    if released.n_items != n_items:
        raise SdkInputError(f"{path}: the release covers {released.n_items} items, the "
                            f"catalogue has {n_items}")
    return released, settings


def _next_eligibility(ledger, target: float | None, last: int | None, window: int) -> dict:
    """Earliest round the participation window allows (None: any) and whether one more
    round like the last fits the example-level budget (None: no budget or no history)."""
    affordable = None
    if target and ledger.history:
        last_event = privacy.event_from_dict(ledger.history[-1][1])
        affordable = not ledger.would_exceed(last_event, target)[0]
    return {"round": last + window if window and last is not None else None,
            "budget_allows_another_round": affordable}
