"""On-device recommendation from released statistics: DP item-kNN, popularity, fusion.

Everything here is post-processing of the released (noisy) statistics plus the device's
own history, so it costs no privacy: the server-side part (denoising, normalising the
co-occurrence matrix) runs once on the release, and the device-side part (scoring) runs
on the device and never leaves it.

Scores are float64 over the whole catalogue; items outside the head have no kNN score and
rank by popularity (fusion) or last (kNN alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedrec.shared.content import ItemContent, content_scores
from fedrec.shared.content import standardise as _standardise

#: ``knn_weight`` that lets each device choose its own fusion weight.
AUTO = -1.0
FUSION_WEIGHTS = (0.0, 1.0, 3.0, 10.0, 100.0)
#: A device checks a weight on this many of its newest items...
SELF_CHECK_ITEMS = 5
#: ...each ranked against this many items it never touched (drawn on the device).
SELF_CHECK_NEGATIVES = 50


@dataclass(frozen=True)
class KnnSettings:
    """How the released co-occurrence becomes a similarity, and how a device scores.

    Attributes:
        rank: keep the top ``rank`` eigenpairs of the noisy matrix (0: no projection).
            Noise spreads over all h^2 coordinates, the co-occurrence signal over few
            directions, so a low-rank projection removes most of the noise.
        alpha: similarity ``S_ij / (d_i d_j)^alpha`` with d the released popularity
            (0: raw co-occurrence, 0.5: cosine-like).
        neighbours: a candidate counts only its ``neighbours`` most similar history
            items (0: all).
        decay: the r-th most recent history item weighs ``decay ** r`` (1: equal).
        knn_weight: fusion weight of the standardised kNN scores next to standardised
            popularity (0: popularity alone; large: kNN decides, popularity breaks ties;
            -1: each device picks it from :data:`FUSION_WEIGHTS` on its own history,
            :func:`choose_fusion_weight`).
        top_k: the server keeps, for each candidate item, only its ``top_k`` most
            similar head items (the candidate's neighbourhood of classic item-kNN,
            Sarwar et al. 2001; 0: all).
        ease_lambda: also release EASE weights (Steck, WWW 2019) solved from the
            released co-occurrence with this ridge penalty (0: no EASE).
        ease_weight: fusion weight of the standardised EASE scores (same scale as
            ``knn_weight``).
        pair_beta: before the noise, a device's pair (i, j) weighs ``(d_i d_j)^-beta``
            (d: released popularity) within its unit norm, so rare pairs carry more of
            it (Krichene et al., ICML 2023, adaptive weights); the post-processing
            undoes the weighting (0: every pair alike).
        genre_weight, year_weight: fusion weights of the device's content scores from
            public catalogue metadata (``fedrec.shared.content``: genre profile, release-year
            closeness; 0: off), relative to the largest weight of the released scorers
            (``knn_weight``, ``ease_weight``, popularity's 1), so one value means the same
            in every pipeline.
        year_window, year_bandwidth: the release-year signal centres on the median year
            of the device's ``year_window`` newest items, with this bandwidth (years).
        als_weight: fusion weight of the standardised ALS scores ``V u`` (u: the
            device's own factor solved on the released item factors V; 0: off).
        als_negative, als_lambda: the device's implicit-negative weight and ridge
            penalty of that solve (``fedrec.shared.als.user_factor``).
        warm_weight: fusion weight of the standardised warm-start scores ``Q u``
            (``fedrec.shared.warm``: Q frozen item factors of the release, u the device's
            own logistic fit; 0: off).
        warm_rank, warm_epochs, warm_lr, warm_l2, warm_negatives: the rank of the kNN
            similarity's factorisation (ALS factors keep their rank), and the device's
            gradient steps, step size, ridge penalty and negatives per positive.
    """

    rank: int = 0
    alpha: float = 0.5
    neighbours: int = 0
    decay: float = 0.9
    knn_weight: float = 1.0
    top_k: int = 0
    ease_lambda: float = 0.0
    ease_weight: float = 0.0
    pair_beta: float = 0.0
    genre_weight: float = 0.0
    year_weight: float = 0.0
    year_window: int = 5
    year_bandwidth: float = 1.0
    als_weight: float = 0.0
    als_negative: float = 0.0
    als_lambda: float = 1.0
    warm_weight: float = 0.0
    warm_rank: int = 5
    warm_epochs: int = 10
    warm_lr: float = 0.5
    warm_l2: float = 0.0001
    warm_negatives: int = 1

    def __post_init__(self) -> None:
        if self.rank < 0 or self.neighbours < 0 or self.top_k < 0:
            raise ValueError("rank, neighbours and top-k must be >= 0")
        if self.ease_lambda < 0 or self.ease_weight < 0:
            raise ValueError("EASE lambda and weight must be >= 0")
        if not 0 < self.decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {self.decay}")
        if self.genre_weight < 0 or self.year_weight < 0:
            raise ValueError("genre and year weights must be >= 0")
        if self.year_window < 1 or not self.year_bandwidth > 0:
            raise ValueError("year window must be >= 1 and year bandwidth > 0")
        if self.alpha < 0 or (self.knn_weight < 0 and self.knn_weight != AUTO):
            raise ValueError("alpha must be >= 0, kNN weight >= 0 or -1 (auto)")
        if self.als_weight < 0 or self.als_negative < 0 or not self.als_lambda > 0:
            raise ValueError("ALS weight and negative weight must be >= 0, ALS lambda > 0")
        if min(self.warm_weight, self.warm_l2) < 0 or not self.warm_lr > 0 or min(
                self.warm_rank, self.warm_epochs, self.warm_negatives) < 1:
            raise ValueError("warm weight and l2 must be >= 0, warm lr > 0, warm rank, "
                             "epochs and negatives >= 1")


@dataclass(frozen=True)
class Released:
    """What a device receives: noisy popularity, the head, and its similarity matrix
    (or, in the ALS pipeline, the head's item factors)."""

    popularity: np.ndarray          # (n_items,)
    head: np.ndarray                # (h,) item indices
    similarity: np.ndarray | None   # (h, h), zero diagonal; None: popularity only
    ease: np.ndarray | None = None  # (h, h) EASE weights, zero diagonal; None: no EASE
    factors: np.ndarray | None = None  # (h, r) ALS item factors (0 rows: no support)

    @property
    def n_items(self) -> int:
        return len(self.popularity)


def save_released(path, released: Released, settings: KnnSettings) -> None:
    """Write what devices receive (``release.npz`` of a run directory): the noisy
    popularity, the head, the post-processed similarity and the scoring settings."""
    import dataclasses

    empty = np.zeros((0, 0))
    np.savez(path, popularity=released.popularity, head=released.head,
             similarity=empty if released.similarity is None else released.similarity,
             ease=empty if released.ease is None else released.ease,
             factors=empty if released.factors is None else released.factors,
             settings=np.array([getattr(settings, f.name) for f in dataclasses.fields(settings)],
                               np.float64))


def load_released(path) -> tuple[Released, KnnSettings]:
    """Inverse of :func:`save_released`."""
    import dataclasses

    with np.load(path) as data:
        sim = data["similarity"]
        ease = data["ease"] if "ease" in data.files else np.zeros((0, 0))
        factors = data["factors"] if "factors" in data.files else np.zeros((0, 0))
        released = Released(data["popularity"], data["head"].astype(np.int64),
                            None if sim.size == 0 else sim, None if ease.size == 0 else ease,
                            None if factors.size == 0 else factors)
        values = data["settings"].tolist()
    names = [f.name for f in dataclasses.fields(KnnSettings)]
    kinds = {f.name: f.type for f in dataclasses.fields(KnnSettings)}
    return released, KnnSettings(**{n: int(v) if kinds[n] == "int" else float(v)
                                    for n, v in zip(names, values)})   # older files: defaults


def low_rank(matrix: np.ndarray, rank: int) -> np.ndarray:
    """Symmetric ``matrix`` projected on its ``rank`` largest eigenvalues (0: unchanged)."""
    if rank <= 0 or rank >= matrix.shape[0]:
        return matrix
    values, vectors = np.linalg.eigh(matrix)
    top = np.argsort(values)[::-1][:rank]
    return (vectors[:, top] * values[top]) @ vectors[:, top].T


def similarity(noisy: np.ndarray, popularity_head: np.ndarray, settings: KnnSettings) -> np.ndarray:
    """The server-side post-processing: denoise, normalise, zero the diagonal, and keep
    each candidate's (column's) ``top_k`` most similar items."""
    sim = low_rank(noisy, settings.rank)
    if settings.alpha != settings.pair_beta:     # undo the pair weights, then normalise
        degree = np.maximum(popularity_head, 1.0) ** (settings.alpha - settings.pair_beta)
        sim = sim / np.outer(degree, degree)
    sim = sim.copy()
    np.fill_diagonal(sim, 0.0)
    if 0 < settings.top_k < len(sim) - 1:
        drop = np.argpartition(-sim, settings.top_k, axis=0)[settings.top_k:, :]
        np.put_along_axis(sim, drop, 0.0, axis=0)
    return sim


def pair_weights(popularity_head: np.ndarray, settings: KnnSettings) -> np.ndarray | None:
    """(h,) item weights of the pairs a device contributes (None: all alike)."""
    if not settings.pair_beta:
        return None
    return np.maximum(popularity_head, 1.0) ** -settings.pair_beta


def ease(cooccurrence: np.ndarray, counts: np.ndarray, penalty: float) -> np.ndarray:
    """EASE item-item weights (Steck, WWW 2019) from released statistics.

    With the Gram matrix ``G = C + diag(counts)`` (C: the co-occurrence with zero
    diagonal, counts: each head item's popularity), ``P = (G + penalty I)^-1`` and
    ``B = -P / diag(P)`` by column, zero diagonal: the closed-form ridge regression of
    each item on all others. A server-side post-processing of the releases.
    """
    gram = cooccurrence + np.diag(np.asarray(counts, np.float64))
    inverse = np.linalg.inv(gram + penalty * np.eye(len(gram)))
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


def knn_scores(items: np.ndarray, released: Released, settings: KnnSettings,
               matrix: np.ndarray | None = None) -> np.ndarray:
    """(h,) kNN scores of the head items for a history (oldest first).

    score(j) = sum over the device's head items i of ``decay ** r(i) * S[i, j]`` where r
    counts more recent items (0 = newest), restricted to the ``neighbours`` history
    items most similar to j when set. ``matrix`` replaces S (the EASE weights).
    """
    # Imported here: fedrec.shared.stats pulls in dp_accounting and scipy, and KnnSettings is read
    # by every `fedrec simulate --help` (through ReleaseConfig's defaults).
    from fedrec.shared.stats import head_positions

    pos = head_positions(released.head, released.n_items)[np.asarray(items, np.int64)]
    keep = pos >= 0
    recency = settings.decay ** np.arange(len(items))[::-1]      # newest: decay ** 0
    pos, weight = pos[keep], recency[keep]
    if not len(pos):
        return np.zeros(len(released.head))
    rows = (released.similarity if matrix is None else matrix)[pos]   # (m, h)
    if settings.neighbours and settings.neighbours < len(pos):
        cut = np.partition(rows, -settings.neighbours, axis=0)[-settings.neighbours]
        rows = np.where(rows >= cut, rows, 0.0)
    return weight @ rows


def device_scores(items: np.ndarray, released: Released, settings: KnnSettings,
                  content: ItemContent | None = None) -> np.ndarray:
    """(n_items,) scores a device ranks with: fusion of kNN, EASE, ALS, warm-start,
    popularity and content.

    Standardised popularity everywhere plus ``knn_weight`` times the standardised kNN
    scores on the head plus ``ease_weight`` times the standardised EASE scores (items
    outside the head add the head's lowest score), plus the content scores of the
    device's history on the public ``content`` (``fedrec.shared.content``; skipped when None),
    weighted relative to the largest of those weights (popularity's is 1). With no
    similarity released (popularity-only pipeline) kNN and EASE are absent.
    """
    scores = _standardise(np.asarray(released.popularity, np.float64))
    scale = 1.0
    if released.ease is not None and settings.ease_weight:
        scores = scores + settings.ease_weight * _knn_everywhere(items, released, settings,
                                                                 released.ease)
        scale = max(scale, settings.ease_weight)
    if released.similarity is not None and settings.knn_weight:
        weight = settings.knn_weight
        if weight == AUTO:
            weight = choose_fusion_weight(items, released, settings)
        scores = scores + weight * _knn_everywhere(items, released, settings)
        scale = max(scale, weight)
    if released.factors is not None and settings.als_weight:
        scores = scores + settings.als_weight * _on_catalogue(
            released, als_scores(items, released, settings))
        scale = max(scale, settings.als_weight)
    if settings.warm_weight and (released.factors is not None or released.similarity is not None):
        from fedrec.shared.warm import warm_scores

        scores = scores + settings.warm_weight * _on_catalogue(
            released, warm_scores(items, released, settings))
        scale = max(scale, settings.warm_weight)
    if content is not None and (settings.genre_weight or settings.year_weight):
        if content.n_items != released.n_items:
            raise ValueError(f"the content covers {content.n_items} items, the release "
                             f"{released.n_items}")
        scores = scores + scale * content_scores(
            items, content, settings.decay, settings.genre_weight, settings.year_weight,
            settings.year_window, settings.year_bandwidth)
    return scores


def _knn_everywhere(items: np.ndarray, released: Released, settings: KnnSettings,
                    matrix: np.ndarray | None = None) -> np.ndarray:
    return _on_catalogue(released, knn_scores(items, released, settings, matrix))


def _on_catalogue(released: Released, head_scores: np.ndarray) -> np.ndarray:
    """(n_items,) standardised head scores; items outside the head get the lowest."""
    head_scores = _standardise(head_scores)
    out = np.full(released.n_items, head_scores.min() if len(head_scores) else 0.0)
    out[released.head] = head_scores
    return out


def als_scores(items: np.ndarray, released: Released, settings: KnnSettings) -> np.ndarray:
    """(h,) ``V u`` on the head: u is the device's own factor, solved on the released
    factors V from its history's head items (``fedrec.shared.als.user_factor``; nothing
    leaves the device). Items without a factor (too little support) get the lowest
    score of the others, so among themselves they rank by popularity in the fusion."""
    from fedrec.shared.als import user_factor
    from fedrec.shared.stats import head_positions, newest_distinct

    factors = released.factors
    pos = head_positions(released.head, released.n_items)[newest_distinct(items)]
    u = user_factor(pos[pos >= 0], factors, settings.als_negative, settings.als_lambda)
    scores = factors @ u
    supported = np.any(factors != 0, axis=1)
    if supported.any() and not supported.all():
        scores[~supported] = scores[supported].min()
    return scores


def choose_fusion_weight(items: np.ndarray, released: Released, settings: KnnSettings,
                         rng: np.random.Generator | None = None) -> float:
    """The fusion weight a device picks on its own history: for each of its
    :data:`SELF_CHECK_ITEMS` newest items, score the history before it and rank the item
    against :data:`SELF_CHECK_NEGATIVES` items the device never touched; keep the weight
    of :data:`FUSION_WEIGHTS` with the best mean reciprocal rank (the smallest on ties).

    Nothing of this leaves the device, so the choice costs no privacy. The released
    statistics include the device's own contribution (one of N users), which favours
    kNN on its own items slightly.
    """
    items = np.asarray(items, np.int64)
    checks = min(SELF_CHECK_ITEMS, len(items) - 1)
    if checks < 1:
        return 0.0
    rng = rng or np.random.default_rng(len(items))
    untouched = np.setdiff1d(np.arange(released.n_items), items)
    if not len(untouched):
        return 0.0
    pop = _standardise(np.asarray(released.popularity, np.float64))
    mrr = np.zeros(len(FUSION_WEIGHTS))
    for k in range(1, checks + 1):
        target, before = items[-k], items[:-k]
        negatives = rng.choice(untouched, size=min(SELF_CHECK_NEGATIVES, len(untouched)),
                               replace=False)
        candidates = np.append(negatives, target)
        knn_part = _knn_everywhere(before, released, settings)[candidates]
        for i, w in enumerate(FUSION_WEIGHTS):
            scores = pop[candidates] + w * knn_part
            mrr[i] += 1.0 / (1 + np.sum(scores[:-1] >= scores[-1]))
    return float(FUSION_WEIGHTS[int(np.argmax(mrr))])
