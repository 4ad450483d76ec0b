"""A privacy ledger: the DpEvents a party actually ran, composed, with ε on demand.

Both sides keep one: the server for user-level DP (one event per round of DP-FedAvg), each
client for example-level DP (one event per round of local DP-SGD). A ledger only stores
events; ε always comes from a fresh dp-accounting accountant over the stored events
(:func:`shared.privacy.epsilon`), so an auditor holding the same JSON gets the same ε.

Every round's event is kept with its round number (what an auditor checks against the
participation log); for accounting, consecutive identical events are composed as one
``SelfComposedDpEvent``, which keeps PLD composition over 1000 rounds fast.

Replays: a round that is run again with the same seeds releases exactly the same output
(a deterministic function of the first release), so recording the identical event for
a round already in the ledger is a no-op; a *different* event for that round is an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from dp_accounting import dp_event as dpe

from shared import privacy


@dataclass
class Ledger:
    """Composed mechanism history of one party.

    Attributes:
        relation: neighbouring relation the events are stated under
            (``replace_one`` for fixed-size client sampling, ``add_or_remove_one`` for
            Poisson-subsampled DP-SGD).
        delta: δ at which ε is reported.
        history: ``[round, event_dict]`` pairs in the order they happened.
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
        return [int(r) for r, _ in self.history]

    def record(self, round_: int, event: dpe.DpEvent) -> bool:
        """Add what round ``round_`` ran; False if that exact replay was already counted."""
        as_dict = privacy.event_to_dict(event)
        for r, known in self.history:
            if r == round_:
                if known == as_dict:
                    return False
                raise ValueError(f"round {round_} is already in the ledger with another event")
        self.history.append([int(round_), as_dict])
        return True

    def entries(self) -> list[tuple[dict[str, Any], int]]:
        """Consecutive identical events coalesced into (event_dict, count)."""
        out: list[tuple[dict[str, Any], int]] = []
        for _, e in self.history:
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
                   history=[[int(r), e] for r, e in data.get("history", [])])

    def truncate(self, last_round: int) -> None:
        """Forget rounds after ``last_round`` (the server, resuming from a checkpoint)."""
        self.history = [[r, e] for r, e in self.history if r <= last_round]

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> "Ledger":
        return cls.from_dict(json.loads(text))
