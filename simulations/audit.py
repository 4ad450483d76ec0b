"""Accounting audit of a run directory: recompute every ε claim, check it against the logs.

ε is recomputed with a fresh dp-accounting accountant (RDP and PLD) from the DpEvents
stored in ``manifest.json``'s ``accounting`` section, and compared with ``privacy.json``.
Those events are checked against the *logged mechanism* of every release (noise std
added, clip used, replies averaged: ``server-private/participation.jsonl``, the
write-ahead log, which also holds releases cut short by a crash; ``metrics.jsonl`` for
runs from before it), which is checked against the *declared mechanism* in the manifest.
Two derivations of each round's event: the consistency check rebuilds it with the
training code's own ``privacy.user_level_event``; the independent one
(:func:`_independent_check`) re-derives the Gaussian's noise multiplier from the logged
std, clip and replies with this module's arithmetic, builds the events from
dp-accounting's classes and composes them with dp-accounting's default RDP accountant.
What both trust: the logged std is what Flower's DP wrapper reports
(``compute_stdv`` over its own attributes), not a measurement of the noise drawn.
Client ledgers are checked against the participation log and the per-client events.

Every check is a :class:`Check`; a run passes when all do. Pure functions over a loaded
:class:`RunRecord`; file reading is in :func:`load_run`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedrec.server.rundir import RunDir, participation, with_participation
from fedrec.shared import privacy
from fedrec.shared.errors import FedrecError
from fedrec.shared.ledger import Ledger, largest, read_ledgers, restated
from fedrec.simulations import audit_ddp
from fedrec.simulations.audit_independent import independent_events, participation_known

#: A claim may be this much (relative) below the recomputation: accountants' numerics.
TOLERANCE = 0.01


class UnusableRun(FedrecError):
    """The directory is not a run that can be audited (missing or unreadable records)."""


@dataclass
class Check:
    name: str
    level: str
    passed: bool
    detail: str


@dataclass
class RunRecord:
    """A loaded run. ``rows``: metrics lines joined with their round's server-private
    participation; ``releases``: the write-ahead log (every release, crash re-runs
    included; None for runs from before it); ``private_missing``: the run keeps a
    server-private log that is not there (an auditor given the released files only)."""

    path: Path
    manifest: dict[str, Any]
    rows: list[dict[str, Any]]
    privacy: dict[str, Any] | None
    ledgers: dict[int, Ledger] = field(default_factory=dict)
    releases: list[dict[str, Any]] | None = None
    private_missing: bool = False


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UnusableRun(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UnusableRun(f"{path}: not valid JSON ({err})") from None


def load_run(path: str | Path) -> RunRecord:
    """Read manifest, metrics, privacy.json and every client ledger of a run."""
    path = Path(path)
    if not path.is_dir():
        raise UnusableRun(f"{path}: not a directory")
    manifest = _json(path / "manifest.json")
    if "config" not in manifest:
        raise UnusableRun(f"{path / 'manifest.json'}: no config (not a fedrec run manifest)")
    run = RunDir(path)
    rows = run.read_metrics()
    if not rows:
        raise UnusableRun(f"{path}: no completed round in metrics.jsonl")
    priv = _json(path / "privacy.json") if (path / "privacy.json").exists() else None
    state = manifest["config"].get("client-state-dir") or str(path / "client_state")
    try:
        ledgers = read_ledgers(state)
    except ValueError as err:
        raise UnusableRun(str(err)) from None
    releases, missing = None, False
    if "server_private" in manifest:     # participation lives in server-private files
        missing = not run.participation_path.exists()
        if not missing:
            releases = run.read_releases()
            rows = with_participation(rows, releases)
        stored = (manifest.get("accounting") or {}).get("example")
        if stored is not None and "clients" not in stored:
            private = run.read_client_accounting()
            manifest["accounting"]["example"] = (None if private is None else
                                                 {**stored, "clients": private["clients"]})
    return RunRecord(path, manifest, rows, priv, ledgers, releases, missing)


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def _claim_ok(claim: float | None, recomputed: float | None) -> bool:
    if recomputed is None:
        return True
    if claim is None:
        return False
    return claim >= recomputed * (1 - TOLERANCE) or math.isinf(claim)


# ----- user level -----

def _adaptive_update_noise(declared: dict[str, Any]) -> float:
    """Flower's split of z between the update and the clipped count (its own function)."""
    from flwr.common.differential_privacy import compute_adaptive_noise_params

    _, z_update = compute_adaptive_noise_params(
        declared["noise_multiplier"], declared["clients_per_round"],
        declared["adaptive"]["clipped_count_stddev"])
    return z_update


def _noise_checks(declared: dict[str, Any], rows: list[dict]) -> Check:
    """The noise in the logs is the noise the manifest declares, every round."""
    m, z, clip = declared["clients_per_round"], declared["noise_multiplier"], declared["clip"]
    bad = []
    for r in rows:
        std = r.get("dp_noise_std")
        if std is None:
            bad.append(f"round {r['round']}: no noise logged")
        elif declared.get("adaptive"):   # fedrec.server.adaptive: noise scales with this round's clip
            if not _close(std, _adaptive_update_noise(declared) * r.get("dp_clip", -1) / m):
                bad.append(f"round {r['round']}: std {std:g} != z_update * clip / m")
            low, high = declared["adaptive"].get("clip_range", (0.0, math.inf))
            if not low * (1 - 1e-9) <= r.get("dp_clip", -1) <= high * (1 + 1e-9):
                bad.append(f"round {r['round']}: clip {r.get('dp_clip')} outside the declared "
                           f"range [{low:g}, {high:g}]")
            if z > 0 and std <= 0:
                bad.append(f"round {r['round']}: noise switched off")
        elif not (_close(std, z * clip / m) and _close(r.get("dp_clip", -1), clip)):
            bad.append(f"round {r['round']}: std {std:g}, clip {r.get('dp_clip')} "
                       f"!= declared z*C/m = {z * clip / m:g}, C = {clip:g}")
    return Check("noise applied as declared", "user", not bad,
                 "; ".join(bad[:5]) or f"{len(rows)} rounds, std as declared")


def _events_from_log(declared: dict[str, Any], rows: list[dict]) -> list:
    count = declared["adaptive"]["clipped_count_stddev"] if declared.get("adaptive") else None
    return [privacy.user_level_event(declared["clients"], declared["clients_per_round"],
                                     int(r["dp_replied"]), float(r["dp_noise_std"]),
                                     float(r["dp_clip"]), count,
                                     float(r.get("dp_rounding_l2", 0.0)))
            for r in rows if r.get("dp_noise_std") is not None]


def audit_user(run: RunRecord) -> tuple[list[Check], dict[str, Any]]:
    declared = run.manifest["privacy"]["user"]
    rows = run.rows
    # every release's mechanism: the write-ahead log (crash re-runs too), else the metrics
    mech = run.releases if run.releases is not None else rows
    checks = [Check("sampling as declared", "user",
                    all(r["clients_sampled"] == declared["clients_per_round"] for r in mech),
                    f"declared {declared['clients_per_round']} of {declared['clients']} per round "
                    f"without replacement; logged {sorted({r['clients_sampled'] for r in mech})}"),
              _noise_checks(declared, mech)]
    merged = rows if run.releases is None else mech
    mismatch = [r["round"] for r in merged if r.get("dp_replied") != r.get("clients_replied")
                or ("participants" in r and len(r["participants"]) != r.get("dp_replied"))]
    checks.append(Check("averaged replies match the participation log", "user", not mismatch,
                        f"rounds where they differ: {mismatch[:10]}"))
    events = _events_from_log(declared, mech)
    logged = [privacy.event_from_dict(r["dp_event"]) for r in mech if "dp_event" in r]
    checks.append(Check("logged events match the logged mechanism", "user",
                        logged == events and len(events) == len(mech),
                        f"{len(events)} rebuilt, {len(logged)} logged, {len(mech)} releases"))
    if run.releases is not None:
        checks.append(_metrics_match_log(rows, run.releases))
    ledger = Ledger(declared["relation"], declared["delta"])
    for r, event in zip(mech, events):
        ledger.record(r["round"], event)
    recomputed = from_log = ledger.epsilons()
    stored = ((run.manifest.get("accounting") or {}).get("user"))
    manifest_events = None
    if stored is not None:   # the manifest alone: its events, a fresh accountant
        from_manifest = Ledger.from_dict(stored)
        manifest_events = [h[1] for h in from_manifest.history]
        same = ([h[:2] for h in from_manifest.history]
                == [[r["round"], privacy.event_to_dict(e)] for r, e in zip(mech, events)]
                and from_manifest.relation == declared["relation"]
                and _close(from_manifest.delta, declared["delta"]))
        checks.append(Check("manifest events match the logged mechanism", "user", same,
                            f"{len(from_manifest.history)} events in manifest.json, "
                            f"{len(events)} rebuilt from the log of releases"))
        recomputed = from_manifest.epsilons()
    claim = (run.privacy or {}).get("user") or {}
    releases_ok = claim.get("releases", len(mech)) == len(mech)
    checks.append(Check("rounds reported", "user",
                        claim.get("rounds") == len(rows) and releases_ok,
                        f"claimed {claim.get('rounds')} rounds, {claim.get('releases')} releases; "
                        f"run {len(rows)} rounds, {len(mech)} releases"))
    ok, detail, own_eps = independent_events(declared, mech, manifest_events)
    checks.append(Check("events re-derived independently", "user", ok, detail))
    # the claim must cover the manifest's events, the logged mechanism and our own events
    worst = max(e for e in (recomputed["rdp"], from_log["rdp"], own_eps) if e is not None)
    checks.append(Check("epsilon claim not below recomputation", "user",
                        _claim_ok(claim.get("epsilon"), worst),
                        f"claimed {claim.get('epsilon')}, recomputed RDP {recomputed['rdp']} "
                        f"(from the logged mechanism {from_log['rdp']}, independently {own_eps})"))
    known = None
    if run.releases is not None:
        known = participation_known(declared, run.releases,
                                    run.manifest.get("data", {}).get("users"))
        stated = (claim.get("participation_known") or {}).get("epsilon")
        checks.append(Check("epsilon with the participation log known not under-reported",
                            "user", _claim_ok(stated, known),
                            f"claimed {stated}, recomputed {known} (every round a user was "
                            "sampled in, as an unsampled Gaussian; the worst user)"))
    return checks, {"claimed": claim.get("epsilon"), "recomputed": recomputed,
                    "independent_rdp": own_eps, "delta": declared["delta"],
                    "participation_known": known,
                    "source": "manifest.json" if stored is not None else "metrics.jsonl"}


def _metrics_match_log(rows: list[dict], releases: list[dict]) -> Check:
    """Each metrics line is the last release of its round in the write-ahead log."""
    last = {int(r["round"]): r for r in releases}
    keys = ("dp_clip", "dp_noise_std", "dp_replied", "dp_event")
    bad = [r["round"] for r in rows
           if r["round"] not in last or any(r.get(k) != last[r["round"]].get(k) for k in keys)]
    return Check("metrics match the write-ahead log", "user", not bad,
                 f"{len(releases)} releases logged for {len(rows)} rounds; differ: {bad[:10]}")


# ----- example level -----

def _ledger_event_check(declared: dict[str, Any], ledgers: dict[int, Ledger]) -> Check:
    bad = []
    for user, ledger in ledgers.items():
        for rnd, e, *_ in ledger.history:
            event = privacy.event_from_dict(e)
            step = event.event
            rate = step.sampling_probability
            steps = declared["reconstruction_steps"] + math.ceil(declared["local_epochs"] / rate)
            if not (_close(step.event.noise_multiplier, declared["noise_multiplier"])
                    and event.count == steps):
                bad.append(f"client {user} round {rnd}: z {step.event.noise_multiplier}, "
                           f"{event.count} steps (declared z {declared['noise_multiplier']}, "
                           f"{steps} steps at rate {rate:.3g})")
    return Check("client ledgers record the declared mechanism", "example", not bad,
                 "; ".join(bad[:5]) or f"{len(ledgers)} ledgers")


def _double_counts(ledgers: dict[int, Ledger]) -> Check:
    """A replayed release (same round, same release key: a resumed seeded round) counted
    twice. A round recorded twice *without* a key was drawn twice with fresh secret
    randomness: two real releases, rightly counted twice."""
    bad = []
    for user, ledger in ledgers.items():
        keys = [(h[0], h[2]) for h in ledger.history if h[2] is not None]
        if len(keys) != len(set(keys)):
            bad.append(user)
    return Check("no release counted twice", "example", not bad,
                 f"{len(ledgers)} ledgers; with a replay counted twice: {bad[:10]}")


#: Participation-log keys of the rounds a device spent (a rejected update was trained).
SPENT = ("participants", "rejected")


def _relation_check(declared: dict[str, Any], stored: dict[str, Any] | None,
                    ledgers: dict[int, Ledger]) -> Check:
    """The declared relation is replace-one (a device's n is public, so add-or-remove
    neighbours are told apart with certainty), and the manifest's accounting and the
    device ledgers state the same relation."""
    relation = declared.get("relation", "add_or_remove_one")
    stated = {relation} | ({stored["relation"]} if stored else set()) | {
        led.relation for led in ledgers.values()}
    ok = relation == privacy.EXAMPLE_RELATION and stated == {relation}
    return Check("example-level relation is replace-one (n is public)", "example", ok,
                 f"declared {relation}; stated by manifest and ledgers: {sorted(stated)}")


def audit_example(run: RunRecord) -> tuple[list[Check], dict[str, Any]]:
    """Example level: the manifest's device-reported events recomputed with fresh
    accountants under the relation the manifest declares, checked against the
    participation log and, where the run directory holds them (simulation), the device
    ledgers; plus the recomputation under replace-one whatever was declared."""
    declared = run.manifest["privacy"]["example"]
    relation = declared.get("relation", "add_or_remove_one")
    stored = (run.manifest.get("accounting") or {}).get("example")
    checks = [_relation_check(declared, stored, run.ledgers)]
    if stored is not None:
        stored = {**stored, "relation": relation}
    from_manifest = _ledgers_from_manifest(stored) if stored is not None else None
    ledgers = {u: restated(led, relation) for u, led in run.ledgers.items()}
    if ledgers:
        checks += [_ledger_event_check(declared, ledgers), _double_counts(ledgers)]
    if from_manifest is None and not ledgers:
        checks.append(Check("example-level events recorded", "example", False,
                            "no manifest events and no device ledgers"))
    if not all("participants" in r for r in run.rows):
        checks.append(Check("ledgers match the participation log", "example", False,
                            "no participation log (server-private/participation.jsonl)"))
    else:
        log = participation(run.rows, run.manifest.get("data", {}).get("users"), SPENT)
        if ledgers:   # a ledger may hold more (a round spent, then the reply lost)
            checks.append(_covers("every participation is in the client's ledger", log,
                                  ledgers))
        if from_manifest is not None:
            checks.append(_covers("every participation is in the manifest", log, from_manifest))
    if stored is not None and ledgers:
        checks.append(_manifest_vs_ledgers(stored, ledgers))
    source = from_manifest if from_manifest is not None else ledgers
    worst, eps = largest(source)
    device_worst, device_eps = largest(ledgers)
    target = declared.get("target_epsilon")
    over = sorted(u for u, e in {**eps, **device_eps}.items()
                  if target and e > target * (1 + 1e-9))
    checks.append(Check("no client over its budget", "example", not over,
                        f"target {target}; over: {over[:10]}"))
    recomputed = {"rdp": eps.get(worst),
                  "pld": source[worst].epsilon("pld") if worst is not None else None}
    if relation != privacy.EXAMPLE_RELATION:   # what the declared relation hides
        recomputed[privacy.EXAMPLE_RELATION] = max(largest(
            {u: restated(led, privacy.EXAMPLE_RELATION) for u, led in source.items()})[1]
            .values(), default=None)
    on_devices = device_eps.get(device_worst)
    claim = ((run.privacy or {}).get("example") or {}).get("max_client_epsilon")
    checks.append(Check("largest client epsilon not under-reported", "example",
                        _claim_ok(claim, max((e for e in (recomputed["rdp"], on_devices)
                                              if e is not None), default=None)),
                        f"claimed {claim}, recomputed RDP {recomputed['rdp']} (client {worst}; "
                        f"device ledgers {on_devices})"))
    return checks, {"claimed": claim, "recomputed": recomputed, "client": worst,
                    "relation": relation, "delta": declared["delta"], "clients": len(eps),
                    "source": "manifest.json" if stored is not None else "device ledgers"}


def _covers(name: str, log: dict[int, list[int]], ledgers: dict[int, Ledger]) -> Check:
    """Every round of the participation log is in the client's ledger (it may hold more)."""
    missing = {u: sorted(set(r) - set(ledgers[u].rounds if u in ledgers else []))
               for u, r in log.items()}
    missing = {u: r for u, r in sorted(missing.items()) if r}
    return Check(name, "example", not missing,
                 f"{len(log)} participants; uncounted: {dict(list(missing.items())[:5])}")


def _entries(part: dict | list) -> list[dict[str, Any]]:
    """A client's manifest entries: ``[{"event", "rounds"}, ...]`` (a single dict in
    manifests written before devices reported their events)."""
    return part if isinstance(part, list) else [part]


def _ledgers_from_manifest(stored: dict[str, Any]) -> dict[int, Ledger]:
    """Each client's ledger rebuilt from the manifest: each event once per round it ran."""
    out = {}
    for user, part in stored["clients"].items():
        ledger = Ledger(stored["relation"], float(stored["delta"]))
        for entry in _entries(part):
            for rnd in entry["rounds"]:
                ledger.record(int(rnd), privacy.event_from_dict(entry["event"]))
        out[int(user)] = ledger
    return out


def _manifest_vs_ledgers(stored: dict[str, Any], ledgers: dict[int, Ledger]) -> Check:
    """The manifest's events are what each device recorded for those rounds."""
    bad = []
    for user, part in stored["clients"].items():
        ledger = ledgers.get(int(user))
        recorded = {} if ledger is None else {h[0]: h[1] for h in ledger.history}
        for entry in _entries(part):
            bad += [f"client {user} round {rnd}" for rnd in entry["rounds"]
                    if recorded.get(int(rnd)) != entry["event"]]
    return Check("manifest events match the device ledgers", "example", not bad,
                 f"{len(stored['clients'])} clients in manifest.json; differ: {bad[:5]}")


def audit_accounting(run: RunRecord) -> dict[str, Any]:
    """Every accounting check; ``passed`` is True when all pass."""
    declared = run.manifest.get("privacy") or {"mode": "none"}
    checks: list[Check] = []
    levels: dict[str, Any] = {}
    if declared.get("mode", "none") != "none" and run.privacy is None:
        checks.append(Check("privacy.json present", "run", False, "DP declared, no privacy.json"))
    if declared.get("mode", "none") != "none" and run.private_missing:
        checks.append(Check("server-private participation log present", "run", False,
                            f"{run.manifest['server_private']['participation']} is missing: "
                            "the checks that need who took part cannot run (an auditor needs "
                            "the server-private files, not only the released ones)"))
    if audit_ddp.is_distributed(declared.get("user")):   # devices' Skellam shares
        found, levels["user"] = audit_ddp.audit_distributed(run, Check)
        checks += found
    elif declared.get("user"):
        found, levels["user"] = audit_user(run)
        checks += found
    if declared.get("example"):
        found, levels["example"] = audit_example(run)
        checks += found
    return {"run": str(run.path), "mode": declared.get("mode", "none"),
            "rounds": len(run.rows), "levels": levels, "warnings": warnings(run),
            "checks": [asdict(c) for c in checks], "passed": all(c.passed for c in checks)}


def warnings(run: RunRecord) -> list[str]:
    """What limits a claim without making it wrong: seeded randomness, a manifest from
    before fedrec recorded its events (then ε is recomputed from the logs)."""
    declared = run.manifest.get("privacy") or {}
    seed = int(run.manifest["config"].get("noise-seed", -1))
    out = []
    if declared.get("mode", "none") != "none" and seed >= 0:
        out.append(f"DP randomness was seeded (noise-seed {seed}): the claim holds only against "
                   "parties who do not hold the run config or manifest")
    if declared.get("example") and not run.ledgers:
        out.append("no device ledgers in the run directory (a deployment keeps them on the "
                   "devices): example-level ε recomputed from the events the devices reported; "
                   "checking the ledgers themselves needs the devices' stores")
    if declared.get("mode", "none") != "none" and "accounting" not in run.manifest:
        out.append("manifest.json has no accounting section (a run from before fedrec recorded "
                   "its DpEvents there): ε recomputed from metrics.jsonl and the device ledgers")
    return out
