"""Tests for fedrec.shared.fetch (MovieLens-100k from the recbole wheel), without the network."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from fedrec.shared import fetch
from fedrec.shared.datasets import load_dataset
from fedrec.shared.errors import DataError, FedrecError
from fedrec.shared.fetch import (
    DATASET_DIRNAME,
    MEMBER_PREFIX,
    SOURCE_FILE,
    WHEEL_NAME,
    WHEEL_REQUIREMENT,
    WHEEL_SHA256,
    fetch_movielens_100k,
)
from fedrec.shared.io import load_recbole_dir

ML_FILES = {
    "ml-100k.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                     "196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
    "ml-100k.item": "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                    "242\tKolya\t1996\tComedy\n302\tL.A. Confidential\t1997\tCrime Thriller\n",
    "ml-100k.user": "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
                    "196\t49\tM\twriter\t55105\n186\t39\tF\texecutive\t00000\n",
    "ml-100k.link": "item_id:token\tentity_id:token\n242\tm.1\n",
}
DECOYS = {
    "recbole/__init__.py": "# decoy outside the data folder\n",
    "recbole/dataset_example/ml-1m/ml-1m.inter": "decoy\n",
    MEMBER_PREFIX + "../../../evil.txt": "path traversal attempt\n",
    MEMBER_PREFIX + "sub/nested.txt": "nested, not a data file\n",
    "../evil2.txt": "path traversal attempt\n",
    "/abs_evil.txt": "absolute path\n",
}


def make_wheel(path: Path, files: dict[str, str] = ML_FILES, decoys: dict[str, str] = DECOYS) -> str:
    """Write a fake wheel zip at ``path``; return its sha256."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in decoys.items():
            zf.writestr(name, text)
        for name, text in files.items():
            zf.writestr(MEMBER_PREFIX + name, text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FakePip:
    """Stands in for ``pip download``: copies a prepared wheel into the target folder."""

    def __init__(self, wheel: Path | None, error: Exception | None = None):
        self.wheel, self.error, self.calls = wheel, error, []

    def __call__(self, requirement: str, dest: Path) -> None:
        self.calls.append((requirement, Path(dest)))
        if self.error is not None:
            raise self.error
        (Path(dest) / WHEEL_NAME).write_bytes(self.wheel.read_bytes())


def no_pip(requirement: str, dest: Path) -> None:
    raise AssertionError("pip must not run when the cache is valid")


@pytest.fixture
def wheel(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "src" / WHEEL_NAME
    path.parent.mkdir()
    return path, make_wheel(path)


def cache_leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name != DATASET_DIRNAME)


def test_extracts_only_ml100k_members(tmp_path, wheel):
    path, digest = wheel
    cache = tmp_path / "cache"
    pip = FakePip(path)
    target = fetch_movielens_100k(cache, pip_download=pip, expected_sha256=digest)
    assert target == cache / DATASET_DIRNAME
    assert pip.calls and pip.calls[0][0] == WHEEL_REQUIREMENT
    assert sorted(p.name for p in target.iterdir()) == sorted([*ML_FILES, SOURCE_FILE])
    for name, text in ML_FILES.items():
        assert (target / name).read_text() == text
    # nothing escaped anywhere under tmp_path, and no temp folders are left behind
    assert not [p for p in tmp_path.rglob("*evil*")]
    assert not (cache / "recbole").exists() and cache_leftovers(cache) == []
    manifest = json.loads((target / SOURCE_FILE).read_text())
    assert manifest["wheel"] == WHEEL_NAME and manifest["wheel_sha256"] == digest
    assert manifest["files"] == {n: hashlib.sha256(t.encode()).hexdigest()
                                 for n, t in ML_FILES.items()}
    ds = load_recbole_dir(target)
    assert ds.n_events == 2 and ds.items["categories"].tolist() == ["Comedy", "Crime|Thriller"]


def test_second_call_does_not_run_pip(tmp_path, wheel):
    path, digest = wheel
    cache = tmp_path / "cache"
    first = fetch_movielens_100k(cache, pip_download=FakePip(path), expected_sha256=digest)
    assert fetch_movielens_100k(cache, pip_download=no_pip, expected_sha256=digest) == first


def test_changed_file_is_fetched_again(tmp_path, wheel):
    path, digest = wheel
    cache = tmp_path / "cache"
    target = fetch_movielens_100k(cache, pip_download=FakePip(path), expected_sha256=digest)
    (target / "ml-100k.inter").write_text("tampered\n")
    pip = FakePip(path)
    fetch_movielens_100k(cache, pip_download=pip, expected_sha256=digest)
    assert len(pip.calls) == 1
    assert (target / "ml-100k.inter").read_text() == ML_FILES["ml-100k.inter"]
    assert cache_leftovers(cache) == []


def test_hash_mismatch_fails_clearly_and_leaves_nothing(tmp_path, wheel):
    path, _ = wheel
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as exc:
        fetch_movielens_100k(cache, pip_download=FakePip(path), expected_sha256="0" * 64)
    msg = str(exc.value)
    assert msg.startswith(f"{WHEEL_NAME}: sha256 mismatch: expected {'0' * 64}, got ")
    assert "\n" not in msg
    assert not (cache / DATASET_DIRNAME).exists() and cache_leftovers(cache) == []


def test_default_pin_rejects_other_wheels(tmp_path, wheel):
    path, digest = wheel
    assert digest != WHEEL_SHA256
    with pytest.raises(DataError, match="sha256 mismatch"):
        fetch_movielens_100k(tmp_path / "cache", pip_download=FakePip(path))


def test_wheel_without_data_files_leaves_nothing(tmp_path):
    path = tmp_path / WHEEL_NAME
    digest = make_wheel(path, files={"ml-100k.inter": "x\n"})
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="has no recbole/dataset_example/ml-100k/ml-100k.item"):
        fetch_movielens_100k(cache, pip_download=FakePip(path), expected_sha256=digest)
    assert not (cache / DATASET_DIRNAME).exists() and cache_leftovers(cache) == []


def test_pip_failure_is_one_clear_line(tmp_path):
    cache = tmp_path / "cache"
    pip = FakePip(None, FedrecError("pip download recbole==1.2.1 failed (exit 1): no network"))
    with pytest.raises(FedrecError, match="no network"):
        fetch_movielens_100k(cache, pip_download=pip)
    assert not (cache / DATASET_DIRNAME).exists()


def test_pip_that_produces_no_wheel(tmp_path):
    with pytest.raises(FedrecError, match=f"did not produce {WHEEL_NAME}"):
        fetch_movielens_100k(tmp_path / "cache", pip_download=lambda req, dest: None)


def test_default_pip_download_reports_pip_errors(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr=(
            "WARNING: Retrying ...\nERROR: Could not find a version that satisfies the "
            "requirement recbole==1.2.1 (from versions: none)\n"))

    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    with pytest.raises(FedrecError) as exc:
        fetch.pip_download(WHEEL_REQUIREMENT, tmp_path)
    assert "Could not find a version" in str(exc.value) and "\n" not in str(exc.value)
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "pip", "download"] and WHEEL_REQUIREMENT in cmd
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert cmd[cmd.index("-d") + 1] == str(tmp_path)


def test_cache_dir_from_environment(tmp_path, monkeypatch, wheel):
    path, digest = wheel
    monkeypatch.setenv("FEDREC_DATA", str(tmp_path / "envcache"))
    target = fetch_movielens_100k(pip_download=FakePip(path), expected_sha256=digest)
    assert target == tmp_path / "envcache" / DATASET_DIRNAME
    monkeypatch.delenv("FEDREC_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fetch.default_cache_dir() == tmp_path / "home" / ".cache" / "fedrec"


def test_load_dataset_movielens_uses_fetch(tmp_path, monkeypatch, wheel):
    path, digest = wheel
    target = fetch_movielens_100k(tmp_path / "c", pip_download=FakePip(path),
                                  expected_sha256=digest)
    monkeypatch.setattr(fetch, "fetch_movielens_100k", lambda: target)
    ds = load_dataset("movielens-100k")
    assert ds.name == "movielens-100k" and ds.n_events == 2


@pytest.mark.network
def test_real_fetch_movielens_100k(tmp_path):
    """Downloads the real wheel from PyPI (about 2 MB)."""
    target = fetch_movielens_100k(tmp_path)
    manifest = json.loads((target / SOURCE_FILE).read_text())
    assert manifest["wheel"] == WHEEL_NAME and manifest["wheel_sha256"] == WHEEL_SHA256
    ds = load_recbole_dir(target)
    assert ds.n_events == 100_000
    assert ds.events["user_id"].nunique() == 943
    assert ds.events["item_id"].nunique() == 1682 and len(ds.items) == 1682
    genres = {g for cats in ds.items["categories"] for g in cats.split("|") if g}
    assert len(genres) == 19
    assert fetch_movielens_100k(tmp_path, pip_download=no_pip) == target
