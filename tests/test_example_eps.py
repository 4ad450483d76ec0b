"""The results pages print the replace-one ε that benchmarks/example_eps_replace_one.py
computes (issue #19: example-level tables recomputed, mechanism unchanged).

Two rows, the median MovieLens-100k client at the sweeps' σ (3.88 and 24.02): the script's
full run finds that this client has the largest ε of each run under either relation
(n = 64, all 10 rounds), so the pages' "max client" figures are these rows.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def _script():
    spec = importlib.util.spec_from_file_location(
        "example_eps_replace_one", ROOT / "benchmarks" / "example_eps_replace_one.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module            # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def table_column(page: Path, column: str) -> dict[str, str]:
    """First cell -> cell under ``column`` in the first markdown table whose header has it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and column in cells:
            at = cells.index(column)
            out = {}
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                values = [c.strip() for c in row.strip().strip("|").split("|")]
                out[values[0]] = values[at]
            return out
    raise AssertionError(f"{page.name}: no table with column {column!r}")


def test_table_column_by_hand(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("text\n\n| a | b |\n|---|---|\n| x | 1.5 |\n| y | - |\n\nafter | z |\n")
    assert table_column(page, "b") == {"x": "1.5", "y": "-"}


@pytest.mark.parametrize("key, setting, run", [
    ("median client, ε=8", "example σ = 3.88, C = 1 (labelled ε = 8 under add/remove)",
     "runs/sweep_ml100k_example/runs/example-eps8-seed0"),
    ("median client, ε=1", "example σ = 24.0, C = 1 (labelled ε = 1 under add/remove)",
     "runs/sweep_ml100k_example/runs/example-eps1-seed0"),
])
@pytest.mark.inprocess
def test_the_pages_print_the_recomputed_replace_one_epsilon(key, setting, run):
    script = _script()
    row = next(r for r in script.ROWS if r.key == key)
    out = script.compute(row)
    # the old add/remove figures are reproduced: the settings are the runs'
    assert script.matches(out["ar"], row.page_ar) and script.matches(out["ar_pld"], row.page_pld)
    tradeoff = table_column(RESULTS / "2026-11-29-dp-tradeoff-ml100k.md",
                            "ε example, max client (RDP, replace-one)")
    assert float(tradeoff[setting]) == pytest.approx(out["ro"], abs=0.005)
    old = table_column(RESULTS / "2026-11-29-dp-tradeoff-ml100k.md",
                       "ε example, max client (RDP, add/remove, superseded)")
    assert old[setting] == row.page_ar
    audits = table_column(RESULTS / "2026-11-29-audits-ml100k.md",
                          "example ε, replace-one (recomputed)")
    assert float(audits[run]) == pytest.approx(out["ro"], abs=0.005)
    assert out["ro"] > 2 * out["ar"]          # what replace-one costs at these σ
