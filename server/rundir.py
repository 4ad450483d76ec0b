"""The run directory: everything needed to understand, resume and audit a run.

Layout (released: may be handed to anyone who receives the model; server-private: only
the server and its auditor may read it, mode 0600 in a 0700 folder)::

    manifest.json          released. Config, versions, seed, data fingerprint (written
                           first); under DP its ``accounting`` section holds the server's
                           user-level ledger (every release's DpEvent, rewritten
                           write-ahead); the per-device part lives in server-private
    metrics.jsonl          released. One JSON line per completed round: counts, clip, noise
                           std, the round's DpEvent, ε so far; never who took part
    checkpoints/round-N.npz  released. Global weights + server-optimiser state + ledger
    results.json           released. Final metrics, same shape as the baselines' results
    privacy.json           released. Under DP: final ε per level and accountant, against
                           whom it holds, why a run stopped
    server-private/participation.jsonl  server-private, the write-ahead log: one line per
                           release of a round's aggregate, written (fsync) after
                           aggregation and before the aggregate leaves the server: who
                           took part, declined, was rejected, the DP-SGD events devices
                           reported, the round's mechanism and DpEvent
    server-private/client-accounting.json  server-private: per device, the example-level
                           events it reported and the rounds (releases) it ran each
    client_state/          simulated devices' own storage (embeddings, ledgers): the
                           devices', neither released nor the server's
    simulation-nodes.json  simulation diagnostics, not released: replies per Ray node,
                           per round and message type (``fedrec.server.simnodes``); counts
                           only, no user ids; never written by a deployment

Who took part in which round is what sampling hides: user-level ε is amplified by it,
so a file that records it next to the released model would cancel that amplification.

Write order per round: aggregation, write-ahead (participation line, then the manifest's
ledger, both durable), evaluation (the aggregate leaves), checkpoint (atomic rename),
metrics line. A round is complete when checkpoint and metrics line exist; ``--resume``
restarts after the last complete round and drops any metrics line beyond it, but keeps
every write-ahead line: a release that happened before a crash stays counted, and the
re-run of its round is a new release.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from fedrec.shared.runinfo import fsync_dir, to_json, write_text_atomic

_CKPT = re.compile(r"round-(\d+)\.npz$")
STATE_PREFIX = "state|"
PRIVATE_DIR = "server-private"
PARTICIPATION = f"{PRIVATE_DIR}/participation.jsonl"
CLIENT_ACCOUNTING = f"{PRIVATE_DIR}/client-accounting.json"
#: Fields of a round that say who took part: written to the server-private log only.
PRIVATE_FIELDS = ("participants", "declined", "rejected", "client_events", "declined_reasons")
#: The manifest's pointer to the server-private records (an auditor reads them there).
PRIVATE_SECTION = {
    "participation": PARTICIPATION, "client_accounting": CLIENT_ACCOUNTING,
    "note": "server-private, not released: who took part in which round (releasing it "
            "cancels the amplification by sampling that the user-level epsilon relies on)"}
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
        self.participation_path = self.path / PARTICIPATION
        self.client_accounting_path = self.path / CLIENT_ACCOUNTING

    def create(self, manifest: dict[str, Any], resume: bool) -> None:
        """Start a run (refusing to overwrite one) or reopen it for ``--resume``."""
        if resume:
            if not self.manifest_path.exists():
                raise FileNotFoundError(f"{self.path}: no manifest.json to resume from")
            from fedrec.shared.config import RunConfig

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
        """Replace the manifest's ``accounting`` section (every DpEvent so far), durably.

        The per-device part (``example.clients``: which rounds each device ran) is
        participation, so it goes to ``server-private/client-accounting.json`` and the
        manifest names that file instead.
        """
        manifest = self.manifest()
        example = (record or {}).get("example")
        if example is not None and "clients" in example:
            self._write_private(self.client_accounting_path,
                                json.dumps(example, indent=2, default=to_json) + "\n")
            public = {k: v for k, v in example.items() if k != "clients"}
            record = {**record, "example": {**public, "clients_file": CLIENT_ACCOUNTING}}
        manifest["accounting"] = record
        write_text_atomic(self.manifest_path,
                          json.dumps(manifest, indent=2, default=to_json) + "\n", durable=True)

    def record_section(self, key: str, value: Any) -> None:
        """Replace one top-level manifest section (e.g. a release run's ``survivors``),
        durably, before what it describes is released."""
        manifest = self.manifest()
        manifest[key] = value
        write_text_atomic(self.manifest_path,
                          json.dumps(manifest, indent=2, default=to_json) + "\n", durable=True)

    # ----- server-private records -----
    def _private_dir(self) -> Path:
        folder = self.path / PRIVATE_DIR
        if not folder.exists():
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
            fsync_dir(self.path)
        return folder

    def _write_private(self, path: Path, text: str) -> None:
        self._private_dir()
        write_text_atomic(path, text, durable=True, mode=0o600)

    def write_ahead(self, entry: dict[str, Any]) -> None:
        """Append one release to ``server-private/participation.jsonl`` and fsync it.

        Called before the release leaves the server; a torn last line (a crash while
        writing) is ignored on reading, which is right: nothing was released after it.
        """
        self._private_dir()
        _drop_torn_tail(self.participation_path)
        fd = os.open(self.participation_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(json.dumps(entry, default=to_json) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_releases(self) -> list[dict[str, Any]]:
        """Every release in the write-ahead log, oldest first (a torn last line dropped)."""
        return _read_jsonl(self.participation_path)

    def private_rows(self) -> list[dict[str, Any]]:
        """Metrics lines joined with who took part (server-side readers only)."""
        return with_participation(self.read_metrics(), self.read_releases())

    def read_client_accounting(self) -> dict[str, Any] | None:
        path = self.client_accounting_path
        return json.loads(path.read_text()) if path.exists() else None

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
        return _read_jsonl(self.metrics_path)

    def truncate_metrics(self, last_round: int) -> None:
        """Keep only lines of rounds <= ``last_round`` (before resuming)."""
        keep = [r for r in self.read_metrics() if r["round"] <= last_round]
        write_text_atomic(self.metrics_path, "".join(json.dumps(r, default=to_json) + "\n" for r in keep))

    def write_privacy(self, record: dict[str, Any]) -> None:
        """``privacy.json``: final ε per level and accountant (see ``fedrec.server.app``)."""
        write_text_atomic(self.path / "privacy.json",
                          json.dumps(record, indent=2, default=to_json) + "\n")

    def write_results(self, results: dict[str, Any]) -> None:
        write_text_atomic(self.results_path, json.dumps(results, indent=2, default=to_json) + "\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for text in path.read_text().splitlines():
        try:
            rows.append(json.loads(text))
        except json.JSONDecodeError:
            break  # a torn last line from a crash: everything after it is ignored
    return rows


def _drop_torn_tail(path: Path) -> None:
    """Cut a torn last line (no newline: a crash mid-write) so the next line stands alone."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        data = fh.read()
        fh.truncate(data.rfind(b"\n") + 1)
        fh.flush()
        os.fsync(fh.fileno())


def with_participation(rows: list[dict[str, Any]],
                       releases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metrics lines joined with the server-private fields of their round's release.

    A completed round's metrics line belongs to the *last* release of that round (earlier
    ones were cut short by a crash and re-run). Rows without a release keep what they
    hold (runs from before the split logged participation in metrics.jsonl).
    """
    last = {int(r["round"]): r for r in releases}
    return [{**row, **{k: last[row["round"]][k] for k in PRIVATE_FIELDS
                       if k in last.get(row["round"], {})}} for row in rows]


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

