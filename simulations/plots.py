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
    return _save(fig, out)


def plot_canary_cosines(inserted: list[float], held_out: list[float], out: str | Path,
                        title: str) -> Path:
    """Histograms of canary cosines: inserted (in the model) against held-out (never in)."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    bins = 40
    ax.hist(held_out, bins=bins, density=True, alpha=0.6, label=f"held out ({len(held_out)})")
    ax.hist(inserted, bins=max(5, min(bins, len(inserted) // 2)), density=True, alpha=0.6,
            label=f"inserted ({len(inserted)})")
    ax.set_xlabel("cosine(final model change, canary direction)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return _save(fig, out)


def plot_roc(fpr: list[float], tpr: list[float], out: str | Path, title: str) -> Path:
    """ROC curve of a membership-inference attack, log-log as privacy audits read it."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), dpi=120)
    for ax, log in zip(axes, (False, True)):
        ax.plot(fpr, tpr, label="attack")
        ax.plot([1e-4 if log else 0, 1], [1e-4 if log else 0, 1], "--", color="grey",
                label="chance")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(1e-3, 1)
            ax.set_ylim(1e-3, 1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.suptitle(title)
    return _save(fig, out)


def _save(fig, out: str | Path) -> Path:
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
