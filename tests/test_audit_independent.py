"""Issue 19 item 10: the audit re-derives each round's noise multiplier with its own
arithmetic, so a bug in the training code's event builder is caught, not repeated."""

from __future__ import annotations

import json

import pytest

from fedrec.server.dp import ServerPrivacy, accounting_record, declared_privacy
from fedrec.shared import privacy
from fedrec.shared.config import RunConfig
from fedrec.simulations.audit import audit_accounting, load_run

N, M, ROUNDS = 40, 4, 3


def _user_run(path, cfg: RunConfig, replied=(M, M, M - 1)):
    """A user-level run directory written by the server's own accounting code: each
    round's event from ``privacy.user_level_event`` over the std Flower reports."""
    path.mkdir(parents=True)
    sp = ServerPrivacy(cfg, N, M)
    rows = []
    for rnd, r in enumerate(replied, start=1):
        std = cfg.noise_multiplier * cfg.clip / M          # Flower's compute_stdv
        event = privacy.user_level_event(N, M, r, std, cfg.clip)
        sp.ledger.record(rnd, event)
        rows.append({"round": rnd, "clients_sampled": M, "clients_replied": r,
                     "dp_clip": cfg.clip, "dp_noise_std": std, "dp_replied": r,
                     "dp_event": privacy.event_to_dict(event)})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "manifest.json").write_text(json.dumps(
        {"config": cfg.to_flower(), "privacy": declared_privacy(cfg, N, M),
         "accounting": accounting_record(cfg, sp, rows)}))
    (path / "privacy.json").write_text(json.dumps({"mode": "server", "user": sp.summary()}))
    return path


def _failed(result) -> set[str]:
    return {c["name"] for c in result["checks"] if not c["passed"]}


def test_own_multiplier_by_hand():
    from fedrec.simulations.audit_independent import own_multiplier

    # std 0.25 on the mean of 4 updates clipped to 0.5: sensitivity 2 * 0.5 / 4 = 0.25
    assert own_multiplier(0.25, 0.5, 4) == pytest.approx(1.0)
    assert own_multiplier(0.25, 0.5, 3) == pytest.approx(0.75)    # fewer replies, less noise
    # SecAgg+ rounding moves each update by up to 0.1 more: sensitivity 2 * 0.6 / 4
    assert own_multiplier(0.25, 0.5, 4, rounding=0.1) == pytest.approx(0.25 / 0.3)


@pytest.mark.inprocess
def test_a_correct_run_agrees_with_the_independent_derivation(tmp_path):
    cfg = RunConfig(dp="server", noise_multiplier=1.2, clip=0.5, clients_per_round=M)
    result = audit_accounting(load_run(_user_run(tmp_path / "run", cfg)))
    assert result["passed"], _failed(result)
    user = result["levels"]["user"]
    assert user["independent_rdp"] == pytest.approx(user["claimed"], rel=1e-3)
    assert user["independent_rdp"] <= user["claimed"] * (1 + 1e-9)    # more RDP orders


@pytest.mark.inprocess
def test_a_bug_in_the_training_codes_event_builder_is_caught(tmp_path, monkeypatch):
    """The sensitivity constant of ``user_level_event`` halved (replace-one treated as
    add/remove): every event's multiplier doubles and ε shrinks. The logs, the manifest
    and the claim all agree with each other, and the consistency checks rebuild the same
    wrong events; only the independent derivation can see it."""
    cfg = RunConfig(dp="server", noise_multiplier=1.2, clip=0.5, clients_per_round=M)
    monkeypatch.setattr(privacy, "REPLACE_ONE_SENSITIVITY", 1.0)
    result = audit_accounting(load_run(_user_run(tmp_path / "run", cfg)))
    assert _failed(result) == {"events re-derived independently",
                               "epsilon claim not below recomputation"}
    user = result["levels"]["user"]
    assert user["independent_rdp"] > 1.5 * user["claimed"]
