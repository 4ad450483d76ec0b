"""docs/configuration.md is generated from the settings' metadata and checked current."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from fedrec.shared.config import RunConfig
from fedrec.shared.config_flower import flower_key
from fedrec.shared.release_config import ReleaseConfig
from fedrec.simulations import config_doc

ROOT = Path(__file__).resolve().parents[1]


def test_the_checked_in_page_is_the_generated_one():
    """Fails after a setting changes until `python -m fedrec.simulations.config_doc` ran."""
    assert (ROOT / config_doc.PAGE).read_text(encoding="utf-8") == config_doc.render()


def test_every_setting_has_a_row_with_its_default():
    text = config_doc.render()
    for cls in (RunConfig, ReleaseConfig):
        for f in fields(cls):
            assert f"| `{flower_key(f.name)}` |" in text, f.name
    assert "| `learning-rate` | `--learning-rate`, `--lr` | `float` | `0.01` | device |" in text
    assert "| `catalogue` | — | `str` | `\"\"` | run |" in text
    assert "| `skellam-bits` | `--skellam-bits` | `int` | `32` |" in text
    assert "| `pipeline` | — | `str` | `knn` |" in text   # --pipeline is hand-written


def test_check_mode_reports_a_stale_page(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    assert config_doc.main(["--root", str(tmp_path), "--check"]) == 1
    assert "is stale" in capsys.readouterr().err
    assert config_doc.main(["--root", str(tmp_path)]) == 0
    assert config_doc.main(["--root", str(tmp_path), "--check"]) == 0
