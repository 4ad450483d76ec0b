"""The typed configuration of a statistics-release run (``fedrec simulate --pipeline``).

One frozen object per run, validated once here; ``fedrec simulate`` flags and sweep cells
build it, the run's ``manifest.json`` stores it (``to_dict``), and
``fedrec.server.releases.ReleaseSettings`` / ``fedrec.shared.knn.KnnSettings`` are derived from it.
Defaults were chosen on the validation item of MovieLens-100k (docs/results).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from fedrec.shared.config_flower import coerce
from fedrec.shared.config_meta import setting
from fedrec.shared.errors import ConfigError
from fedrec.shared.knn import KnnSettings

PIPELINES = ("popularity", "knn", "als")
#: ``fedrec simulate --pipeline auto``: the release pipeline chosen from the roster size
#: and the budget (:func:`auto_pipeline`).
AUTO = "auto"
#: Users x total user-level ε from which ``auto`` picks ``knn`` over ``popularity``. The
#: co-occurrence's signal grows with the users and its noise shrinks with ε, so the two
#: pipelines cross at a roughly fixed product: on MovieLens-100k's validation item (943
#: users, seeds 0-2, secret noise) popularity led at ε 3 (0.536 against 0.504), they tied
#: at ε 4 (0.541 each, 3,772) and kNN led at ε 6 (0.589 against 0.545):
#: docs/results/2026-12-03-dp-statistics-releases.md, "Which pipeline when".
AUTO_KNN_FROM = 4000.0
CONTRIBUTIONS = ("bounded", "raw")
#: Who adds the noise: the server once (central Gaussian) or every device a share of
#: integer Skellam noise (distributed, ``fedrec.shared.skellam``; issue #22).
NOISES = ("central", "distributed")
#: Defaults of a run with raw contributions (no DP) where the user set nothing: every
#: item and every interaction counts, the released statistics equal the centralized
#: ones, and devices fuse classic item-kNN (cosine, top-200 neighbourhood) with EASE
#: (content scores did not help there on validation: 0.7600 at genre 0.1, 0.7596 off).
#: Chosen on the validation item of MovieLens-100k (docs/results/2026-12-03-*).
RAW_DEFAULTS = {"target_epsilon": math.inf, "head": 0, "cap": 0, "knn_rank": 0,
                "knn_alpha": 0.5, "knn_top": 200, "ease_lambda": 2000.0, "ease_weight": 300.0,
                "genre_weight": 0.0, "year_weight": 0.0}


def _raw_defaults_text() -> str:
    """:data:`RAW_DEFAULTS` as the help lists them (``head 0, cap 0, ...``)."""
    return ", ".join(f"{k.replace('_', '-')} {v:g}" for k, v in RAW_DEFAULTS.items()
                     if k != "target_epsilon")


@dataclass(frozen=True)
class ReleaseConfig:
    """Everything that defines a statistics-release run.

    Attributes:
        pipeline: ``popularity`` (one release: DP popularity), ``knn`` (DP popularity,
            then DP item co-occurrence on the head it picks; devices fuse kNN and
            popularity on their own history) or ``als`` (DP popularity, then
            ``als_passes`` DP alternating-least-squares passes on the head:
            docs/dp-als.md).
        dataset, synthetic_users, synthetic_items, seed: the data (as ``RunConfig``).
        holdout: ``test`` or ``validation`` (choose settings on the latter only).
        target_epsilon: user-level ε of all releases together (``inf``: no noise, not
            private: the non-private reference of the same pipeline).
        delta: user-level δ (0: 1 / N^1.1 for N users).
        popularity_share: share of the budget (precision 1/z^2) spent on popularity.
        popularity_decay, popularity_cap: a device's popularity vector weighs its r-th
            newest item ``decay ** r`` over its ``cap`` newest items (0: all).
        head: items whose co-occurrence (or ALS statistics) is released (the most
            popular by the release; 0: every item).
        cap: a device's newest head items that enter its co-occurrence or ALS
            contribution (0: all).
        als_rank, als_passes: rank r of the factors and number of ALS passes (each one
            release, an equal share of the non-popularity budget).
        als_weight, als_negative, als_lambda: ``KnnSettings`` (the device's fusion
            weight of its u.V scores, the implicit-negative weight nu on both sides,
            the device's ridge penalty).
        als_item_lambda: the server's ridge penalty of each item's solve (units of
            the summed contributions).
        als_min_support: an item keeps a factor only if its noisy support trace(A_i)
            exceeds this many noise stds of that trace (else it ranks by popularity).
        warm_weight: ``KnnSettings.warm_weight`` (knn and als pipelines: the device's
            scores from the release's frozen item factors and its own logistic user fit,
            ``fedrec.shared.warm``; 0: off, the default: it did not pay on validation).
        knn_rank, knn_alpha, knn_decay, knn_weight, knn_top, ease_lambda, ease_weight,
        pair_beta, genre_weight, year_weight, year_window, year_bandwidth:
            ``fedrec.shared.knn.KnnSettings`` (``knn_top`` is its ``top_k``, ``knn_decay`` its
            ``decay``). The genre and year weights fuse each device's content scores
            (public catalogue metadata and its own history: no privacy cost) into its
            ranking, in every pipeline.
        contributions: ``bounded`` (each device's vector has L2 norm <= 1: DP) or
            ``raw`` (counts: the sums equal the centralized statistics; no DP, so
            ``target_epsilon`` must be ``inf``).
        noise_seed: >= 0 seeds the noise (tests only: the run is then marked not
            private); -1 draws it from 128 bits of OS entropy.
        noise: ``central`` (the server adds one Gaussian per release) or
            ``distributed`` (each device quantizes its contribution and adds its share
            of Skellam integer noise; the server sums integers modulo 2^bits:
            docs/distributed-dp.md).
        skellam_scale: distributed only: integer units per unit of contribution (the
            quantization grid is 1 / scale).
        skellam_bits: distributed only: the most bits per coordinate a device may upload;
            a configuration whose modular sum could wrap within that width is refused.
        min_survivors: distributed only: fraction of the roster, in (0, 1], that must
            upload a well-formed share for a release to happen; each device adds
            ``Sk(mu / t)`` with ``t = ceil(min_survivors * n)`` (:meth:`survivor_threshold`),
            so any ``s >= t`` survivors carry ``Sk(mu s / t)``, at least the accounted
            ``mu``; fewer than t and the release fails (docs/distributed-dp.md). 1.0: every
            device must answer.
        release_dropout: distributed only, simulation of failures: fraction of the
            roster, in [0, 1), that never uploads in a release (drawn per release by a
            generator seeded from ``seed``: not secret, not privacy randomness; in the
            Flower engine those devices fail at SecAgg+'s masked-vector stage).
        secagg_transcript: tests only (needs ``noise_seed`` >= 0): the Flower engine's
            server appends every payload it receives, and each unmasked sum, to
            ``secagg-transcript.jsonl`` in the run directory.
        out: the run directory.
        budget_dir: the dataset-level budget registry the run records its releases in
            (``fedrec.shared.budget``; empty: ``.fedrec-budget`` next to ``out``), as
            ``RunConfig.budget_dir``.
    """

    pipeline: str = setting("knn", "releases",
        "popularity (one DP popularity release), knn (then a DP item co-occurrence on the "
        "head) or als (then DP ALS passes on the head)", choices=PIPELINES,
        cli=False)   # fedrec simulate's --pipeline is hand-written: it also chooses neumf
    dataset: str = setting("synthetic", "data",
        "synthetic, movielens-100k or a path (as RunConfig)")
    synthetic_users: int = setting(20, "data", "users of the synthetic generator")
    synthetic_items: int = setting(200, "data", "catalogue size of the synthetic generator")
    seed: int = setting(0, "data", "seeds the data and the devices' draws")
    holdout: str = setting("test", "data",
        "test or validation (choose settings on the latter only)", choices=("test", "validation"))
    target_epsilon: float = setting(8.0, "user-level DP",
        "user-level epsilon of all releases together (inf: no noise, not private)")
    delta: float = setting(0.0, "user-level DP", "user-level delta (0: 1/N^1.1 for N users)")
    popularity_share: float = setting(0.2, "releases",
        "share of the budget (precision 1/z^2) spent on popularity")
    popularity_decay: float = setting(1.0, "releases",
        "recency weight of a device's popularity vector")
    popularity_cap: int = setting(0, "releases",
        "newest items in a device's popularity vector, 0: all")
    head: int = setting(700, "releases", "items in the co-occurrence (or ALS) release, 0: all")
    cap: int = setting(100, "releases", "a device's newest head items used, 0: all")
    knn_rank: int = setting(5, "device scoring", "low-rank denoising, 0: none")
    knn_alpha: float = setting(0.25, "device scoring", "popularity normalisation")
    knn_decay: float = setting(0.8, "device scoring", "recency weight in scoring")
    knn_weight: float = setting(100.0, "device scoring",
        "weight of kNN next to popularity on the device, -1: each device picks it")
    knn_top: int = setting(0, "device scoring", "a candidate's most similar items kept, 0: all")
    ease_lambda: float = setting(0.0, "device scoring",
        "also release EASE weights with this ridge penalty, 0: no")
    ease_weight: float = setting(0.0, "device scoring",
        "weight of EASE next to popularity on the device")
    pair_beta: float = setting(0.0, "device scoring",
        "a device's pair (i, j) weighs (d_i d_j)^-beta within its unit norm, d the released "
        "popularity")
    als_rank: int = setting(4, "releases", "--pipeline als: rank of the factors")
    als_passes: int = setting(1, "releases", "--pipeline als: ALS passes, one DP release each")
    als_weight: float = setting(3.0, "device scoring",
        "weight of the device's ALS scores next to popularity")
    als_negative: float = setting(0.03, "device scoring",
        "implicit-negative weight of the ALS solves")
    als_lambda: float = setting(1.0, "device scoring", "ridge penalty of the device's own factor")
    als_item_lambda: float = setting(3.0, "releases", "ridge penalty of the server's item factors")
    als_min_support: float = setting(0.0, "releases",
        "an item keeps a factor only if its noisy support exceeds this many noise stds")
    warm_weight: float = setting(0.0, "device scoring",
        "weight of the device's warm-start scores (frozen item factors of the knn or als "
        "release, its own logistic user fit; no privacy cost; docs/neumf-warm-start.md), 0: off")
    genre_weight: float = setting(0.3, "device scoring",
        "weight of each device's genre-profile scores (its own history on the public "
        "catalogue; no privacy cost), 0: off")
    year_weight: float = setting(0.5, "device scoring",
        "weight of each device's release-year scores (closeness to the median year of its "
        "newest items), 0: off")
    year_window: int = setting(5, "device scoring",
        "newest items whose median release year is the centre")
    year_bandwidth: float = setting(1.0, "device scoring",
        "width of the release-year closeness, in years")
    contributions: str = setting("bounded", "user-level DP",
        "bounded: norm-1 contributions (DP); raw: counts, the federated statistics equal the "
        "centralized ones, no DP (needs target-epsilon inf; the flags and sweep cells imply "
        "it, and there unset settings take the no-DP defaults: " + _raw_defaults_text() + ")",
        choices=CONTRIBUTIONS)
    noise_seed: int = setting(-1, "user-level DP",
        "-1: noise from 128 bits of OS entropy; >= 0 seeds it (tests only: NOT private)")
    noise: str = setting("central", "user-level DP",
        "central: the server adds one Gaussian per release; distributed: each device adds its "
        "share of Skellam integer noise to its quantized contribution, the server sums "
        "integers mod 2^bits (the Flower engine carries the shares through SecAgg+; "
        "docs/distributed-dp.md)", choices=NOISES)
    skellam_scale: float = setting(4096.0, "distributed noise",
        "--noise distributed: integer units per unit of contribution")
    skellam_bits: int = setting(32, "distributed noise",
        "--noise distributed: most bits per coordinate a device uploads")
    min_survivors: float = setting(1.0, "distributed noise",
        "--noise distributed: fraction of the roster in (0, 1] that must upload for a release; "
        "noise shares are sized for ceil(fraction * n) devices, a release with fewer fails")
    release_dropout: float = setting(0.0, "distributed noise",
        "--noise distributed: simulated fraction of devices in [0, 1) that never upload in a "
        "release (seeded by seed: a failure simulation, not privacy randomness; in the Flower "
        "engine they fail at SecAgg+'s masked-vector stage)")
    secagg_transcript: bool = setting(False, "distributed noise",
        "tests only (needs --noise-seed): the Flower engine's server writes every payload it "
        "receives and the unmasked sums to secagg-transcript.jsonl in the run directory",
        cli=False)
    out: str = setting("runs/release", "run directory", "the run directory")
    budget_dir: str = setting("", "run directory",
        "dataset-level budget registry the run records its releases in (empty: .fedrec-budget "
        "next to out)")

    def __post_init__(self) -> None:
        if self.pipeline not in PIPELINES:
            raise ConfigError(f"pipeline must be one of {', '.join(PIPELINES)}, got {self.pipeline!r}")
        if self.holdout not in ("test", "validation"):
            raise ConfigError(f"holdout must be test or validation, got {self.holdout!r}")
        if not (self.target_epsilon > 0 or math.isinf(self.target_epsilon)):
            raise ConfigError(f"target-epsilon must be > 0 (inf: no noise), got {self.target_epsilon}")
        if not 0 <= self.delta < 1:
            raise ConfigError(f"delta must be in [0, 1) (0: 1/N^1.1), got {self.delta}")
        if not 0 < self.popularity_share < 1:
            raise ConfigError(f"popularity-share must be in (0, 1), got {self.popularity_share}")
        if not 0 < self.popularity_decay <= 1:
            raise ConfigError(f"popularity-decay must be in (0, 1], got {self.popularity_decay}")
        if 1 in (self.head, self.cap) or min(self.head, self.cap, self.popularity_cap) < 0:
            raise ConfigError("head and cap must be >= 2 or 0 (all), popularity-cap >= 0")
        if self.contributions not in CONTRIBUTIONS:
            raise ConfigError(f"contributions must be bounded or raw, got {self.contributions!r}")
        if self.contributions == "raw" and math.isfinite(self.target_epsilon):
            raise ConfigError("raw contributions have no sensitivity bound, so no noise makes "
                              "them private: use --target-epsilon inf, or bounded contributions")
        self._check_noise()
        if not 1 <= self.als_passes <= 5 or not 1 <= self.als_rank <= 64:
            raise ConfigError(f"als-passes must be in [1, 5] and als-rank in [1, 64], got "
                              f"{self.als_passes} and {self.als_rank}")
        if not self.als_item_lambda > 0 or self.als_min_support < 0:
            raise ConfigError("als-item-lambda must be > 0 and als-min-support >= 0")
        try:
            self.knn
        except ValueError as err:
            raise ConfigError(f"knn settings: {err}") from None

    def _check_noise(self) -> None:
        if self.noise not in NOISES:
            raise ConfigError(f"noise must be central or distributed, got {self.noise!r}")
        if not (0 < self.min_survivors <= 1 and 0 <= self.release_dropout < 1):
            raise ConfigError(f"min-survivors must be in (0, 1] and release-dropout in [0, 1), "
                              f"got {self.min_survivors} and {self.release_dropout}")
        if self.secagg_transcript and (self.noise != "distributed" or self.noise_seed < 0):
            raise ConfigError("secagg-transcript is for tests: it needs --noise distributed "
                              "and --noise-seed")
        if self.noise == "central":
            if self.min_survivors != 1 or self.release_dropout:
                raise ConfigError("--min-survivors and --release-dropout apply to --noise "
                                  "distributed only")
            return
        if not math.isfinite(self.target_epsilon) or self.contributions != "bounded":
            raise ConfigError("--noise distributed needs bounded contributions and a finite "
                              "--target-epsilon (it is a DP mechanism)")
        if self.pipeline == "als":
            raise ConfigError("--noise distributed is not wired for --pipeline als yet "
                              "(use --noise central)")
        if not (self.skellam_scale > 0 and math.isfinite(self.skellam_scale)):
            raise ConfigError(f"skellam-scale must be a finite number > 0, got {self.skellam_scale}")
        if not 2 <= self.skellam_bits <= 62:
            raise ConfigError(f"skellam-bits must be in [2, 62], got {self.skellam_bits}")

    @property
    def private(self) -> bool:
        """Noise is added and its randomness is secret."""
        return math.isfinite(self.target_epsilon) and self.noise_seed < 0

    @property
    def releases(self) -> tuple[str, ...]:
        if self.pipeline == "als":
            return ("popularity",) + tuple(f"als-{p}" for p in range(1, self.als_passes + 1))
        return ("popularity",) if self.pipeline == "popularity" else ("popularity", "cooccurrence")

    @property
    def knn(self) -> KnnSettings:
        knn = self.pipeline == "knn"
        return KnnSettings(rank=self.knn_rank, alpha=self.knn_alpha, decay=self.knn_decay,
                           knn_weight=self.knn_weight if knn else 0.0, top_k=self.knn_top,
                           ease_lambda=self.ease_lambda if knn else 0.0,
                           ease_weight=self.ease_weight if knn else 0.0,
                           pair_beta=self.pair_beta, genre_weight=self.genre_weight,
                           year_weight=self.year_weight, year_window=self.year_window,
                           year_bandwidth=self.year_bandwidth,
                           als_weight=self.als_weight if self.pipeline == "als" else 0.0,
                           als_negative=self.als_negative, als_lambda=self.als_lambda,
                           warm_weight=self.warm_weight)

    def survivor_threshold(self, n_users: int) -> int:
        """t = ceil(min_survivors * n): the fewest well-formed uploads a distributed
        release accepts (rounded first to 9 decimals, so 0.7 * 10 is 7, not 8)."""
        return max(1, math.ceil(round(self.min_survivors * n_users, 9)))

    def user_delta(self, n_users: int) -> float:
        if self.delta == 0:
            return 1.0 / n_users ** 1.1
        if self.delta >= 1.0 / n_users:
            raise ConfigError(f"delta {self.delta:g} must be < 1/N = {1.0 / n_users:g}")
        return self.delta

    def to_dict(self) -> dict[str, Any]:
        """Hyphenated keys (as flags and sweep cells name them); ε = inf as a string."""
        out = {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}
        if math.isinf(self.target_epsilon):
            out["target-epsilon"] = "inf"
        return out

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "ReleaseConfig":
        """From hyphenated or underscored keys; unknown keys and bad values fail."""
        known = {f.name: f for f in fields(cls)}
        kwargs = {}
        for raw, value in values.items():
            name = raw.replace("-", "_")
            if name not in known:
                raise ConfigError(f"unknown release setting {raw!r}")
            kwargs[name] = coerce(known[name].type, value, raw, "release config")
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "ReleaseConfig":
        return dataclasses.replace(self, **changes)


def auto_pipeline(users: int, target_epsilon: float) -> str:
    """The release pipeline for ``users`` devices and a total user-level ``target_epsilon``
    (inf: no noise): ``knn`` when users x ε >= :data:`AUTO_KNN_FROM`, else
    ``popularity``."""
    if users <= 0 or not target_epsilon > 0:
        raise ConfigError(f"--pipeline auto needs users > 0 and ε > 0, got {users}, "
                          f"{target_epsilon:g}")
    return "knn" if users * target_epsilon >= AUTO_KNN_FROM else "popularity"


def with_raw_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (underscored keys) with :data:`RAW_DEFAULTS` under the settings it does
    not set, when it asks for raw contributions; unchanged otherwise."""
    if values.get("contributions") != "raw":
        return dict(values)
    return {**RAW_DEFAULTS, **values}
