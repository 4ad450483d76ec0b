"""The dataset-level privacy budget: every run on the same data, composed.

Each run reports a stand-alone ε, but sweeps, seeds and tuning runs on the same users all
spend the same users' privacy. Every federated run therefore records what it released in
a registry shared by the runs on that data: ``<budget dir>/<data fingerprint>/<run id>.json``
(default budget dir: ``.fedrec-budget`` next to the run directory, i.e. shared by every
run under the same parent, as the cells of a sweep are). A run rewrites its own file
(atomically, under an exclusive ``fcntl.flock`` on the registry) at every write-ahead
point, before the release it adds leaves the server, so the registry never lags a
release. :func:`compose` composes, per level, every run on one fingerprint:

- user level: every run's user-level DpEvents, composed under their relation at the
  smallest δ of those runs (RDP);
- example level: per device position (the same user on the same data), every run's
  DP-SGD events for it, composed; the worst device is reported.

A run without that level's mechanism (no DP, user-level only for the example level, and
the reverse) released something about those users that no ε covers: the composed figure
is then infinite and the report names those runs. Runs on the same data under different
neighbouring relations cannot be composed by dp-accounting into one figure, so that is
reported as infinite too, with the per-relation figures beside it.

The registry is as private as ``server-private/``: it lists which device ran which
rounds. Files are created with mode 0600 in 0700 folders.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fedrec.shared import privacy
from fedrec.shared.ledger import Ledger, largest
from fedrec.shared.runinfo import to_json, write_text_atomic

DEFAULT_DIR = ".fedrec-budget"
LEVELS = ("user", "example")


def budget_dir(budget: str, out: str) -> Path:
    """The registry folder: ``budget`` when set, else ``.fedrec-budget`` beside ``out``."""
    return Path(budget).resolve() if budget else Path(out).resolve().parent / DEFAULT_DIR


def run_entry(manifest: dict[str, Any], accounting: dict[str, Any] | None, releases: int,
              path: str | Path, mode: str | None = None) -> dict[str, Any]:
    """What a run contributes: its identity, data, mode and every DpEvent it released.

    ``accounting`` is the run's accounting record (``user``: the server's ledger dict;
    ``example``: relation, δ and per-device ``clients`` events with their rounds), None
    for a run without DP. A level that is None had no mechanism in this run. ``mode``
    labels the run (default: the manifest's DP mode).
    """
    accounting = accounting or {}
    seed = int(manifest.get("config", {}).get("noise-seed", -1))
    return {"format": 1, "run_id": manifest.get("run_id") or _path_id(path),
            "run": str(Path(path).resolve()), "dataset": manifest.get("data", {}).get("name"),
            "fingerprint": manifest.get("data", {}).get("fingerprint") or "unknown",
            "mode": mode or (manifest.get("privacy") or {}).get("mode", "none"),
            "randomness": "secret" if seed < 0 else f"seeded (noise-seed {seed})",
            "releases": int(releases),
            "user": accounting.get("user"), "example": accounting.get("example")}


def _path_id(path: str | Path) -> str:
    import hashlib

    return hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]


class BudgetRegistry:
    """One registry folder (see module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_run(cls, budget: str, out: str) -> "BudgetRegistry":
        return cls(budget_dir(budget, out))

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def record(self, entry: dict[str, Any]) -> None:
        """Replace this run's file with ``entry`` (durably, under the exclusive lock)."""
        with self._locked(exclusive=True):
            folder = self.root / entry["fingerprint"]
            folder.mkdir(exist_ok=True, mode=0o700)
            write_text_atomic(folder / f"{entry['run_id']}.json",
                              json.dumps(entry, default=to_json) + "\n", durable=True,
                              mode=0o600)

    def entries(self) -> dict[str, list[dict[str, Any]]]:
        """Every run's entry, by data fingerprint (under the shared lock).

        Raises:
            ValueError: naming an unreadable file.
        """
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: no budget registry (not a directory)")
        out: dict[str, list[dict[str, Any]]] = {}
        with self._locked(exclusive=False):
            for file in sorted(self.root.glob("*/*.json")):
                try:
                    entry = json.loads(file.read_text())
                except (OSError, json.JSONDecodeError) as err:
                    raise ValueError(f"{file}: unreadable budget entry ({err})") from None
                out.setdefault(entry["fingerprint"], []).append(entry)
        return out


def compose(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """ε per level of every run in ``entries`` (all on one fingerprint), composed."""
    return {"runs": len(entries), "releases": sum(int(e.get("releases", 0)) for e in entries),
            "dataset": next((e.get("dataset") for e in entries if e.get("dataset")), None),
            "seeded_runs": sorted(e["run"] for e in entries if e["randomness"] != "secret"),
            "user": _compose_user(entries), "example": _compose_example(entries)}


def _uncovered(entries: list[dict[str, Any]], level: str) -> list[str]:
    return [f"{e['run']} (dp {e['mode']})" for e in entries if e.get(level) is None]


def _infinite(reason: str, **extra: Any) -> dict[str, Any]:
    return {"epsilon": math.inf, "delta": None, "reason": reason, **extra}


def _compose_user(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """User level: all runs' ledgers in one composition per relation."""
    missing = _uncovered(entries, "user")
    if missing:
        return _infinite("runs without user-level DP released these users' data: "
                         + "; ".join(missing))
    groups: dict[str, Ledger] = {}
    for e in entries:
        led = Ledger.from_dict(e["user"])
        into = groups.setdefault(led.relation, Ledger(led.relation, led.delta))
        into.delta = min(into.delta, led.delta)
        into.history += led.history
    by_relation = {rel: {"epsilon": _eps(led), "delta": led.delta, "releases": len(led.history)}
                   for rel, led in groups.items()}
    if len(groups) > 1:
        return _infinite("runs under different neighbouring relations cannot be composed",
                         by_relation=by_relation)
    ((relation, only),) = by_relation.items()
    noiseless = [f"{e['run']} (dp {e['mode']})" for e in entries
                 if math.isinf(only["epsilon"]) and math.isinf(_eps(Ledger.from_dict(e["user"])))]
    if noiseless:                       # name the runs that released without noise
        only = {**only, "reason": "releases without noise (ε = inf, not private): "
                + "; ".join(noiseless)}
    return {**only, "relation": relation, "accountant": "rdp"}


def _eps(ledger: Ledger) -> float:
    eps = ledger.epsilon("rdp")
    return math.inf if eps is None else eps


def _compose_example(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Example level: per device, every run's events for it; the worst device."""
    missing = _uncovered(entries, "example")
    if missing:
        return _infinite("runs without example-level DP showed the server these users' raw "
                         "updates: " + "; ".join(missing))
    relations = {e["example"]["relation"] for e in entries}
    delta = min(float(e["example"]["delta"]) for e in entries)
    if len(relations) > 1:
        return _infinite("runs under different neighbouring relations cannot be composed",
                         relations=sorted(relations))
    (relation,) = relations
    devices: dict[int, Ledger] = {}
    for e in entries:
        for user, part in (e["example"].get("clients") or {}).items():
            led = devices.setdefault(int(user), Ledger(relation, delta))
            for entry in part if isinstance(part, list) else [part]:
                event = privacy.event_from_dict(entry["event"])
                for rnd in entry["rounds"]:
                    led.record(int(rnd), event)
    worst, eps = largest(devices)
    return {"epsilon": eps.get(worst, 0.0), "delta": delta, "relation": relation,
            "accountant": "rdp", "devices": len(devices),
            "device_rounds": len(devices[worst].history) if worst is not None else 0}
