"""A statistics-release run on the server side: calibrate, release, write the run directory.

How devices are reached is the caller's: ``collect`` asks every device for its
contribution (``fedrec.server.releases.Collect``) and ``evaluate`` hands the release to the
devices and averages the metrics they report. The in-process simulation
(``fedrec.simulations.release_sim``) and the Flower ServerApp (``fedrec.server.release_app``) pass
their own; the releases, the ledger and every file written are the same.

Run directory (``cfg.out``): ``manifest.json`` (config, data, declared mechanism, the
ledger under ``accounting``), ``ledger.json`` (the server's ledger, written before each
release's noise is drawn), ``release.npz`` (what devices receive: the SDK's
``Recommender(release=...)`` serves it), ``privacy.json`` and ``results.json``. No file
records who took part: every device contributes exactly once, so participation is the
public roster. With distributed noise the manifest's ``survivors`` section records, per
release and before it is released, how many shares were summed (a count, never who).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dp_accounting import dp_event as dpe

from fedrec.server import distributed, releases
from fedrec.server.rundir import RunDir
from fedrec.shared import als, knn, privacy, range_failure, secagg_prg, stats
from fedrec.shared.budget import BudgetRegistry, run_entry
from fedrec.shared.errors import ConfigError
from fedrec.shared.ledger import Ledger
from fedrec.shared.release_config import ReleaseConfig
from fedrec.shared.runinfo import versions, write_text_atomic

KIND = "statistics-release"
#: Who the user-level ε holds against (privacy.json, README threat model).
ADVERSARY = ("anyone who sees the released statistics or what devices compute from them; "
             "the server sees each contribution in the clear (central DP: trusted curator)")
#: ... with distributed Skellam noise in the in-process engine (no SecAgg+ there).
ADVERSARY_DISTRIBUTED = (
    "anyone who sees the released statistics or what devices compute from them; each "
    "device adds its own share of the noise, but the in-process engine has no SecAgg+: "
    "the server receives every device's noisy share, which carries only 1/t of the noise "
    "(t the survivor threshold), so against the server the ε does not hold (the Flower "
    "engine carries the shares through SecAgg+)")
#: ... with distributed Skellam noise carried by SecAgg+ (the Flower engine).
ADVERSARY_SECAGG = (
    "anyone who sees the released statistics or what devices compute from them, and an "
    "honest-but-curious server: SecAgg+ (reconstruction threshold t) unmasks only the sum "
    "of at least t devices' noisy shares, which carries at least the accounted noise; "
    "assumes fewer than t devices collude with the server, that honest devices add their "
    "noise, and that the server follows the protocol (an actively malicious server is not "
    "covered); the masks' secrecy is computational (docs/distributed-dp.md)")
#: Engines whose distributed shares travel through SecAgg+.
SECAGG_ENGINES = ("flower",)
#: ``evaluate(released) -> (mean metrics, devices evaluated)``.
Evaluate = Callable[[knn.Released], tuple[dict[str, float], int]]


@dataclass(frozen=True)
class DataInfo:
    """What the server knows of the data: the catalogue size and the roster."""

    name: str
    fingerprint: str
    users: int
    items: int


def settings_for(cfg: ReleaseConfig, noise_multiplier: float,
                 skellam_releases: dict | None = None) -> releases.ReleaseSettings:
    return releases.ReleaseSettings(
        releases=cfg.releases, popularity_decay=cfg.popularity_decay,
        popularity_cap=cfg.popularity_cap, noise_multiplier=noise_multiplier,
        popularity_share=cfg.popularity_share, head=cfg.head, cap=cfg.cap, knn=cfg.knn,
        noise_seed=None if cfg.noise_seed < 0 else cfg.noise_seed,
        bounded=cfg.contributions == "bounded", skellam_releases=skellam_releases,
        als_rank=cfg.als_rank, als_item_lambda=cfg.als_item_lambda,
        als_min_support=cfg.als_min_support)


def skellam_plan(cfg: ReleaseConfig, data: DataInfo) -> dict[str, distributed.SkellamRelease]:
    """The calibrated Skellam releases of a ``--noise distributed`` run."""
    shares = settings_for(cfg, 0.0).budget().shares
    return distributed.plan(cfg.target_epsilon, cfg.user_delta(data.users), shares,
                            distributed.dims(cfg.releases, data.items, cfg.head),
                            cfg.skellam_scale, data.users, cfg.skellam_bits,
                            cfg.survivor_threshold(data.users))


def noise_for(cfg: ReleaseConfig, n_users: int) -> float:
    """The composed noise multiplier that meets the run's target ε (0 for ε = inf)."""
    shares = tuple(sorted(settings_for(cfg, 0.0).budget().shares.items()))
    return releases.calibrate_total(cfg.target_epsilon, cfg.user_delta(n_users), shares)


def declared(cfg: ReleaseConfig, n_users: int, z: float,
             plan: dict[str, distributed.SkellamRelease] | None = None,
             secagg: bool = False) -> dict[str, Any]:
    """The mechanism as declared in the manifest: what an auditor recomputes from
    (``secagg``: the shares travel through SecAgg+, whose setup each release records)."""
    if plan is not None:
        releases = {name: r.declared() for name, r in plan.items()}
        if secagg:
            masks = secagg_prg.generator_name()
            for name, r in plan.items():
                releases[name]["secagg"] = {**distributed.secagg_record(r),
                                            "mask_generator": masks}
        return {"level": "user", "relation": stats.RELATION, "noise": "distributed",
                "delta": cfg.user_delta(n_users), "users": n_users, "claim_accountant": "rdp",
                "secret_randomness": cfg.private, "min_survivors": cfg.min_survivors,
                "threshold": cfg.survivor_threshold(n_users),
                "transport": "secagg+" if secagg else "in-process",
                "releases": releases}
    budget = settings_for(cfg, z).budget()
    return {"level": "user", "relation": stats.RELATION, "sensitivity": stats.SENSITIVITY,
            "delta": cfg.user_delta(n_users), "users": n_users, "claim_accountant": "pld",
            "noise_multiplier": z, "secret_randomness": cfg.private,
            "releases": {name: {"noise_multiplier": budget.multiplier(name),
                                "noise_std": stats.SENSITIVITY * budget.multiplier(name),
                                "share": budget.shares[name]} for name in cfg.releases}}


def run_release(cfg: ReleaseConfig, data: DataInfo, collect: releases.Collect,
                evaluate: Evaluate, engine: str) -> dict[str, Any]:
    """Run the pipeline, write the run directory, return ``results.json``'s content."""
    start = time.perf_counter()
    plan, secagg = None, engine in SECAGG_ENGINES
    if cfg.noise == "distributed":
        plan = skellam_plan(cfg, data)
        if secagg:
            distributed.check_secagg(plan)
        bound = range_failure.target_bound(cfg.target_epsilon) or 0.0
        if range_failure.accounted_delta(cfg.user_delta(data.users),
                                         range_failure_probability(plan, secagg), bound) <= 0:
            raise ConfigError("distributed noise: the probability that a device's SecAgg+ "
                              "share leaves its range exceeds delta; raise --skellam-bits")
    z = noise_for(cfg, data.users) if plan is None else 0.0
    run_dir = RunDir(cfg.out)
    run_dir.create({"kind": KIND, "run_id": secrets.token_hex(8), "engine": engine,
                    "config": cfg.to_dict(),
                    "versions": versions(), "seed": cfg.seed,
                    "privacy": declared(cfg, data.users, z, plan, secagg),
                    "data": {"name": data.name, "fingerprint": data.fingerprint,
                             "users": data.users, "items": data.items}}, resume=False)
    ledger = Ledger(stats.RELATION, cfg.user_delta(data.users))
    budget = BudgetRegistry.for_run(cfg.budget_dir, cfg.out)   # dataset-level (fedrec.shared.budget)

    def save(led: Ledger) -> None:
        write_text_atomic(run_dir.path / "ledger.json", led.dumps() + "\n")
        run_dir.record_accounting({"user": led.to_dict()})
        budget.record(run_entry(run_dir.manifest(), {"user": led.to_dict()}, len(led.history),
                                run_dir.path, mode=f"{cfg.pipeline} statistics release"))

    survivors: dict[str, dict] = {}

    def summed(name: str, record: dict) -> None:     # before the release leaves
        survivors[name] = record
        run_dir.record_section("survivors", survivors)

    released = releases.run_releases(collect, data.items, settings_for(cfg, z, plan), ledger,
                                     save, summed)
    knn.save_released(run_dir.path / "release.npz", released, cfg.knn)
    metrics, evaluated = evaluate(released)
    privacy = privacy_record(cfg, ledger, plan, survivors, secagg)
    run_dir.write_privacy(privacy)
    results = {"kind": KIND, "engine": engine, "pipeline": cfg.pipeline, "dataset": data.name,
               "seed": cfg.seed, "holdout": cfg.holdout, "metrics": metrics,
               "evaluated_users": evaluated, "privacy": privacy["user"],
               "head": int(len(released.head)),
               "upload_bytes": upload_bytes(cfg, data.items, len(released.head), plan),
               "noise": cfg.noise,
               "seconds": time.perf_counter() - start}
    if plan is not None:
        results["bits_per_coordinate"] = {name: r.bits for name, r in plan.items()}
        results["distributed"] = privacy["user"]["distributed"]
    run_dir.write_results(results)
    return results


def privacy_record(cfg: ReleaseConfig, ledger: Ledger,
                   plan: dict[str, distributed.SkellamRelease] | None = None,
                   survivors: dict[str, dict] | None = None,
                   secagg: bool = False) -> dict[str, Any]:
    """``privacy.json``: the user-level ε (PLD, the claim; RDP beside it) of the ledger.
    Distributed noise: the claim is the ledger's planned events (``mu``, the noise of t
    survivors), RDP, converted at δ_acc = δ - (1 + e^E) p (``strict_claim``; p = 0
    in-process); ``distributed`` adds the survivors per release and the ε of the noise
    actually summed (``mu s / t`` >= ``mu``: at most the claim)."""
    eps = ledger.epsilons()
    accountant = "rdp" if cfg.noise == "distributed" else "pld"   # PLD has no Skellam
    strict = {}
    if plan is not None:
        record = strict_claim(cfg, ledger, plan, secagg).as_record()
        eps = {**eps, "rdp": record["epsilon"]}
        strict = {k: record[k] for k in ("delta_accounted", "range_failure_probability",
                                         "epsilon_bound")}
    claim = eps[accountant] if cfg.private else math.inf
    user = {"epsilon": claim, "epsilons": eps, "accountant": accountant,
            "delta": ledger.delta, **strict, "relation": stats.RELATION,
            "neighbours": "replace one user's entire history (the roster is public)",
            "adversary": (ADVERSARY if cfg.noise == "central"
                          else ADVERSARY_SECAGG if secagg else ADVERSARY_DISTRIBUTED),
            "noise": cfg.noise, "private": cfg.private,
            "releases": len(ledger.history)}
    if plan is not None:
        user["distributed"] = survivors_summary(cfg, ledger.delta, plan, survivors or {})
    return {"user": user}


def range_failure_probability(plan: dict[str, distributed.SkellamRelease],
                              secagg: bool) -> float:
    """p of a run: SecAgg+ devices refuse a share beyond c (``SkellamRelease.range_failure``,
    summed over the releases: union bound); in-process nothing is clipped (0)."""
    return sum(r.range_failure() for r in plan.values()) if secagg else 0.0


def strict_claim(cfg: ReleaseConfig, ledger: Ledger,
                 plan: dict[str, distributed.SkellamRelease],
                 secagg: bool) -> range_failure.StrictClaim:
    """The ledger's RDP ε at δ_acc = δ - (1 + e^E) p: the run is within total variation p
    of the accounted mechanism (a device's refusal is the only way out of it), so the
    claim holds at the stated δ (``fedrec.shared.range_failure``). E: the target x
    (1 + 1e-6), else ε at δ / 2."""
    def epsilon_at(delta: float) -> float:
        return float(Ledger(ledger.relation, delta, ledger.history).epsilon("rdp") or 0.0)

    bound = range_failure.target_bound(cfg.target_epsilon)
    return range_failure.strict_claim(epsilon_at, ledger.delta,
                                      range_failure_probability(plan, secagg), bound)


def survivors_summary(cfg: ReleaseConfig, delta: float,
                      plan: dict[str, distributed.SkellamRelease],
                      survivors: dict[str, dict]) -> dict[str, Any]:
    """Per release s, t, n, mu (accounted) and mu_actual; the RDP ε of the noise actually
    summed (inf when not private, or when a release lacks its record)."""
    actual = math.inf
    if cfg.private and set(survivors) == set(plan):
        events = [plan[k].event(survivors[k]["mu_actual"]) for k in plan]
        actual = privacy.epsilon(dpe.ComposedDpEvent(events), delta, "rdp", stats.RELATION)
    return {"min_survivors": cfg.min_survivors, "release_dropout": cfg.release_dropout,
            "releases": survivors, "epsilon_actual": actual}


def upload_bytes(cfg: ReleaseConfig, n_items: int, head: int,
                 plan: dict[str, distributed.SkellamRelease] | None = None) -> dict[str, int]:
    """Bytes one device uploads per release: dense float32 (what SecAgg+ would carry),
    or ``bits`` per coordinate with distributed noise."""
    if plan is not None:
        return {name: math.ceil(r.bits * r.dim / 8) for name, r in plan.items()}
    out = {"popularity": 4 * n_items}
    if "cooccurrence" in cfg.releases:
        out["cooccurrence"] = stats.upload_bytes(head)
    for name in cfg.releases:
        if name.startswith(als.ALS):
            out[name] = 4 * als.contribution_size(head, cfg.als_rank)
    return out
