"""The device's own storage of its private user embedding, versioned by round.

Each save is tagged with the round that produced it and written atomically (temp file,
then rename), so a crash mid-write never corrupts the embedding. Loading asks for the
newest state *no later than* a round: when a server resumes an interrupted round, the
client starts again from the state of the last complete round, exactly as if the round
had never been attempted. Only the two newest versions are kept.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from fedrec.shared.ledger import Ledger, restated
from fedrec.shared.privacy import EXAMPLE_RELATION
from fedrec.shared.runinfo import write_text_atomic

KINDS = ("round", "eval")
KEEP = 2


class PrivateStore:
    """Versioned private weights of one user in ``root/<user>/round-<r>.npz``."""

    def __init__(self, root: str | Path, user: int) -> None:
        self.dir = Path(root) / str(user)

    def _versions(self, kind: str) -> list[tuple[int, Path]]:
        if kind not in KINDS:
            raise ValueError(f"unknown state kind {kind!r}")
        if not self.dir.is_dir():
            return []
        pattern = re.compile(kind + r"-(\d+)\.npz$")
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := pattern.match(p.name))]
        return sorted(found)

    def load(self, max_round: int, kind: str = "round") -> dict[str, np.ndarray] | None:
        """Newest saved weights of ``kind`` from a round <= ``max_round`` (None: none yet).

        ``round`` is the training state (what the next round starts from); ``eval`` the
        embedding refreshed for an evaluation.
        """
        usable = [p for r, p in self._versions(kind) if r <= max_round]
        if not usable:
            return None
        with np.load(usable[-1]) as data:
            return {k.replace("|", "/"): data[k] for k in data.files}

    def last_round(self, kind: str = "round") -> int | None:
        """The round of the newest saved state of ``kind`` (None: none yet)."""
        versions = self._versions(kind)
        return versions[-1][0] if versions else None

    def save(self, round_: int, weights: dict[str, np.ndarray], kind: str = "round") -> None:
        """Atomically store ``weights`` as the ``kind`` state of ``round_``; prune old ones."""
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.dir / f"{kind}-{round_}.npz"
        tmp = self.dir / f".{kind}-{round_}.{os.getpid()}.tmp.npz"
        np.savez(tmp, **{k.replace("/", "|"): v for k, v in weights.items()})
        os.replace(tmp, final)
        for r, path in self._versions(kind)[:-KEEP]:
            if r < round_:
                path.unlink(missing_ok=True)


class LedgerStore:
    """The device's example-level ε ledger, ``root/<user>/ledger.json`` (atomic writes).

    It survives restarts of the client: a budget once spent stays spent.
    """

    def __init__(self, root: str | Path, user: int) -> None:
        self.path = Path(root) / str(user) / "ledger.json"

    def load(self, delta: float) -> Ledger:
        """The stored ledger, or a new empty one at ``delta``, under replace-one
        (``EXAMPLE_RELATION``; a ledger kept under another relation is restated: its
        events describe what ran)."""
        if not self.path.exists():
            return Ledger(EXAMPLE_RELATION, delta)
        ledger = restated(Ledger.loads(self.path.read_text()), EXAMPLE_RELATION)
        if ledger.delta != delta:
            raise ValueError(f"{self.path}: ledger kept at delta {ledger.delta:g}, "
                             f"run asks for {delta:g}")
        return ledger

    def save(self, ledger: Ledger) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, ledger.dumps())
