"""``fedrec audit --empirical``: test a run's ε claims with attacks on what it released.

Two attacks, each against the claim that covers what it looks at:

* **Canaries** (user level; the run must have been trained with ``canaries`` = k > 0):
  cosines between the released model's total change and the k inserted canary
  directions vs held-out ones give Andrew et al.'s one-shot ε estimate
  (:func:`fedrec.simulations.empirical.canary_epsilon`), compared with the user-level claim.
* **Membership inference on the device models** (example level): the final global
  weights plus each device's stored (training) user embedding.

  - With ``example-canaries`` = m (a valid test): m users each trained on one of two
    random items they never had, a or b, chosen by a fair coin drawn before training
    (``fedrec.shared.canary.interaction_canary``). From the models alone the attack scores
    each canary user's two candidates (the logit minus that item's mean logit over all
    devices) and guesses "a" where a - b is highest and "b" where it is lowest (how
    many: a grid fixed in advance, Bonferroni-corrected); only then are the coins read.
    Steinke, Nasr & Jagielski's one-run analysis (:func:`fedrec.simulations.empirical.
    one_run_audit`) turns the correct guesses into an ε lower bound at 95 % (AUC and
    ROC: of a - b, coin heads against tails). The two outcomes of a coin differ by
    substituting one interaction, so under a ``replace_one`` claim the bound is compared
    with the largest client ε; under ``add_or_remove_one`` with what group privacy gives
    a substitution, (2ε, (1 + e^ε)δ). A bound above the claim fails the run.
  - Without example canaries: a **heuristic**, not a bound: one training item per
    device against its held-out test item (the user's latest: drift alone separates
    them). AUC and advantage only; no ε, never part of pass/fail.

  The user embedding never leaves the device, so user-level DP alone does not cover this
  model: without client DP there is no claim to test and the numbers show how much the
  on-device model remembers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedrec.simulations import empirical
from fedrec.simulations.audit import RunRecord, UnusableRun

#: Held-out canary directions drawn for the null distribution (at least k).
HELD_OUT = 1000
#: Confidence of the one-run lower bound.
CONFIDENCE = 0.95
#: Random stream of the heuristic's training item per device.
STREAM_HEURISTIC = 41


def _config(run: RunRecord):
    from fedrec.shared.config import RunConfig

    return RunConfig.from_mapping(run.manifest["config"], source=str(run.path / "manifest.json"))


def _federation(cfg):
    from fedrec.shared.federated_data import federation_of

    try:
        return federation_of(cfg)
    except (OSError, ValueError) as err:
        raise UnusableRun(f"cannot load the run's dataset {cfg.dataset!r}: {err}") from None


def _final_weights(run: RunRecord) -> dict[str, np.ndarray]:
    from fedrec.server.rundir import RunDir

    rundir = RunDir(run.path)
    last = rundir.last_complete_round()
    if last == 0:
        raise UnusableRun(f"{run.path}: no checkpoint of a completed round")
    return rundir.load_checkpoint(last)[0]


def _claim(run: RunRecord, level: str) -> float | None:
    """The run's claimed ε at ``level`` (None: no claim, nothing for an attack to refute)."""
    part = (run.privacy or {}).get(level) or {}
    value = part.get("epsilon" if level == "user" else "max_client_epsilon")
    return None if value is None else float(value)


def _within(empirical_eps: float, claimed: float | None) -> bool:
    return claimed is None or empirical_eps <= claimed * (1 + 1e-9)


def canary_audit(run: RunRecord) -> dict[str, Any]:
    """The canary estimate of a run trained with canaries (or why there is none)."""
    k = int(run.manifest.get("data", {}).get("canaries", 0))
    claim = _claim(run, "user")
    if k < 2:
        return {"available": False, "claimed": claim,
                "reason": "run trained without canaries (re-run with --canaries K, K >= 2)"}
    from fedrec.server.app import initial_global_weights
    from fedrec.shared import canary

    cfg = _config(run)
    fed = _federation(cfg)
    initial = initial_global_weights(cfg, fed.n_items, fed.item_features)
    final = _final_weights(run)
    inserted = canary.cosines(initial, final, cfg.seed, range(k))
    held_out = canary.cosines(initial, final, cfg.seed, range(k, k + max(HELD_OUT, k)))
    user = (run.manifest.get("privacy") or {}).get("user") or {}
    delta = float(user.get("delta") or cfg.user_delta(fed.n_clients + k))
    fit = empirical.canary_epsilon(inserted, held_out, delta)
    pooled = empirical.gaussian_pair_epsilon(fit.inserted_mean, fit.held_out_std,
                                             fit.held_out_mean, fit.held_out_std, delta)
    return {"available": True, "claimed": claim, "epsilon": pooled,
            "epsilon_two_gaussians": fit.epsilon, "delta": delta,
            "fit": {k_: v for k_, v in fit.__dict__.items() if k_ not in ("epsilon", "delta")},
            "cosines": {"inserted": inserted.tolist(), "held_out": held_out.tolist()}}


def _device_scores(run: RunRecord, cfg, fed) -> tuple[np.ndarray, np.ndarray]:
    """(users with a stored training embedding, their (users, items) logits on the device
    model: the final global weights plus each one's own embedding)."""
    from fedrec.client.state import PrivateStore
    from fedrec.shared.model import build_model, make_scorer, set_weights

    root = cfg.client_state_root if cfg.client_state_dir else run.path / "client_state"
    users, embeddings = [], []
    for user in range(fed.n_clients):
        state = PrivateStore(root, user).load(1 << 30)
        if state is not None:
            users.append(user)
            embeddings.append(state)
    if len(users) < 4:
        raise UnusableRun(f"{run.path}: fewer than 4 devices with a stored embedding under {root}")
    model = build_model(cfg.model, len(users), fed.n_items, fed.item_features.shape[1])
    set_weights(model, _final_weights(run), "global")
    set_weights(model, {k: np.concatenate([e[k] for e in embeddings]) for k in embeddings[0]},
                "private")
    return np.array(users), make_scorer(model, fed.item_features)(np.arange(len(users)))


def per_coin_claim(epsilon: float | None, delta: float, relation: str
                   ) -> tuple[float | None, float]:
    """The (ε, δ) a claim at ``relation`` gives one coin of an example canary: its two
    outcomes differ by substituting one interaction. ``replace_one``: the claim itself;
    ``add_or_remove_one``: a removal then an addition, (2ε, min(1, (1 + e^ε)δ)) by group
    privacy."""
    if relation == "replace_one" or epsilon is None:
        return epsilon, delta
    if relation != "add_or_remove_one":
        raise UnusableRun(f"unknown example-level relation {relation!r} in the manifest")
    return 2 * epsilon, min(1.0, (1 + math.exp(min(epsilon, 700.0))) * delta)


def _example_relation(run: RunRecord) -> str:
    declared = ((run.manifest.get("privacy") or {}).get("example") or {}).get("relation")
    recorded = ((run.manifest.get("accounting") or {}).get("example") or {}).get("relation")
    return str(declared or recorded or "add_or_remove_one")


def one_run_audit(run: RunRecord, cfg, fed, users: np.ndarray, scores: np.ndarray
                  ) -> dict[str, Any]:
    """The example-canary audit (see the module docstring)."""
    slots = [fed.interaction_canary(int(u)) for u in fed.canary_users]
    row = {int(u): i for i, u in enumerate(users)}
    scored = [c for c in slots if c.user in row]   # the others never trained: abstain
    centred = {i: scores[:, i] - scores[:, i].mean() for c in scored for i in (c.a, c.b)}
    a = np.array([centred[c.a][row[c.user]] for c in scored])
    b = np.array([centred[c.b][row[c.user]] for c in scored])
    truth = np.array([c.a_inserted for c in scored], bool)   # read after the scores
    claim = _claim(run, "example") if cfg.client_dp else None
    relation = _example_relation(run)
    eps_c, delta_c = per_coin_claim(claim, cfg.client_delta, relation)
    guess = a - b
    result = empirical.one_run_audit(guess, truth, len(slots), delta_c, CONFIDENCE)
    fpr, tpr, _ = empirical.roc(guess[truth], guess[~truth])   # "a is in" when a - b is high
    return {"available": True, "design": "one-run", "claimed": claim, "relation": relation,
            "claim": (f"example level (largest client ε, {relation})" if cfg.client_dp else
                      "none: user-level DP does not cover the on-device user embedding"),
            "claimed_per_coin": eps_c, "delta": delta_c, "devices": len(users),
            "epsilon_lower": result.epsilon_lower, "confidence": result.confidence,
            "canaries": result.canaries, "scored": result.scored, "guesses": result.guesses,
            "correct": result.correct, "tried": [list(t) for t in result.tried],
            "auc": empirical.auc(guess[truth], guess[~truth]),
            "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()}}


def memorisation_heuristic(cfg, fed, users: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Without example canaries: a training item against the held-out test item per
    device. Not a bound (the test item is the latest: drift alone separates them)."""
    rng = np.random.default_rng([cfg.seed, STREAM_HEURISTIC])
    member, non_member = [], []
    for row, user in enumerate(users):
        data = fed.client(int(user))
        if not data.evaluable:
            continue
        trained = data.train_items[data.train_items != data.val_item]
        member.append(scores[row, rng.choice(trained if len(trained) else data.train_items)])
        non_member.append(scores[row, data.test_item])
    if len(member) < 2:
        raise UnusableRun("fewer than 2 evaluable devices with a stored embedding")
    fpr, tpr, _ = empirical.roc(member, non_member)
    return {"available": True, "design": "heuristic", "claimed": None,
            "claim": "none: a heuristic, not a bound (no --example-canaries)",
            "devices": len(member), "auc": empirical.auc(member, non_member),
            "advantage": float(np.max(tpr - fpr)),
            "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()}}


def membership_audit(run: RunRecord) -> dict[str, Any]:
    """Membership inference on the devices' models (see the module docstring)."""
    cfg = _config(run)
    fed = _federation(cfg)
    users, scores = _device_scores(run, cfg, fed)
    if cfg.example_canaries:
        return one_run_audit(run, cfg, fed, users, scores)
    return memorisation_heuristic(cfg, fed, users, scores)


def empirical_checks(result: dict[str, Any]) -> list:
    """A run fails when an attack proves more leakage than its claim allows."""
    from fedrec.simulations.audit import Check

    checks = []
    can = result["canary"]
    if can["available"]:
        checks.append(Check("canary estimate not above claimed user epsilon", "user",
                            _within(can["epsilon"], can["claimed"]),
                            f"estimate {can['epsilon']:.3g} (two-Gaussian fit "
                            f"{can['epsilon_two_gaussians']:.3g}) vs claimed {can['claimed']}"))
    mia = result["membership"]
    if mia["design"] == "one-run" and mia["claimed_per_coin"] is not None:
        checks.append(Check("one-run lower bound not above claimed example epsilon", "example",
                            _within(mia["epsilon_lower"], mia["claimed_per_coin"]),
                            f"lower bound {mia['epsilon_lower']:.3g} at {mia['confidence']:.0%} "
                            f"({mia['correct']}/{mia['guesses']} guesses right, "
                            f"{mia['canaries']} canaries) vs claimed {mia['claimed_per_coin']:.4g}"
                            f" per canary ({mia['relation']}, largest client ε "
                            f"{mia['claimed']:.4g})"))
    return checks


def audit_empirical(run: RunRecord) -> dict[str, Any]:
    """Both attacks; the raw cosines and ROC points stay in the result for the plots."""
    return {"canary": canary_audit(run), "membership": membership_audit(run)}
