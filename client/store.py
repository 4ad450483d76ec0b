"""The device's event store: SQLite on the device, the only place behaviour is kept.

One file holds the user's events and the device's state: the private user embedding, the
latest global model and the ε ledger. SQLite in WAL mode; every write is one transaction,
so a crash mid-write leaves the previous state intact (nothing lost, nothing corrupted);
queries are parameterised only. The schema carries a version, and :data:`MIGRATIONS`
brings an older file up to date when it is opened.
"""

from __future__ import annotations

import io
import json
import math
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fedrec.shared.ledger import Ledger, restated
from fedrec.shared.privacy import EXAMPLE_RELATION
from fedrec.shared.schema import EVENT_TYPES, normalize_events

#: Schema migrations: MIGRATIONS[v] takes a file from version v to v + 1.
MIGRATIONS: list[tuple[str, ...]] = [
    ("CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL, "
     "event TEXT NOT NULL, ts INTEGER NOT NULL, value REAL)",
     "CREATE TABLE state (name TEXT PRIMARY KEY, data BLOB NOT NULL, updated INTEGER NOT NULL)"),
    ("CREATE INDEX events_ts ON events (ts, id)",),
]
SCHEMA_VERSION = len(MIGRATIONS)
STATE_NAMES = ("user_embedding", "global_model", "ledger", "federation")


class SdkInputError(ValueError):
    """A bad argument to the client SDK (the message says which and why)."""


class EventStore:
    """Events and state of one user on one device (see module docstring).

    Args:
        path: the SQLite file (created if missing).
        user_id: the user's id in exported events (never sent anywhere).
    """

    def __init__(self, path: str | Path, user_id: str = "me") -> None:
        self.path = Path(path)
        self.user_id = str(user_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "EventStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----- schema -----
    @property
    def version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.version
        if version > SCHEMA_VERSION:
            raise SdkInputError(f"{self.path}: schema version {version} is newer than this "
                                f"SDK's {SCHEMA_VERSION}; upgrade fedrec")
        for v in range(version, SCHEMA_VERSION):
            with self._transaction():
                for statement in MIGRATIONS[v]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {v + 1}")  # an int we control

    def _transaction(self):
        db = self._db

        class _Tx:
            def __enter__(self_inner):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, kind, *_):
                db.execute("COMMIT" if kind is None else "ROLLBACK")
        return _Tx()

    # ----- events -----
    def record(self, item_id: str | int, event: str, timestamp: int | None = None,
               value: float | None = None) -> None:
        """Store one event of this user.

        Args:
            item_id: the item (a non-empty string or an integer, as in the catalogue).
            event: one of ``view, click, cart, purchase, rating``.
            timestamp: epoch seconds (default: now).
            value: optional number (a rating, a price), finite.

        Raises:
            SdkInputError: naming the bad argument.
        """
        item = _item_id(item_id)
        if not isinstance(event, str) or event.lower() not in EVENT_TYPES:
            raise SdkInputError(f"event must be one of {', '.join(EVENT_TYPES)}, got {event!r}")
        ts = int(time.time()) if timestamp is None else timestamp
        if isinstance(ts, bool) or not isinstance(ts, (int, np.integer)) or ts < 0:
            raise SdkInputError(f"timestamp must be epoch seconds (an int >= 0), got {timestamp!r}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise SdkInputError(f"value must be a finite number or None, got {value!r}")
        with self._transaction():
            self._db.execute("INSERT INTO events (item_id, event, ts, value) VALUES (?, ?, ?, ?)",
                             (item, event.lower(), int(ts), None if value is None else float(value)))

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def events(self) -> pd.DataFrame:
        """This user's events in fedrec's schema, oldest first."""
        rows = self._db.execute("SELECT item_id, ts, event, value FROM events ORDER BY ts, id").fetchall()
        frame = pd.DataFrame(rows, columns=["item_id", "timestamp", "event", "value"])
        frame.insert(0, "user_id", self.user_id)
        return normalize_events(frame)

    # ----- state: embedding, global model, ledger -----
    def save_state(self, *, user_embedding: dict[str, np.ndarray] | None = None,
                   global_model: dict[str, np.ndarray] | None = None,
                   ledger: Ledger | None = None, federation: dict | None = None) -> None:
        """Write any of the parts atomically: all given parts, or none of them.

        ``federation``: what this device knows of the federation it joined (JSON: the
        rounds it trained in, the server's user-level ε as last reported, the run's
        participation window and budget), for :meth:`Recommender.privacy_status`."""
        now = int(time.time())
        parts = {"user_embedding": user_embedding, "global_model": global_model}
        with self._transaction():
            for name, arrays in parts.items():
                if arrays is not None:
                    self._put(name, _arrays_to_bytes(arrays), now)
            if ledger is not None:
                self._put("ledger", ledger.dumps().encode(), now)
            if federation is not None:
                self._put("federation", json.dumps(federation).encode(), now)

    def _put(self, name: str, data: bytes, now: int) -> None:
        self._db.execute("INSERT INTO state (name, data, updated) VALUES (?, ?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET data = excluded.data, "
                         "updated = excluded.updated", (name, data, now))

    def _get(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT data FROM state WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def user_embedding(self) -> dict[str, np.ndarray] | None:
        data = self._get("user_embedding")
        return None if data is None else _arrays_from_bytes(data)

    def global_model(self) -> dict[str, np.ndarray] | None:
        data = self._get("global_model")
        return None if data is None else _arrays_from_bytes(data)

    def federation(self) -> dict:
        """What :meth:`save_state` last stored as ``federation`` (empty: never joined)."""
        data = self._get("federation")
        return {} if data is None else json.loads(data.decode())

    def ledger(self, delta: float = 1e-5) -> Ledger:
        """The device's example-level ledger under replace-one (``EXAMPLE_RELATION``; one
        stored under another relation is restated), or a new empty one at ``delta``."""
        data = self._get("ledger")
        if data is None:
            return Ledger(EXAMPLE_RELATION, delta)
        return restated(Ledger.loads(data.decode()), EXAMPLE_RELATION)


def _item_id(item_id: object) -> str:
    if isinstance(item_id, bool) or not isinstance(item_id, (str, int, np.integer)):
        raise SdkInputError(f"item_id must be a string or an integer, got {type(item_id).__name__}")
    text = str(item_id).strip()
    if not text:
        raise SdkInputError("item_id must not be empty")
    return text


def _arrays_to_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{k.replace("/", "|"): np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def _arrays_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k.replace("|", "/"): npz[k] for k in npz.files}


class StoreEmbedding:
    """:class:`fedrec.client.state.PrivateStore`'s interface over an :class:`EventStore`.

    A deployed device keeps only its newest embedding per kind (``round``: what training
    continues from; ``eval``: refreshed for evaluation and recommendations).
    """

    NAMES = {"round": "user_embedding", "eval": "eval_embedding"}

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def load(self, max_round: int, kind: str = "round") -> dict[str, np.ndarray] | None:
        data = self.store._get(self.NAMES[kind])
        return None if data is None else _arrays_from_bytes(data)

    def save(self, round_: int, weights: dict[str, np.ndarray], kind: str = "round") -> None:
        with self.store._transaction():
            self.store._put(self.NAMES[kind], _arrays_to_bytes(weights), int(time.time()))
            self.store._put(self.NAMES[kind] + "_round", str(int(round_)).encode(),
                            int(time.time()))

    def last_round(self, kind: str = "round") -> int | None:
        """The round of the newest saved embedding of ``kind`` (None: none yet)."""
        data = self.store._get(self.NAMES[kind] + "_round")
        return None if data is None else int(data.decode())


class StoreLedger:
    """:class:`fedrec.client.state.LedgerStore`'s interface over an :class:`EventStore`."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def load(self, delta: float) -> Ledger:
        ledger = self.store.ledger(delta)
        if ledger.delta != delta:
            raise ValueError(f"{self.store.path}: ledger kept at delta {ledger.delta:g}, "
                             f"run asks for {delta:g}")
        return ledger

    def save(self, ledger: Ledger) -> None:
        self.store.save_state(ledger=ledger)
