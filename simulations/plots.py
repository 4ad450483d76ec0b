"""Plots people would rather look at than read (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_convergence(rows: list[dict], out: str | Path, title: str,
                     references: dict[str, float] | None = None, key: str = "hr@10") -> Path:
    """HR@10 (or ``key``) per evaluated round, with horizontal reference lines."""
    points = [(r["round"], r[key]) for r in rows if r.get(key) is not None]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if points:
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", markersize=3, label=f"federated {key.upper()}")
    for i, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value, linestyle="--", color=f"C{i + 1}", label=f"{label} ({value:.3f})")
    ax.set_xlabel("round")
    ax.set_ylabel(key.upper())
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
