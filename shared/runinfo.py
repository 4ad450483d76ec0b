"""What every run record carries: package versions, and atomic JSON writing."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from fedrec.shared import __version__

PACKAGES = ("flwr", "tensorflow", "tensorflow-privacy", "dp-accounting", "numpy")
#: Reply record (a ConfigRecord) in which a simulated client names the Ray node that ran
#: it, under :data:`RAY_NODE_ID`: simulation diagnostics (``fedrec.server.simnodes``), taken off
#: the reply before anything else on the server sees it.
SIMULATION_NODE_KEY, RAY_NODE_ID = "simulation-node", "ray-node-id"


def versions() -> dict[str, str]:
    """Versions of everything that can change a number."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"fedrec": __version__, "python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def to_json(value: Any) -> Any:
    """``json.dumps`` default for numpy scalars/arrays and tuples."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (np.ndarray, tuple)):
        return list(value.tolist() if isinstance(value, np.ndarray) else value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_text_atomic(path: str | Path, text: str, durable: bool = False,
                      mode: int | None = None) -> None:
    """Write via a temp file and rename: a crash never leaves half a file.

    ``durable``: fsync the file before the rename and the folder after it, so the new
    content survives a power loss once this returns (write-ahead records need that).
    ``mode``: permission bits of the new file (e.g. 0o600 for server-private records).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        if mode is not None:
            os.chmod(tmp, mode)
        fh.write(text)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def fsync_dir(folder: str | Path) -> None:
    """Make a rename or a new file in ``folder`` durable (POSIX; a no-op elsewhere)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: str | Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, default=to_json) + "\n")
