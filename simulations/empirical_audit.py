"""``fedrec audit --empirical``: test a run's ε claims with attacks on what it released.

Two attacks, each against the claim that covers what it looks at:

* **Canaries** (user level; the run must have been trained with ``canaries`` = k > 0):
  cosines between the released model's total change and the k inserted canary
  directions vs held-out ones give Andrew et al.'s one-shot ε estimate
  (:func:`simulations.empirical.canary_epsilon`), compared with the user-level claim.
* **Membership inference** (example level, on the device model): for every client that
  trained, the final global weights plus its own stored user embedding score one of its
  training items (member) and its held-out test item (non-member, the same user's
  taste, never trained on). A score-threshold attack gives AUC, advantage and an ε lower
  bound with Clopper-Pearson confidence, compared with the largest example-level claim.
  The user embedding never leaves the device, so user-level DP alone does not cover this
  model: without client DP there is no claim to test and the numbers show how much the
  on-device model remembers.

Caveat stated in the report: the test item is the user's *latest* interaction, so a
model can score it lower for reasons of time (taste drift), not memory; that only makes
the bound larger, never hides leakage.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulations import empirical
from simulations.audit import RunRecord, UnusableRun

#: Held-out canary directions drawn for the null distribution (at least k).
HELD_OUT = 1000
#: The attack's confidence level for the Clopper-Pearson limits.
CONFIDENCE = 0.95
STREAM_MEMBERS = 41


def _config(run: RunRecord):
    from shared.config import RunConfig

    return RunConfig.from_mapping(run.manifest["config"], source=str(run.path / "manifest.json"))


def _federation(cfg):
    from shared.federated_data import federation_of

    try:
        return federation_of(cfg)
    except (OSError, ValueError) as err:
        raise UnusableRun(f"cannot load the run's dataset {cfg.dataset!r}: {err}") from None


def _final_weights(run: RunRecord) -> dict[str, np.ndarray]:
    from server.rundir import RunDir

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
    from server.app import initial_global_weights
    from shared import canary

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


def _device_scores(run: RunRecord, cfg, fed) -> tuple[np.ndarray, np.ndarray, int]:
    """Logits of (user, member item) and (user, test item) on each trained device's model."""
    from client.state import PrivateStore
    from shared.model import build_model, make_scorer, set_weights

    root = cfg.client_state_root if cfg.client_state_dir else run.path / "client_state"
    users, embeddings = [], []
    for user in range(fed.n_clients):
        state = PrivateStore(root, user).load(1 << 30)
        if state is not None and fed.client(user).evaluable:
            users.append(user)
            embeddings.append(state)
    if len(users) < 4:
        raise UnusableRun(f"{run.path}: fewer than 4 devices with a stored embedding under {root}")
    model = build_model(cfg.model, len(users), fed.n_items, fed.item_features.shape[1])
    set_weights(model, _final_weights(run), "global")
    set_weights(model, {k: np.concatenate([e[k] for e in embeddings]) for k in embeddings[0]},
                "private")
    scores = make_scorer(model, fed.item_features)(np.arange(len(users)))
    rng = np.random.default_rng([cfg.seed, STREAM_MEMBERS])
    member, non_member = [], []
    for row, user in enumerate(users):
        data = fed.client(user)
        trained = data.train_items[data.train_items != data.val_item]
        member.append(scores[row, rng.choice(trained if len(trained) else data.train_items)])
        non_member.append(scores[row, data.test_item])
    return np.array(member), np.array(non_member), len(users)


def membership_audit(run: RunRecord) -> dict[str, Any]:
    """Loss-threshold membership inference on the devices' models (see module docstring)."""
    cfg = _config(run)
    fed = _federation(cfg)
    member, non_member, devices = _device_scores(run, cfg, fed)
    delta = cfg.client_delta if cfg.client_dp else 1e-5
    result = empirical.membership_audit(member, non_member, delta,
                                        np.random.default_rng([cfg.seed, STREAM_MEMBERS, 1]),
                                        CONFIDENCE)
    fpr, tpr, _ = empirical.roc(member, non_member)
    return {"available": True, "claimed": _claim(run, "example") if cfg.client_dp else None,
            "claim": "example level (largest client ε)" if cfg.client_dp else
                     "none: user-level DP does not cover the on-device user embedding",
            "devices": devices, "delta": delta, **result.__dict__,
            "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()}}


def empirical_checks(result: dict[str, Any]) -> list:
    """A run fails when an attack proves more leakage than its claim allows."""
    from simulations.audit import Check

    checks = []
    can = result["canary"]
    if can["available"]:
        checks.append(Check("canary estimate not above claimed user epsilon", "user",
                            _within(can["epsilon"], can["claimed"]),
                            f"estimate {can['epsilon']:.3g} (two-Gaussian fit "
                            f"{can['epsilon_two_gaussians']:.3g}) vs claimed {can['claimed']}"))
    mia = result["membership"]
    checks.append(Check("membership lower bound not above claimed example epsilon", "example",
                        _within(mia["epsilon_lower"], mia["claimed"]),
                        f"lower bound {mia['epsilon_lower']:.3g} at {mia['confidence']:.0%} "
                        f"(AUC {mia['auc']:.3f}) vs claimed {mia['claimed']}"))
    return checks


def audit_empirical(run: RunRecord) -> dict[str, Any]:
    """Both attacks; the raw cosines and ROC points stay in the result for the plots."""
    return {"canary": canary_audit(run), "membership": membership_audit(run)}
