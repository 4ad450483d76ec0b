"""The server-private participation log: what it holds, and the ε only it can tell.

Each release of a round's aggregate gets one write-ahead entry
(``server-private/participation.jsonl``, :meth:`fedrec.server.rundir.RunDir.write_ahead`) before
the aggregate leaves the server: who took part, declined or was rejected, the DP-SGD
events devices reported, and the round's user-level mechanism (clip, noise std, replies
averaged, DpEvent). The released files hold none of the participation.

User-level ε is amplified by sampling: it holds against a party who sees the released
models but not who was sampled. A party who does see the participation log knows, for
each round, whether a user took part; for it each of the user's rounds is the plain
(unsampled) Gaussian of that round. :func:`participation_known` composes those rounds
for every user and reports the worst (for constant rounds: the most-sampled user).
"""

from __future__ import annotations

import json
import os
from typing import Any

from dp_accounting import dp_event as dpe

from fedrec.server.rundir import PRIVATE_FIELDS
from fedrec.shared import privacy
from fedrec.shared.ledger import Ledger

#: Fields of a release that describe its mechanism (public, repeated in the log so that
#: a release cut short by a crash, which has no metrics line, is still auditable).
MECHANISM_FIELDS = ("clients_sampled", "clients_replied", "dp_clip", "dp_noise_std",
                    "dp_replied", "dp_rounding_l2", "dp_event", "survivors",
                    "survivor_threshold")
#: Rounds a user counts as taking part in when the participation log is known.
SAMPLED = ("participants", "declined", "rejected")
#: Who the amplified user-level ε holds against (privacy.json).
ADVERSARY = ("anyone who sees the released models (every round's noised aggregate, "
             "checkpoints, the final model) and the public run files, but neither "
             "server-private/participation.jsonl nor the sampling randomness")
KNOWN_ADVERSARY = ("also sees the participation log (the server, or anyone it leaks to): "
                   "no amplification by sampling; every round the user was sampled in "
                   "(averaged, rejected or declined) composed as the round's unsampled "
                   "Gaussian, for the user with the largest such ε")
#: Test-only: ``FEDREC_TEST_CRASH_AFTER_AGGREGATE=R`` ends the process (``os._exit``)
#: after round R's aggregate was released (evaluated) and before its checkpoint and
#: metrics line are written: the crash the write-ahead log must survive.
CRASH_ENV = "FEDREC_TEST_CRASH_AFTER_AGGREGATE"


def split_fields(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A round's fields as (public: for metrics.jsonl, private: for the log only)."""
    public = {k: v for k, v in fields.items() if k not in PRIVATE_FIELDS}
    return public, {k: v for k, v in fields.items() if k in PRIVATE_FIELDS}


def release_entry(round_: int, release: int, public: dict[str, Any],
                  private: dict[str, Any]) -> dict[str, Any]:
    """The write-ahead line of release number ``release`` (1-based, over the whole run,
    re-runs included) of round ``round_``."""
    return {"round": int(round_), "release": int(release),
            **{k: public[k] for k in MECHANISM_FIELDS if k in public}, **private}


def crash_point(round_: int) -> None:
    """Test-only crash (see :data:`CRASH_ENV`); does nothing unless the variable names
    this round."""
    if os.environ.get(CRASH_ENV) == str(round_):
        os._exit(75)


def ledger_from_releases(releases: list[dict[str, Any]], relation: str,
                         delta: float) -> Ledger:
    """The user-level ledger of every release in the log (each one counts)."""
    ledger = Ledger(relation, delta)
    for entry in releases:
        if "dp_event" in entry:
            ledger.record(int(entry["round"]), privacy.event_from_dict(entry["dp_event"]))
    return ledger


def resumed_ledger(from_log: Ledger, from_checkpoint: Ledger | None) -> Ledger:
    """The ledger a resumed run continues: the write-ahead log's, which also holds
    releases after the last checkpoint; the checkpoint's for runs without a log.

    Raises:
        RuntimeError: when neither history extends the other (mixed-up files).
    """
    if from_checkpoint is None:
        return from_log
    a, b = from_log.history, from_checkpoint.history
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    if [h[:2] for h in long_[:len(short)]] != [h[:2] for h in short]:
        raise RuntimeError("the write-ahead log and the checkpoint's ledger disagree; "
                           "cannot tell which releases happened")
    return from_log if len(a) >= len(b) else from_checkpoint


def unsampled(event: dpe.DpEvent) -> dpe.DpEvent:
    """The round's mechanism for a party who knows the user took part: the sampled
    event's inner mechanism (an unsampled event is returned as it is)."""
    if isinstance(event, (dpe.SampledWithoutReplacementDpEvent, dpe.PoissonSampledDpEvent)):
        return event.event
    return event


def sampled_releases(releases: list[dict[str, Any]],
                     users: int | None = None) -> dict[int, list[int]]:
    """Per user position, the indices (into ``releases``) of the releases it was sampled
    in and answered (averaged, rejected or declined); positions >= ``users`` (canary
    clients of an audit run) are left out."""
    out: dict[int, list[int]] = {}
    for i, entry in enumerate(releases):
        for p in sorted({int(p) for k in SAMPLED for p in entry.get(k, [])}):
            if users is None or p < users:
                out.setdefault(p, []).append(i)
    return out


def participation_known(releases: list[dict[str, Any]], delta: float,
                        users: int | None = None) -> dict[str, Any]:
    """User-level ε without amplification by sampling (see module docstring), RDP
    under REPLACE_ONE at ``delta``, maximised over users."""
    inner = [json.dumps(privacy.event_to_dict(unsampled(privacy.event_from_dict(e["dp_event"]))),
                        sort_keys=True) if "dp_event" in e else None for e in releases]
    cache: dict[tuple, float] = {}
    worst: tuple[float, int] = (0.0, 0)
    rounds = sampled_releases(releases, users)
    for indices in rounds.values():
        counts: dict[str, int] = {}
        for i in indices:
            if inner[i] is not None:
                counts[inner[i]] = counts.get(inner[i], 0) + 1
        key = tuple(sorted(counts.items()))
        if key not in cache:
            cache[key] = _composed_epsilon(counts, delta)
        worst = max(worst, (cache[key], sum(counts.values())))
    return {"epsilon": worst[0], "delta": delta, "accountant": "rdp", "relation": "replace_one",
            "rounds_of_that_user": worst[1],
            "most_sampled_rounds": max((len(v) for v in rounds.values()), default=0),
            "adversary": KNOWN_ADVERSARY}


def _composed_epsilon(counts: dict[str, int], delta: float) -> float:
    if not counts:
        return 0.0
    acc = privacy.make_accountant("rdp", "replace_one")
    for text, n in counts.items():
        acc.compose(privacy.event_from_dict(json.loads(text)), n)
    return float(acc.get_epsilon(delta))


def user_scope(record: dict[str, Any], releases: list[dict[str, Any]],
               users: int | None) -> dict[str, Any]:
    """``privacy.json``'s user-level section with whom it holds against, and the ε for
    a party who also sees the participation log."""
    return {**record, "adversary": ADVERSARY,
            "participation_log": "server-private/participation.jsonl (not released)",
            "participation_known": participation_known(releases, record["delta"], users)}
