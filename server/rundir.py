"""The run directory: everything needed to understand, resume and audit a run.

Layout::

    manifest.json          full config, versions, seed, data fingerprint (written first);
                           under DP its ``accounting`` section holds every DpEvent that
                           ran, rewritten after each round
    metrics.jsonl          one JSON line per completed round
    checkpoints/round-N.npz  global weights + server-optimiser state after round N
    results.json           final metrics, same shape as the baselines' results
    privacy.json           under DP: final ε per level and accountant, why a run stopped
    client_state/          simulated devices' own storage (private embeddings)

Write order per round: checkpoint (atomic rename), then the metrics line. A round is
complete when both exist; ``--resume`` restarts after the last complete round and drops
any metrics line beyond it, so a crash never leaves a half-counted round.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from shared.runinfo import to_json, write_text_atomic

_CKPT = re.compile(r"round-(\d+)\.npz$")
STATE_PREFIX = "state|"
#: Settings a resumed run may change (everything else must equal the manifest).
RESUMABLE_CHANGES = {"resume", "rounds", "round-timeout", "out", "client-state-dir"}


class RunDir:
    """Reads and writes one run directory (see module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.metrics_path = self.path / "metrics.jsonl"
        self.manifest_path = self.path / "manifest.json"
        self.results_path = self.path / "results.json"

    def create(self, manifest: dict[str, Any], resume: bool) -> None:
        """Start a run (refusing to overwrite one) or reopen it for ``--resume``."""
        if resume:
            if not self.manifest_path.exists():
                raise FileNotFoundError(f"{self.path}: no manifest.json to resume from")
            from shared.config import RunConfig

            defaults = RunConfig().to_flower()   # a setting added since: its default ran
            before, now = self.manifest().get("config", {}), manifest.get("config", {})
            changed = sorted(k for k in set(before) | set(now)
                             if k not in RESUMABLE_CHANGES
                             and before.get(k, defaults.get(k)) != now.get(k, defaults.get(k)))
            if changed:
                raise ValueError(f"{self.path}: cannot resume with a different config "
                                 f"({', '.join(changed)} changed)")
            return
        if self.manifest_path.exists():
            raise FileExistsError(f"{self.path} already holds a run; use --resume or another --out")
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.manifest_path, json.dumps(manifest, indent=2, default=to_json) + "\n")

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_path.read_text())

    def record_accounting(self, record: dict[str, Any] | None) -> None:
        """Replace the manifest's ``accounting`` section (every DpEvent so far), atomically."""
        manifest = self.manifest()
        manifest["accounting"] = record
        write_text_atomic(self.manifest_path, json.dumps(manifest, indent=2, default=to_json) + "\n")

    # ----- checkpoints -----
    def save_checkpoint(self, round_: int, weights: dict[str, np.ndarray],
                        state: dict[str, np.ndarray]) -> None:
        """Global weights plus server state (optimiser moments...) after ``round_``."""
        payload = {k.replace("/", "|"): v for k, v in weights.items()}
        payload.update({STATE_PREFIX + k.replace("/", "|"): v for k, v in state.items()})
        tmp = self.checkpoints / f".round-{round_}.tmp.npz"
        np.savez(tmp, **payload)
        os.replace(tmp, self.checkpoints / f"round-{round_}.npz")

    def last_complete_round(self) -> int:
        """Newest round with both a checkpoint and a metrics line (0: none)."""
        done = {int(m.group(1)) for p in self.checkpoints.glob("round-*.npz")
                if (m := _CKPT.match(p.name))}
        logged = {r["round"] for r in self.read_metrics()}
        both = done & logged
        return max(both) if both else 0

    def load_checkpoint(self, round_: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        with np.load(self.checkpoints / f"round-{round_}.npz") as data:
            weights = {k.replace("|", "/"): data[k] for k in data.files if not k.startswith(STATE_PREFIX)}
            state = {k[len(STATE_PREFIX):].replace("|", "/"): data[k]
                     for k in data.files if k.startswith(STATE_PREFIX)}
        return weights, state

    # ----- metrics -----
    def append_metrics(self, line: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as fh:
            fh.write(json.dumps(line, default=to_json) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        rows = []
        for text in self.metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(text))
            except json.JSONDecodeError:
                break  # a torn last line from a crash: everything after it is ignored
        return rows

    def truncate_metrics(self, last_round: int) -> None:
        """Keep only lines of rounds <= ``last_round`` (before resuming)."""
        keep = [r for r in self.read_metrics() if r["round"] <= last_round]
        write_text_atomic(self.metrics_path, "".join(json.dumps(r, default=to_json) + "\n" for r in keep))

    def write_privacy(self, record: dict[str, Any]) -> None:
        """``privacy.json``: final ε per level and accountant (see ``server.app``)."""
        write_text_atomic(self.path / "privacy.json",
                          json.dumps(record, indent=2, default=to_json) + "\n")

    def write_results(self, results: dict[str, Any]) -> None:
        write_text_atomic(self.results_path, json.dumps(results, indent=2, default=to_json) + "\n")


def participation(rows: list[dict[str, Any]], users: int | None = None,
                  keys: tuple[str, ...] = ("participants",)) -> dict[int, list[int]]:
    """Rounds each client's update was averaged in, from metrics lines' ``participants``
    (logged under DP), or spent in: ``keys=("participants", "rejected")`` (a rejected
    update was trained all the same); only positions below ``users`` when given (an
    audit run's canary clients come after the users)."""
    out: dict[int, list[int]] = {}
    for row in rows:
        for p in sorted({int(p) for k in keys for p in row.get(k, [])}):
            if users is None or p < users:
                out.setdefault(p, []).append(int(row["round"]))
    return out

