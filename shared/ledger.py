"""A privacy ledger: the DpEvents a party actually ran, composed, with ε on demand.

Both sides keep one: the server for user-level DP (one event per round of DP-FedAvg), each
client for example-level DP (one event per round of local DP-SGD). A ledger only stores
events; ε always comes from a fresh dp-accounting accountant over the stored events
(:func:`fedrec.shared.privacy.epsilon`), so an auditor holding the same JSON gets the same ε.

Every round's event is kept with its round number (what an auditor checks against the
participation log); for accounting, consecutive identical events are composed as one
``SelfComposedDpEvent``, which keeps PLD composition over 1000 rounds fast.

Replays: a round run again on exactly the same inputs with the same seeds (a resumed
simulation with a noise seed) releases exactly the same output, a deterministic function
of the first release; the caller passes a ``release_key`` (a digest of those inputs) and a
second record with the same key is a no-op. Without a key (secret randomness) every
record counts, even for a round number already in the ledger: a new draw is a new release.

Seeded releases: an entry recorded with ``seeded=True`` ran on randomness derived from
seeds the server chose (``noise-seed``). Its event is the mechanism's ε against parties
who do not hold that seed; against the seed's holder it is not private at all
(:attr:`Ledger.seeded_rounds`, :meth:`Ledger.private`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dp_accounting import dp_event as dpe

from fedrec.shared import privacy


@dataclass
class Ledger:
    """Composed mechanism history of one party.

    Attributes:
        relation: neighbouring relation the events are accounted under: ``replace_one``
            for both fedrec levels (fixed-size client sampling; example-level DP-SGD,
            whose n is public: ``fedrec.shared.privacy``); ``add_or_remove_one`` remains for
            ledgers and experiments that state it.
        delta: δ at which ε is reported.
        history: ``[round, event_dict, release_key, seeded]`` in the order they happened.
    """

    relation: str
    delta: float
    history: list[list[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.relation not in privacy.RELATIONS:
            raise ValueError(f"unknown neighbouring relation {self.relation!r}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")

    # ----- recording -----
    @property
    def rounds(self) -> list[int]:
        return [int(entry[0]) for entry in self.history]

    @property
    def seeded_rounds(self) -> list[int]:
        """Rounds whose release ran on seeded randomness: not private against the seed's
        holder (the server that sent it)."""
        return [int(entry[0]) for entry in self.history if len(entry) > 3 and entry[3]]

    def private(self) -> bool:
        """False when any recorded release was seeded (see :attr:`seeded_rounds`)."""
        return not self.seeded_rounds

    def record(self, round_: int, event: dpe.DpEvent, release_key: str | None = None,
               seeded: bool = False) -> bool:
        """Add what round ``round_`` released; False if this exact release is already in.

        ``seeded``: the release's randomness came from public seeds (not private against
        their holder); the entry is marked so.
        """
        if release_key is not None and self.has(round_, release_key):
            return False
        self.history.append([int(round_), privacy.event_to_dict(event), release_key,
                             bool(seeded)])
        return True

    def has(self, round_: int, release_key: str) -> bool:
        return any(e[0] == round_ and len(e) > 2 and e[2] == release_key for e in self.history)

    def entries(self) -> list[tuple[dict[str, Any], int]]:
        """Consecutive identical events coalesced into (event_dict, count)."""
        out: list[tuple[dict[str, Any], int]] = []
        for entry in self.history:
            e = entry[1]
            if out and out[-1][0] == e:
                out[-1] = (e, out[-1][1] + 1)
            else:
                out.append((e, 1))
        return out

    def event(self) -> dpe.DpEvent:
        """Everything recorded, as one composed DpEvent (NoOp when empty)."""
        parts = [dpe.SelfComposedDpEvent(privacy.event_from_dict(e), int(c)) if c > 1
                 else privacy.event_from_dict(e) for e, c in self.entries()]
        if not parts:
            return dpe.NoOpDpEvent()
        return parts[0] if len(parts) == 1 else dpe.ComposedDpEvent(parts)

    # ----- ε -----
    def epsilon(self, accountant: str = "rdp", extra: dpe.DpEvent | None = None) -> float | None:
        """ε at ``delta`` of everything recorded (plus ``extra``, a planned event).

        Returns None when ``accountant`` cannot account these events (PLD has no
        sampling-without-replacement), ``inf`` for a non-private history.
        """
        event = self.event() if extra is None else dpe.ComposedDpEvent([self.event(), extra])
        acc = privacy.make_accountant(accountant, self.relation)
        if not acc.supports(event):
            return None
        acc.compose(event)
        return float(acc.get_epsilon(self.delta))

    def epsilons(self) -> dict[str, float | None]:
        """ε by accountant: RDP (the claim) and PLD (second opinion)."""
        return {kind: self.epsilon(kind) for kind in privacy.ACCOUNTANTS}

    def would_exceed(self, planned: dpe.DpEvent, target_epsilon: float) -> tuple[bool, float]:
        """Whether running ``planned`` next would push RDP ε past ``target_epsilon``."""
        eps = self.epsilon("rdp", extra=planned)
        return (eps is None or not math.isfinite(eps) or eps > target_epsilon), eps

    # ----- persistence -----
    def to_dict(self) -> dict[str, Any]:
        return {"relation": self.relation, "delta": self.delta, "history": self.history}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Ledger":
        return cls(relation=data["relation"], delta=float(data["delta"]),
                   history=[_entry(h) for h in data.get("history", [])])

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> "Ledger":
        return cls.from_dict(json.loads(text))


def _entry(h: list) -> list:
    """A stored history entry as ``[round, event, key, seeded]``. Entries written before
    the flag existed had a release key exactly when their round was seeded."""
    key = h[2] if len(h) > 2 else None
    return [int(h[0]), h[1], key, bool(h[3]) if len(h) > 3 else key is not None]


def restated(ledger: Ledger, relation: str) -> Ledger:
    """``ledger``'s releases accounted under ``relation`` (its events describe what ran,
    whatever relation they were first accounted under)."""
    return Ledger(relation, ledger.delta, [list(h) for h in ledger.history])


def read_ledgers(root: str | Path) -> dict[int, Ledger]:
    """Every device ledger under ``root`` (``<user>/ledger.json``), keyed by user.

    Raises:
        ValueError: naming the file of an unreadable ledger.
    """
    ledgers = {}
    for file in sorted(Path(root).glob("*/ledger.json")):
        try:
            ledgers[int(file.parent.name)] = Ledger.loads(file.read_text())
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{file}: unreadable ledger ({err})") from None
    return ledgers


_RDP_CACHE: dict[str, float] = {}


def largest(ledgers: dict[int, Ledger]) -> tuple[int | None, dict[int, float]]:
    """The user whose ledger has the largest RDP ε (None if none), and every user's ε.

    Devices with the same data size that joined as many rounds hold the same composed
    event; each distinct composition is accounted once per process (ε is a pure
    function of relation, δ and the events).
    """
    eps = {}
    for user, led in ledgers.items():
        key = json.dumps([led.relation, led.delta, led.entries()], sort_keys=True)
        if key not in _RDP_CACHE:
            if len(_RDP_CACHE) > 100_000:
                _RDP_CACHE.clear()
            _RDP_CACHE[key] = led.epsilon("rdp")
        eps[user] = _RDP_CACHE[key]
    return (max(eps, key=eps.get) if eps else None), eps
